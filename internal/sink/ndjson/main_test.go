package ndjson

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (servers, streams, flushers) is gone when
// it ends. lumberjack's compression goroutine outlives Logger.Close, one
// per rotated file (natefinch/lumberjack issue 56): not ours to stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}
