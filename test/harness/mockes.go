package harness

import (
	"strconv"
	"testing"
	"time"
)

// MockES is Elastic's mock-es (test/tools/mock-es.sh): an Elasticsearch _bulk
// endpoint that answers create actions with 409 (-dup), 429 (-toomany) or
// 406 (-nonindex) and whole bulks with 413 (-toolarge), each flag a
// percentage. 100 makes a path deterministic.
type MockES struct {
	URL     string
	Process *Process
}

// MockESOptions are the percentages mock-es answers with each error.
type MockESOptions struct {
	Dup, TooMany, NonIndex, TooLarge int
}

// StartMockES starts mock-es on a free loopback port.
func StartMockES(t testing.TB, o MockESOptions) *MockES {
	t.Helper()
	bin := Tool(t, "mock-es")
	addr := FreeAddr(t)
	m := &MockES{URL: "http://" + addr}
	m.Process = Start(t, "mock-es", nil, bin, "-addr", addr,
		"-dup", strconv.Itoa(o.Dup), "-toomany", strconv.Itoa(o.TooMany),
		"-nonindex", strconv.Itoa(o.NonIndex), "-toolarge", strconv.Itoa(o.TooLarge))
	WaitTCP(t, m.Process, addr, 30*time.Second)
	return m
}
