package tracecontext

import (
	"strings"
	"testing"
)

// Fuzz targets for the header parsers; the seed corpus kept in
// testdata/fuzz holds the W3C suite and B3 spec cases. Properties: no
// panic, a valid result round-trips through the formatter, and normalised
// tracestate is a fixed point.

func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-" + tid + "-" + pid + "-01")
	f.Add("cc-" + tid + "-" + pid + "-01-future")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := ParseTraceparent(v)
		if err != nil {
			return
		}
		if !c.IsValid() {
			t.Fatalf("%q: valid parse with zero ids", v)
		}
		again, err := ParseTraceparent(FormatTraceparent(c))
		if err != nil || again.TraceID != c.TraceID || again.SpanID != c.SpanID || again.Sampling != c.Sampling {
			t.Fatalf("%q: round trip %q gave %+v, %v", v, FormatTraceparent(c), again, err)
		}
	})
}

func FuzzParseTraceState(f *testing.F) {
	f.Add("foo=1,bar=2")
	f.Add("a@b=c d, e=f")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := ParseTraceState(v)
		if err != nil {
			return
		}
		again, err := ParseTraceState(s)
		if err != nil || again != s {
			t.Fatalf("%q normalised to %q, which parses to %q, %v", v, s, again, err)
		}
		if n := len(strings.Split(s, ",")); s != "" && n > MaxTraceStateMembers {
			t.Fatalf("%d members accepted", n)
		}
		if u, err := UpdateTraceState(s, "meshtrail", "0123456789abcdef"); err != nil || !strings.HasPrefix(u, "meshtrail=0123456789abcdef") {
			t.Fatalf("UpdateTraceState(%q) = %q, %v", s, u, err)
		} else if _, err := ParseTraceState(u); err != nil {
			t.Fatalf("updated state %q invalid: %v", u, err)
		}
	})
}

func FuzzParseB3Single(f *testing.F) {
	f.Add(b3Trace + "-" + b3Span + "-1-" + b3Parent)
	f.Add("0")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := ParseB3Single(v)
		if err != nil {
			return
		}
		again, err := ParseB3Single(FormatB3SingleHeader(c))
		if err != nil || again.TraceID != c.TraceID || again.SpanID != c.SpanID || again.Sampling != c.Sampling {
			t.Fatalf("%q: round trip %q gave %+v, %v", v, FormatB3SingleHeader(c), again, err)
		}
	})
}

func FuzzParseB3Multi(f *testing.F) {
	f.Add(b3Trace, b3Span, b3Parent, "1", "")
	f.Add(b3Trace6, b3Span, "", "", "1")
	f.Fuzz(func(t *testing.T, trace, span, parent, sampled, flags string) {
		c, err := ParseB3Multi(B3Multi{TraceID: trace, SpanID: span, ParentSpanID: parent, Sampled: sampled, Flags: flags})
		if err != nil {
			return
		}
		again, err := ParseB3Multi(FormatB3MultiHeaders(c))
		if err != nil || again != c {
			t.Fatalf("round trip of %+v gave %+v, %v", c, again, err)
		}
	})
}

// ExtractJoined reads values as Envoy logs them (repeated headers joined
// by ","); it must agree with Extract given the same values one by one.
func FuzzExtractJoined(f *testing.F) {
	f.Add("00-"+tid+"-"+pid+"-01", b3Trace+"-"+b3Span+"-1", b3Trace+","+b3Trace6, b3Span, "1,0", "2")
	f.Add("00-"+tid+"-"+pid+"-01,00-"+tid+"-"+pid+"-01", "0", "", "", "", "1")
	f.Fuzz(func(t *testing.T, tp, b3, traceID, spanID, sampled, flags string) {
		h := map[string]string{}
		for name, v := range map[string]string{HeaderTraceparent: tp, HeaderB3: b3, HeaderB3TraceID: traceID,
			HeaderB3SpanID: spanID, HeaderB3Sampled: sampled, HeaderB3Flags: flags} {
			if v != "" {
				h[name] = v
			}
		}
		joined := func(name string) (string, bool) { v, ok := h[name]; return v, ok }
		split := func(name string) []string {
			if v, ok := h[name]; ok {
				return strings.Split(v, ",")
			}
			return nil
		}
		for _, f := range DefaultOrder {
			c, present, err := ExtractJoined(joined, f)
			ctx, from, found, _ := Extract(split, []Format{f})
			if present && err == nil {
				if !c.IsValid() {
					t.Fatalf("%s: valid extraction with zero ids: %+v", f, c)
				}
				if !found || from != f || ctx.TraceID != c.TraceID || ctx.SpanID != c.SpanID || ctx.Sampling != c.Sampling {
					t.Fatalf("%s: ExtractJoined %+v, Extract %+v found=%v", f, c, ctx, found)
				}
			} else if found {
				t.Fatalf("%s: Extract found %+v where ExtractJoined gave present=%v err=%v", f, ctx, present, err)
			}
		}
	})
}
