package queue

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// worker, fsync loop or timer left running by a test means a Shutdown or
// Close that does not stop everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
