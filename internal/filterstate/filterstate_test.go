package filterstate

import "testing"

func FuzzParseGRPCStats(f *testing.F) {
	for _, s := range []string{"1,2", "0,0", "18446744073709551615,1", ",", "1,", "-1,2", "1,2,3", " 1,2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		req, resp, ok := ParseGRPCStats(s)
		if !ok {
			return
		}
		r2, p2, ok2 := ParseGRPCStats(FormatGRPCStats(req, resp))
		if !ok2 || r2 != req || p2 != resp {
			t.Errorf("%q: %d,%d does not survive formatting", s, req, resp)
		}
	})
}

func TestGRPCStatsText(t *testing.T) {
	if got := FormatGRPCStats(1, 150); got != "1,150" {
		t.Errorf("FormatGRPCStats = %q, want Envoy's 1,150", got)
	}
	for _, s := range []string{"", "1", "1,", ",2", "a,1", "1,2,3"} {
		if _, _, ok := ParseGRPCStats(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
}
