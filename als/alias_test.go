package als

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/internal/record"
)

// The receiver copies each message into one buffer per stream and reuses
// it for the next message: a record that kept a view of it would change
// under its sinks. Decode whole Bookinfo messages (peers, filter state,
// headers, TLS), overwrite the buffer, and compare.
func TestRecordsDoNotAliasTheMessageBuffer(t *testing.T) {
	mesh := meshsim.Bookinfo(7)
	mesh.WithFilter = true
	var entries []meshsim.Entry
	for len(entries) < 200 {
		entries = append(entries, mesh.Request(time.Unix(1700000000, 0)).Entries...)
	}
	dec := newWireDecoder(newConverter(nil, nil, 8<<10))
	px := parseNode(mesh.ProductPage.Identifier("b").GetNode(), "b")
	var buf []byte
	var recs []*record.Record
	var want [][]byte
	for _, msgs := range meshsim.Batch(entries, 16<<10) {
		for _, m := range msgs {
			wire, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			buf = append(buf[:0], wire...)
			var msg wireMessage
			if err := splitMessage(buf, &msg); err != nil {
				t.Fatal(err)
			}
			msg.each(func(_ bool, e []byte) bool {
				r, err := dec.http(&px, e, time.Unix(0, 0), &entryNotes{})
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, r)
				want = append(want, record.AppendJSON(nil, r))
				return true
			})
			for i := range buf {
				buf[i] = 'X'
			}
		}
	}
	if len(recs) < 100 {
		t.Fatalf("only %d records decoded", len(recs))
	}
	for i, r := range recs {
		if got := record.AppendJSON(nil, r); !bytes.Equal(got, want[i]) {
			t.Fatalf("record %d changed after its message buffer was reused:\nwas %s\nnow %s", i, want[i], got)
		}
	}
}
