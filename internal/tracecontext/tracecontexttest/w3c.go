// Package tracecontexttest holds, as data, the cases of the W3C Trace
// Context test suite and the rules of the B3 propagation README, so that
// internal/tracecontext, the Wasm filter (natively and as the compiled
// .wasm) and the ALS receiver's header path all run the same cases. Each
// case names its origin. It imports nothing of tracecontext, so that
// package's own tests can use it.
package tracecontexttest

import (
	"strconv"
	"strings"
)

// Header is one request header as sent, name in the sender's case.
type Header struct{ Name, Value string }

// The ids every test.py case sends.
const (
	SuiteTraceID  = "12345678901234567890123456789012"
	SuiteParentID = "1234567890123456"
)

// W3CCase is one request of the W3C suite and what the harness checks in
// the traceparent and tracestate the service sends on.
type W3CCase struct {
	// Origin is the test.py test (class.method) and, when it sends
	// several requests, which one (#1 is the first).
	Origin string
	In     []Header
	// Continues: the outbound trace id is SuiteTraceID (and the parent id
	// is new). Otherwise the trace id must not be taken from the input.
	Continues bool
	// Tracestate checks, made on the outbound tracestate as the harness's
	// Tracestate class reads it (test/tracecontext/tracestate.py: members
	// split on OWS "," OWS, the first of a repeated key kept).
	StateHas     []string // key=value members that must be there
	StateOneOf   []string // at least one of these key=value members
	StateLacks   []string // keys that must not be there
	StateLen     int      // exact member count when >= 0
	StateOrdered bool     // StateHas appear in this order
	RandomFlag   bool     // trace-flags bit 1 (0x02) must be set (TraceContext2Test)
}

// NoStateCheck is StateLen when the case does not count members.
const NoStateCheck = -1

func tp(v string) Header { return Header{"traceparent", v} }
func ts(v string) Header { return Header{"tracestate", v} }

func hdrs(h ...Header) []Header { return h }

const valid01 = "00-" + SuiteTraceID + "-" + SuiteParentID + "-01"
const valid00 = "00-" + SuiteTraceID + "-" + SuiteParentID + "-00"

// restart is a traceparent case the harness expects to start a new trace.
func restart(origin, v string) W3CCase {
	return W3CCase{Origin: origin, In: hdrs(tp(v)), StateLen: NoStateCheck}
}

// continued is a traceparent case the harness expects to continue.
func continued(origin string, in ...Header) W3CCase {
	return W3CCase{Origin: origin, In: in, Continues: true, StateLen: NoStateCheck}
}

// AllowedKey and AllowedValue are test_tracestate_all_allowed_characters'
// key (every keychar) and value (every value character).
var (
	AllowedKey   = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
	AllowedValue = func() string {
		var b []byte
		for c := 0x20; c <= 0x7e; c++ {
			if c != 0x2c && c != 0x3d {
				b = append(b, byte(c))
			}
		}
		return string(b)
	}()
)

// Members returns n tracestate members barNN=NN split over headers of 10
// members, as test_tracestate_member_count_limit sends them.
func Members(n int) []Header {
	var out []Header
	var cur []string
	for i := 1; i <= n; i++ {
		d := string([]byte{byte('0' + i/10), byte('0' + i%10)})
		cur = append(cur, "bar"+d+"="+d)
		if len(cur) == 10 || i == n {
			out = append(out, ts(strings.Join(cur, ",")))
			cur = nil
		}
	}
	return out
}

