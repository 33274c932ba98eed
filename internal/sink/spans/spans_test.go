package spans

import (
	"encoding/hex"
	"testing"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
)

func attrs(sp *Span) map[string]any {
	m := map[string]any{}
	for _, a := range sp.Attrs {
		if a.IsInt {
			m[a.Key] = a.Int
		} else {
			m[a.Key] = a.Str
		}
	}
	return m
}

func TestFromRecordKindsIdsAndServices(t *testing.T) {
	g := recordtest.New("shop", 1)
	_, recs := g.Request(200)
	if len(recs) != 5 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		var sp Span
		if !FromRecord(r, &sp) {
			t.Fatalf("record %+v is not a span", r.Trace)
		}
		wantKind, wantSvc := KindServer, r.Destination.CanonicalService
		if r.Reporter == record.ReporterSource {
			wantKind, wantSvc = KindClient, r.Source.CanonicalService
		}
		if sp.Kind != wantKind || sp.Service != wantSvc {
			t.Errorf("kind %v service %q, want %v %q", sp.Kind, sp.Service, wantKind, wantSvc)
		}
		if hex.EncodeToString(sp.SpanID[:]) != r.Trace.SpanID || hex.EncodeToString(sp.TraceID[:]) != r.Trace.TraceID {
			t.Errorf("ids %x/%x, want %s/%s", sp.TraceID, sp.SpanID, r.Trace.TraceID, r.Trace.SpanID)
		}
		if r.Trace.ParentSpanID == "" && sp.HasParent() || r.Trace.ParentSpanID != "" && hex.EncodeToString(sp.ParentSpanID[:]) != r.Trace.ParentSpanID {
			t.Errorf("parent %x, want %q", sp.ParentSpanID, r.Trace.ParentSpanID)
		}
		if sp.End.Sub(sp.Start) != r.Timings.Total {
			t.Errorf("duration %v, want %v", sp.End.Sub(sp.Start), r.Timings.Total)
		}
		a := attrs(&sp)
		for k, v := range map[string]any{
			"http.request.method": "GET", "url.path": "/" + r.Destination.CanonicalService + "/0", "url.query": "x=1",
			"url.scheme": "http", "server.address": r.Destination.CanonicalService, "server.port": int64(9080),
			"http.response.status_code": int64(200), "network.protocol.version": "1.1", "user_agent.original": "curl/8.5.0",
		} {
			if a[k] != v {
				t.Errorf("%s = %v, want %v", k, a[k], v)
			}
		}
		if sp.Error {
			t.Errorf("200 marked error: %s", sp.StatusMessage)
		}
	}
}

func TestFromRecordStatus(t *testing.T) {
	g := recordtest.New("shop", 2)
	_, recs := g.Request(503)
	var sp Span
	last := recs[len(recs)-1]
	FromRecord(last, &sp)
	if !sp.Error || sp.StatusMessage != "HTTP 503 UF" {
		t.Errorf("503 UF: error=%v %q", sp.Error, sp.StatusMessage)
	}
	for code, want := range map[uint32][2]bool{404: {false, true}, 200: {false, false}, 0: {true, true}} {
		r := *last
		r.HTTP.ResponseCode, r.ResponseFlags = code, "-"
		r.Reporter = record.ReporterDestination
		FromRecord(&r, &sp)
		if sp.Error != want[0] {
			t.Errorf("server %d: error %v", code, sp.Error)
		}
		r.Reporter = record.ReporterSource
		FromRecord(&r, &sp)
		if sp.Error != want[1] {
			t.Errorf("client %d: error %v", code, sp.Error)
		}
	}
	r := *last
	r.HTTP.ResponseCode, r.ResponseFlags, r.HTTP.GRPCStatus = 200, "-", "14"
	FromRecord(&r, &sp)
	if !sp.Error || attrs(&sp)["rpc.grpc.status_code"] != int64(14) {
		t.Errorf("grpc-status 14: error=%v attrs %v", sp.Error, attrs(&sp))
	}
}

func TestFromRecordSkipsAndStableIDs(t *testing.T) {
	g := recordtest.New("shop", 3)
	tid, recs := g.Request(200)
	var sp Span
	if FromRecord(g.LogLine(tid, "", "reviews", "hello"), &sp) {
		t.Error("a log line became a span")
	}
	no := false
	r := *recs[0]
	r.Trace.Sampled = &no
	if FromRecord(&r, &sp) {
		t.Error("an unsampled record became a span")
	}
	r = *recs[0]
	r.Trace.TraceID = ""
	if FromRecord(&r, &sp) {
		t.Error("a record without trace id became a span")
	}
	r = *recs[0]
	r.Trace.SpanID = ""
	FromRecord(&r, &sp)
	first := sp.SpanID
	FromRecord(&r, &sp)
	if first != sp.SpanID || first == [8]byte{} {
		t.Errorf("derived span id not stable: %x %x", first, sp.SpanID)
	}
}
