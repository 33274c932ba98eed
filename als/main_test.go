package als

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (servers, streams, flushers) is gone when
// it ends. lumberjack's compression goroutine outlives Logger.Close, one
// per rotated file (natefinch/lumberjack issue 56): not ours to stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(idleClosed{m}, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

// idleClosed closes the keep-alive connections the tests' scrapes of
// /metrics left in http.DefaultClient before goleak looks.
type idleClosed struct{ m *testing.M }

func (c idleClosed) Run() int {
	code := c.m.Run()
	http.DefaultClient.CloseIdleConnections()
	return code
}
