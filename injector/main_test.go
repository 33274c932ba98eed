package injector

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (servers, streams, flushers) is gone when
// it ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
