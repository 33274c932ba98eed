package record

import (
	"bufio"
	"fmt"
	"io"
)

// ReadNDJSON reads records written one per line by AppendJSON, naming the
// line of the first that does not parse.
func ReadNDJSON(r io.Reader) ([]*Record, error) {
	var recs []*Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		rec, err := ParseJSON(sc.Bytes())
		if err != nil {
			return recs, fmt.Errorf("line %d: %w", line, err)
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}