// W3CSuite is every request of test/test.py in github.com/w3c/trace-context
// (main at acab820, "Fix tracestate key grammar tests (#584)") that runs
// at the default strictness (STRICT_LEVEL 2, so the tests marked "strict"
// run too), in the order of the file: TraceContextTest, then
// TraceContext2Test (SPEC_LEVEL 2: the filter sets the Level 2 random
// flag). AdvancedTest's cases, which need several calls per request, are
// W3CAdvanced.
var W3CSuite = func() []W3CCase {
	const c = "TraceContextTest."
	key256 := strings.Repeat("z", 256)
	t241v14 := strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14)
	t242v := strings.Repeat("t", 242) + "@v"
	t1v15 := "t@" + strings.Repeat("v", 15)
	withVendor := AllowedKey + "@a-z0-9_-*/"
	cases := []W3CCase{
		{Origin: c + "test_both_traceparent_and_tracestate_missing", StateLen: NoStateCheck},
		continued(c+"test_traceparent_included_tracestate_missing", tp(valid01)),
		{Origin: c + "test_traceparent_duplicated", In: hdrs(tp("00-12345678901234567890123456789011-1234567890123456-01"), tp(valid01)), StateLen: NoStateCheck},
		{Origin: c + "test_traceparent_header_name #1", In: hdrs(Header{"trace-parent", valid01}), StateLen: NoStateCheck},
		{Origin: c + "test_traceparent_header_name #2", In: hdrs(Header{"trace.parent", valid01}), StateLen: NoStateCheck},
		continued(c+"test_traceparent_header_name_valid_casing #1", Header{"TraceParent", valid01}),
		continued(c+"test_traceparent_header_name_valid_casing #2", Header{"TrAcEpArEnT", valid01}),
		continued(c+"test_traceparent_header_name_valid_casing #3", Header{"TRACEPARENT", valid01}),
		restart(c+"test_traceparent_version_0x00 #1", valid01+"."),
		restart(c+"test_traceparent_version_0x00 #2", valid01+"-what-the-future-will-be-like"),
		continued(c+"test_traceparent_version_0xcc #1", tp("cc-"+SuiteTraceID+"-"+SuiteParentID+"-01")),
		continued(c+"test_traceparent_version_0xcc #2", tp("cc-"+SuiteTraceID+"-"+SuiteParentID+"-01-what-the-future-will-be-like")),
		restart(c+"test_traceparent_version_0xcc #3", "cc-"+SuiteTraceID+"-"+SuiteParentID+"-01.what-the-future-will-be-like"),
		restart(c+"test_traceparent_version_0xff", "ff-"+SuiteTraceID+"-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_version_illegal_characters #1", ".0-"+SuiteTraceID+"-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_version_illegal_characters #2", "0.-"+SuiteTraceID+"-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_version_too_long #1", "000-"+SuiteTraceID+"-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_version_too_long #2", "0000-"+SuiteTraceID+"-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_version_too_short", "0-"+SuiteTraceID+"-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_trace_id_all_zero", "00-00000000000000000000000000000000-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_trace_id_illegal_characters #1", "00-.2345678901234567890123456789012-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_trace_id_illegal_characters #2", "00-1234567890123456789012345678901.-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_trace_id_too_long", "00-123456789012345678901234567890123-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_trace_id_too_short", "00-1234567890123456789012345678901-"+SuiteParentID+"-01"),
		restart(c+"test_traceparent_parent_id_all_zero", "00-"+SuiteTraceID+"-0000000000000000-01"),
		restart(c+"test_traceparent_parent_id_illegal_characters #1", "00-"+SuiteTraceID+"-.234567890123456-01"),
		restart(c+"test_traceparent_parent_id_illegal_characters #2", "00-"+SuiteTraceID+"-123456789012345.-01"),
		restart(c+"test_traceparent_parent_id_too_long", "00-"+SuiteTraceID+"-12345678901234567-01"),
		restart(c+"test_traceparent_parent_id_too_short", "00-"+SuiteTraceID+"-123456789012345-01"),
		restart(c+"test_traceparent_trace_flags_illegal_characters #1", "00-"+SuiteTraceID+"-"+SuiteParentID+"-.0"),
		restart(c+"test_traceparent_trace_flags_illegal_characters #2", "00-"+SuiteTraceID+"-"+SuiteParentID+"-0."),
		restart(c+"test_traceparent_trace_flags_too_long", "00-"+SuiteTraceID+"-"+SuiteParentID+"-001"),
		restart(c+"test_traceparent_trace_flags_too_short", "00-"+SuiteTraceID+"-"+SuiteParentID+"-1"),
		continued(c+"test_traceparent_ows_handling #1", tp(" "+valid01)),
		continued(c+"test_traceparent_ows_handling #2", tp("\t"+valid01)),
		continued(c+"test_traceparent_ows_handling #3", tp(valid01+" ")),
		continued(c+"test_traceparent_ows_handling #4", tp(valid01+"\t")),
		continued(c+"test_traceparent_ows_handling #5", tp("\t "+valid01+" \t")),
		// Both requests must give tracestates of the same length: the
		// tracestate without a traceparent is discarded.
		{Origin: c + "test_tracestate_included_traceparent_missing #1", In: hdrs(ts("foo=1")), StateLacks: []string{"foo"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_included_traceparent_missing #2", In: hdrs(ts("foo=1,bar=2")), StateLacks: []string{"foo", "bar"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_included_traceparent_included", In: hdrs(tp(valid00), ts("foo=1,bar=2")), Continues: true, StateHas: []string{"foo=1", "bar=2"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_header_name #1", In: hdrs(tp(valid00), Header{"trace-state", "foo=1"}), Continues: true, StateLacks: []string{"foo"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_header_name #2", In: hdrs(tp(valid00), Header{"trace.state", "foo=1"}), Continues: true, StateLacks: []string{"foo"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_header_name_valid_casing #1", In: hdrs(tp(valid00), Header{"TraceState", "foo=1"}), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_header_name_valid_casing #2", In: hdrs(tp(valid00), Header{"TrAcEsTaTe", "foo=1"}), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_header_name_valid_casing #3", In: hdrs(tp(valid00), Header{"TRACESTATE", "foo=1"}), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_empty_header #1", In: hdrs(tp(valid00), ts("")), Continues: true, StateLen: 0},
		{Origin: c + "test_tracestate_empty_header #2", In: hdrs(tp(valid00), ts("foo=1"), ts("")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_empty_header #3", In: hdrs(tp(valid00), ts(""), ts("foo=1")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_multiple_headers_different_keys", In: hdrs(tp(valid00), ts("foo=1,bar=2"), ts("rojo=1,congo=2"), ts("baz=3")), Continues: true,
			StateHas: []string{"foo=1", "bar=2", "rojo=1", "congo=2", "baz=3"}, StateOrdered: true, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_duplicated_keys #1", In: hdrs(tp(valid00), ts("foo=1,foo=1")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_duplicated_keys #2", In: hdrs(tp(valid00), ts("foo=1,foo=2")), Continues: true, StateOneOf: []string{"foo=1", "foo=2"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_duplicated_keys #3", In: hdrs(tp(valid00), ts("foo=1"), ts("foo=1")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_duplicated_keys #4", In: hdrs(tp(valid00), ts("foo=1"), ts("foo=2")), Continues: true, StateOneOf: []string{"foo=1", "foo=2"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_all_allowed_characters #1", In: hdrs(tp(valid00), ts(AllowedKey+"="+AllowedValue)), Continues: true, StateHas: []string{AllowedKey + "=" + AllowedValue}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_all_allowed_characters #2", In: hdrs(tp(valid00), ts(withVendor+"="+AllowedValue)), Continues: true, StateHas: []string{withVendor + "=" + AllowedValue}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_ows_handling #1", In: hdrs(tp(valid00), ts("foo=1 \t , \t bar=2, \t baz=3")), Continues: true, StateHas: []string{"foo=1", "bar=2", "baz=3"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_ows_handling #2", In: hdrs(tp(valid00), ts("foo=1\t \t,\t \tbar=2,\t \tbaz=3")), Continues: true, StateHas: []string{"foo=1", "bar=2", "baz=3"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_ows_handling #3", In: hdrs(tp(valid00), ts(" foo=1")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_ows_handling #4", In: hdrs(tp(valid00), ts("\tfoo=1")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_ows_handling #5", In: hdrs(tp(valid00), ts("foo=1 ")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_ows_handling #6", In: hdrs(tp(valid00), ts("foo=1\t")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_ows_handling #7", In: hdrs(tp(valid00), ts("\t foo=1 \t")), Continues: true, StateHas: []string{"foo=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_illegal_characters #1", In: hdrs(tp(valid00), ts("foo =1")), Continues: true, StateLacks: []string{"foo "}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_illegal_characters #2", In: hdrs(tp(valid00), ts("FOO=1")), Continues: true, StateLacks: []string{"FOO"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_illegal_characters #3", In: hdrs(tp(valid00), ts("foo.bar=1")), Continues: true, StateLacks: []string{"foo.bar"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_illegal_vendor_format #1", In: hdrs(tp(valid00), ts("foo@=1,bar=2")), Continues: true, StateHas: []string{"foo@=1", "bar=2"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_illegal_vendor_format #2", In: hdrs(tp(valid00), ts("@foo=1,bar=2")), Continues: true, StateLacks: []string{"bar"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_illegal_vendor_format #3", In: hdrs(tp(valid00), ts("foo@@bar=1,bar=2")), Continues: true, StateHas: []string{"foo@@bar=1", "bar=2"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_illegal_vendor_format #4", In: hdrs(tp(valid00), ts("foo@bar@baz=1,bar=2")), Continues: true, StateHas: []string{"foo@bar@baz=1", "bar=2"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_member_count_limit #1", In: append(hdrs(tp(valid00)), Members(32)...), Continues: true, StateHas: []string{"bar01=01"}, StateLen: 32},
		{Origin: c + "test_tracestate_member_count_limit #2", In: append(hdrs(tp(valid00)), Members(33)...), Continues: true, StateLacks: []string{"bar01"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_length_limit #1", In: hdrs(tp(valid00), ts("foo=1"), ts(key256+"=1")), Continues: true, StateHas: []string{"foo=1", key256 + "=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_length_limit #2", In: hdrs(tp(valid00), ts("foo=1"), ts(strings.Repeat("z", 257)+"=1")), Continues: true, StateLacks: []string{"foo"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_length_limit #3", In: hdrs(tp(valid00), ts("foo=1"), ts(t241v14+"=1")), Continues: true, StateHas: []string{"foo=1", t241v14 + "=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_length_limit #4", In: hdrs(tp(valid00), ts("foo=1"), ts(t242v+"=1")), Continues: true, StateHas: []string{"foo=1", t242v + "=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_key_length_limit #5", In: hdrs(tp(valid00), ts("foo=1"), ts(t1v15+"=1")), Continues: true, StateHas: []string{"foo=1", t1v15 + "=1"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_value_illegal_characters #1", In: hdrs(tp(valid00), ts("foo=bar=baz")), Continues: true, StateLacks: []string{"foo"}, StateLen: NoStateCheck},
		{Origin: c + "test_tracestate_value_illegal_characters #2", In: hdrs(tp(valid00), ts("foo=,bar=3")), Continues: true, StateLacks: []string{"foo", "bar"}, StateLen: NoStateCheck},
		{Origin: "TraceContext2Test.test_propagates_random_flag", In: hdrs(tp("00-" + SuiteTraceID + "-" + SuiteParentID + "-02")), Continues: true, RandomFlag: true, StateLen: NoStateCheck},
	}
	return cases
}()

// W3CAdvanced is test.py's AdvancedTest: one inbound request, three
// outbound calls. All three continue the trace (when Continues) and each
// has its own parent id.
var W3CAdvanced = []W3CCase{
	{Origin: "AdvancedTest.test_multiple_requests_with_valid_traceparent", In: hdrs(tp(valid01)), Continues: true, StateLen: NoStateCheck},
	{Origin: "AdvancedTest.test_multiple_requests_without_traceparent", StateLen: NoStateCheck},
	{Origin: "AdvancedTest.test_multiple_requests_with_illegal_traceparent", In: hdrs(tp("00-00000000000000000000000000000000-1234567890123456-01")), StateLen: NoStateCheck},
}

// ParseHarnessTraceState reads an outbound tracestate as the suite's
// Tracestate.from_string does (test/tracecontext/tracestate.py): members
// split on OWS "," OWS, empty ones skipped, the first value of a repeated
// key kept. It returns the keys in order and their values; ok is false
// where the harness would raise (a member not key=value by its grammar).
func ParseHarnessTraceState(s string) (keys []string, vals map[string]string, ok bool) {
	vals = map[string]string{}
	for _, m := range strings.Split(s, ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		eq := strings.IndexByte(m, '=')
		if eq <= 0 || !harnessKey(m[:eq]) || !harnessValue(m[eq+1:]) {
			return nil, nil, false
		}
		k := m[:eq]
		if _, dup := vals[k]; dup {
			continue
		}
		keys = append(keys, k)
		vals[k] = m[eq+1:]
	}
	return keys, vals, true
}

// harnessKey is tracestate.py's _KEY_FORMAT: [0-9a-z][_0-9a-z\-\*\/@]{0,255}.
func harnessKey(k string) bool {
	if len(k) == 0 || len(k) > 256 || !(k[0] >= 'a' && k[0] <= 'z' || k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_-*/@", c) >= 0) {
			return false
		}
	}
	return true
}

// harnessValue is _VALUE_FORMAT: [\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}
// followed by one of the same without \x20.
func harnessValue(v string) bool {
	if len(v) == 0 || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

// CheckTraceState returns what the outbound tracestate out fails of c's
// tracestate checks, "" when none.
func (c W3CCase) CheckTraceState(out string) string {
	keys, vals, ok := ParseHarnessTraceState(out)
	if !ok {
		return "the harness cannot parse tracestate " + quote(out)
	}
	var problems []string
	last := -1
	for _, m := range c.StateHas {
		k, v, _ := strings.Cut(m, "=")
		got, present := vals[k]
		if !present || got != v {
			problems = append(problems, "lacks "+quote(m))
			continue
		}
		if c.StateOrdered {
			i := indexOf(keys, k)
			if i < last {
				problems = append(problems, quote(m)+" out of order")
			}
			last = i
		}
	}
	if len(c.StateOneOf) > 0 {
		found := false
		for _, m := range c.StateOneOf {
			k, v, _ := strings.Cut(m, "=")
			if vals[k] == v {
				found = true
			}
		}
		if !found {
			problems = append(problems, "has none of "+strings.Join(c.StateOneOf, " "))
		}
	}
	for _, k := range c.StateLacks {
		if _, present := vals[k]; present {
			problems = append(problems, "has key "+quote(k))
		}
	}
	if c.StateLen >= 0 && len(keys) != c.StateLen {
		problems = append(problems, "has "+strconv.Itoa(len(keys))+" members, want "+strconv.Itoa(c.StateLen))
	}
	if len(problems) == 0 {
		return ""
	}
	return "tracestate " + quote(clip(out)) + ": " + strings.Join(problems, "; ")
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func quote(s string) string { return `"` + s + `"` }

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
