package tracecontext

import (
	"errors"
	"strings"
	"testing"
)

const (
	tid = "12345678901234567890123456789012"
	pid = "1234567890123456"
)

// Cases of the W3C trace-context test suite (test/test.py in
// github.com/w3c/trace-context) for the traceparent value itself.
func TestParseTraceparentW3CSuite(t *testing.T) {
	cases := []struct {
		name, in string
		err      error // nil: valid
	}{
		{"valid_sampled", "00-" + tid + "-" + pid + "-01", nil},
		{"valid_not_sampled", "00-" + tid + "-" + pid + "-00", nil},
		{"version_00_trailing_dot", "00-" + tid + "-" + pid + "-01.", ErrMalformed},
		{"version_00_future_suffix", "00-" + tid + "-" + pid + "-01-what-the-future-will-be-like", ErrMalformed},
		{"version_cc", "cc-" + tid + "-" + pid + "-01", nil},
		{"version_cc_future_suffix", "cc-" + tid + "-" + pid + "-01-what-the-future-will-be-like", nil},
		{"version_cc_bad_suffix", "cc-" + tid + "-" + pid + "-01.what-the-future-will-be-like", ErrMalformed},
		{"version_ff", "ff-" + tid + "-" + pid + "-01", ErrVersion},
		{"version_illegal_.0", ".0-" + tid + "-" + pid + "-01", ErrMalformed},
		{"version_illegal_0.", "0.-" + tid + "-" + pid + "-01", ErrMalformed},
		{"version_too_long_000", "000-" + tid + "-" + pid + "-01", ErrMalformed},
		{"version_too_long_0000", "0000-" + tid + "-" + pid + "-01", ErrMalformed},
		{"version_too_short", "0-" + tid + "-" + pid + "-01", ErrMalformed},
		{"trace_id_all_zero", "00-00000000000000000000000000000000-" + pid + "-01", ErrZeroID},
		{"trace_id_illegal_first", "00-.2345678901234567890123456789012-" + pid + "-01", ErrMalformed},
		{"trace_id_illegal_last", "00-1234567890123456789012345678901.-" + pid + "-01", ErrMalformed},
		{"trace_id_too_long", "00-123456789012345678901234567890123-" + pid + "-01", ErrMalformed},
		{"trace_id_too_short", "00-1234567890123456789012345678901-" + pid + "-01", ErrMalformed},
		{"trace_id_uppercase", "00-" + strings.ToUpper("4bf92f3577b34da6a3ce929d0e0e4736") + "-" + pid + "-01", ErrMalformed},
		{"parent_id_all_zero", "00-" + tid + "-0000000000000000-01", ErrZeroID},
		{"parent_id_illegal_first", "00-" + tid + "-.234567890123456-01", ErrMalformed},
		{"parent_id_illegal_last", "00-" + tid + "-123456789012345.-01", ErrMalformed},
		{"parent_id_too_long", "00-" + tid + "-12345678901234567-01", ErrMalformed},
		{"parent_id_too_short", "00-" + tid + "-123456789012345-01", ErrMalformed},
		{"trace_flags_illegal_.0", "00-" + tid + "-" + pid + "-.0", ErrMalformed},
		{"trace_flags_illegal_0.", "00-" + tid + "-" + pid + "-0.", ErrMalformed},
		{"trace_flags_too_long", "00-" + tid + "-" + pid + "-001", ErrMalformed},
		{"trace_flags_too_short", "00-" + tid + "-" + pid + "-1", ErrMalformed},
		{"ows_leading_space", " 00-" + tid + "-" + pid + "-01", nil},
		{"ows_leading_tab", "\t00-" + tid + "-" + pid + "-01", nil},
		{"ows_trailing_space", "00-" + tid + "-" + pid + "-01 ", nil},
		{"ows_trailing_tab", "00-" + tid + "-" + pid + "-01\t", nil},
		{"ows_both", "\t 00-" + tid + "-" + pid + "-01 \t", nil},
		{"separator_wrong", "00_" + tid + "-" + pid + "-01", ErrMalformed},
		{"empty", "", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTraceparent(c.in)
			if c.err == nil {
				if err != nil {
					t.Fatalf("ParseTraceparent(%q): %v", c.in, err)
				}
				if got.TraceID.String() != tid || got.SpanID.String() != pid {
					t.Errorf("ids %s %s", got.TraceID, got.SpanID)
				}
				return
			}
			if !errors.Is(err, c.err) {
				t.Errorf("ParseTraceparent(%q) error %v, want %v", c.in, err, c.err)
			}
			if got != (Context{}) {
				t.Errorf("an invalid value returned a context %+v", got)
			}
		})
	}
}

func TestTraceparentFlags(t *testing.T) {
	c, err := ParseTraceparent("00-" + tid + "-" + pid + "-01")
	if err != nil || c.Sampling != SamplingAccept {
		t.Fatalf("%+v %v", c, err)
	}
	c, _ = ParseTraceparent("00-" + tid + "-" + pid + "-00")
	if c.Sampling != SamplingDeny {
		t.Errorf("flags 00: %v", c.Sampling)
	}
	// Unknown flag bits are not propagated; random (0x02) is.
	c, _ = ParseTraceparent("00-" + tid + "-" + pid + "-ff")
	if got := FormatTraceparent(c); got != "00-"+tid+"-"+pid+"-03" {
		t.Errorf("FormatTraceparent with flags ff = %s", got)
	}
	// A future version: parsed by the 00 layout, written as 00.
	c, _ = ParseTraceparent("cc-" + tid + "-" + pid + "-09-extra")
	if got := FormatTraceparent(c); got != "00-"+tid+"-"+pid+"-01" {
		t.Errorf("FormatTraceparent(cc) = %s", got)
	}
	c.Sampling = SamplingDebug
	if got := FormatTraceparent(c); !strings.HasSuffix(got, "-01") {
		t.Errorf("debug is sampled in W3C: %s", got)
	}
}

