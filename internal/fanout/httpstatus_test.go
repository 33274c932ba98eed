package fanout

import (
	"strings"
	"testing"
)

func TestHTTPStatusError(t *testing.T) {
	for _, c := range []struct {
		status   int
		ok, perm bool
	}{
		{200, true, false}, {204, true, false},
		{400, false, true}, {413, false, true}, {422, false, true},
		{401, false, false}, {403, false, false}, {404, false, false}, {429, false, false}, {500, false, false}, {503, false, false},
	} {
		err := HTTPStatusError("loki", c.status, []byte(" entry too far behind \n"))
		if (err == nil) != c.ok {
			t.Errorf("%d: err %v", c.status, err)
			continue
		}
		if err == nil {
			continue
		}
		if IsPermanent(err) != c.perm {
			t.Errorf("%d: permanent=%v, want %v", c.status, IsPermanent(err), c.perm)
		}
		if !strings.Contains(err.Error(), "loki: status") || !strings.Contains(err.Error(), "entry too far behind") {
			t.Errorf("%d: message %q does not say who and why", c.status, err)
		}
	}
}