var allowedKey = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"

var allowedValue = func() string {
	var b []byte
	for c := 0x20; c <= 0x7e; c++ {
		if c != ',' && c != '=' {
			b = append(b, byte(c))
		}
	}
	return string(b)
}()

func barMembers(n int) string {
	var m []string
	for i := 1; i <= n; i++ {
		d := string([]byte{byte('0' + i/10), byte('0' + i%10)})
		m = append(m, "bar"+d+"="+d)
	}
	return strings.Join(m, ",")
}

// The suite's tracestate cases (after the header values are combined).
func TestParseTraceStateW3CSuite(t *testing.T) {
	cases := []struct {
		name, in, want string
		valid          bool
	}{
		{"empty", "", "", true},
		{"two", "foo=1,bar=2", "foo=1,bar=2", true},
		{"empty_members", "foo=1,,bar=2,", "foo=1,bar=2", true},
		{"combined", "foo=1,bar=2,rojo=1,congo=2,baz=3", "foo=1,bar=2,rojo=1,congo=2,baz=3", true},
		{"duplicated_same", "foo=1,foo=1", "foo=1", true},
		{"duplicated", "foo=1,foo=2", "foo=1", true},
		{"duplicated_apart", "foo=1,bar=2,foo=3", "foo=1,bar=2", true},
		{"all_allowed", allowedKey + "=" + allowedValue, allowedKey + "=" + allowedValue, true},
		{"all_allowed_vendor", allowedKey + "@a-z0-9_-*/=" + allowedValue, allowedKey + "@a-z0-9_-*/=" + allowedValue, true},
		{"ows", "foo=1 \t , \t bar=2, \t baz=3", "foo=1,bar=2,baz=3", true},
		{"ows_tabs", "foo=1\t \t,\t \tbar=2,\t \tbaz=3", "foo=1,bar=2,baz=3", true},
		{"ows_edges", "\t foo=1 \t", "foo=1", true},
		{"key_space", "foo =1", "", false},
		{"key_upper", "FOO=1", "", false},
		{"key_dot", "foo.bar=1", "", false},
		{"vendor_empty_system", "foo@=1,bar=2", "foo@=1,bar=2", true},
		{"vendor_empty_tenant", "@foo=1,bar=2", "", false},
		{"vendor_double_at", "foo@@bar=1,bar=2", "foo@@bar=1,bar=2", true},
		{"vendor_two_ats", "foo@bar@baz=1,bar=2", "foo@bar@baz=1,bar=2", true},
		{"key_digit_first", "1vendor=x", "1vendor=x", true},
		{"key_dash_first", "-vendor=x", "", false},
		{"members_32", barMembers(32), barMembers(32), true},
		{"members_33", barMembers(33), "", false},
		{"key_256", "foo=1," + strings.Repeat("z", 256) + "=1", "foo=1," + strings.Repeat("z", 256) + "=1", true},
		{"key_257", "foo=1," + strings.Repeat("z", 257) + "=1", "", false},
		{"tenant_241_vendor_14", "foo=1," + strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14) + "=1", "foo=1," + strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14) + "=1", true},
		{"tenant_242", "foo=1," + strings.Repeat("t", 242) + "@v=1", "foo=1," + strings.Repeat("t", 242) + "@v=1", true},
		{"vendor_15", "foo=1,t@" + strings.Repeat("v", 15) + "=1", "foo=1,t@" + strings.Repeat("v", 15) + "=1", true},
		{"members_33_one_repeated", barMembers(32) + ",bar01=x", "", false},
		{"value_with_equals", "foo=bar=baz", "", false},
		{"value_empty", "foo=,bar=3", "", false},
		{"value_trailing_space", "foo=a b", "foo=a b", true},
		{"value_257", "foo=" + strings.Repeat("v", 257), "", false},
		{"no_equals", "foo", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTraceState(c.in)
			if c.valid != (err == nil) {
				t.Fatalf("ParseTraceState(%q) = %q, %v; want valid=%v", c.in, got, err, c.valid)
			}
			if got != c.want {
				t.Errorf("ParseTraceState(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestUpdateTraceState(t *testing.T) {
	cases := []struct{ state, key, value, want string }{
		{"", "meshtrail", "a", "meshtrail=a"},
		{"foo=1,bar=2", "meshtrail", "a", "meshtrail=a,foo=1,bar=2"},
		{"foo=1,meshtrail=old,bar=2", "meshtrail", "new", "meshtrail=new,foo=1,bar=2"},
		{"meshtrail=old", "meshtrail", "new", "meshtrail=new"},
		{"meshtrailx=1", "meshtrail", "a", "meshtrail=a,meshtrailx=1"},
		{barMembers(32), "meshtrail", "a", "meshtrail=a," + barMembers(31)},
		{barMembers(31) + ",meshtrail=o", "meshtrail", "a", "meshtrail=a," + barMembers(31)},
	}
	for _, c := range cases {
		got, err := UpdateTraceState(c.state, c.key, c.value)
		if err != nil || got != c.want {
			t.Errorf("UpdateTraceState(%q, %s, %s) = %q, %v; want %q", c.state, c.key, c.value, got, err, c.want)
		}
	}
	for _, bad := range [][2]string{{"Bad", "a"}, {"ok", "a=b"}, {"ok", ""}, {"ok", "a,b"}} {
		if _, err := UpdateTraceState("foo=1", bad[0], bad[1]); err == nil {
			t.Errorf("UpdateTraceState accepted %s=%s", bad[0], bad[1])
		}
	}
}
