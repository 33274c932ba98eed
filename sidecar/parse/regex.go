package parse

import (
	"fmt"
	"regexp"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Regex parses lines with a regular expression's named groups: each group
// becomes a field; groups named like the JSON parser's members (msg,
// level, time, trace_id, span_id, ...) fill the record's own fields. The
// line itself is the message unless a group supplies one. timeLayout,
// when set, reads the time group with that Go layout.
type Regex struct {
	re         *regexp.Regexp
	names      []string
	timeLayout string
	opts       Options
}

// Presets are regular expressions for well-known access log formats.
var presets = map[string]struct{ re, timeLayout string }{
	// nginx "combined" (ngx_http_log_module): $remote_addr - $remote_user
	// [$time_local] "$request" $status $body_bytes_sent "$http_referer"
	// "$http_user_agent"
	"nginx": {`^(?P<remote_addr>\S+) - (?P<remote_user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+) "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)"`,
		"02/Jan/2006:15:04:05 -0700"},
	// Apache "combined" (mod_log_config): %h %l %u %t "%r" %>s %b
	// "%{Referer}i" "%{User-agent}i"; %b is "-" for no body.
	"apache": {`^(?P<remote_host>\S+) (?P<ident>\S+) (?P<remote_user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-)(?: "(?P<referer>[^"]*)" "(?P<user_agent>[^"]*)")?`,
		"02/Jan/2006:15:04:05 -0700"},
	// Envoy's default access log format (Envoy docs, "Default format
	// string"): [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%
	// %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED%
	// %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
	// "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%"
	// "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
	"envoy": {`^\[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<response_code>\d+) (?P<response_flags>\S+) (?P<bytes_received>\d+) (?P<bytes_sent>\d+) (?P<duration>\d+|-) (?P<upstream_service_time>\S+) "(?P<x_forwarded_for>[^"]*)" "(?P<user_agent>[^"]*)" "(?P<request_id>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)"`,
		time.RFC3339Nano},
}

// NewRegex compiles pattern; it must have at least one named group.
func NewRegex(pattern, timeLayout string, o Options) (*Regex, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	named := false
	for _, n := range re.SubexpNames() {
		named = named || n != ""
	}
	if !named {
		return nil, fmt.Errorf("%q has no named group (?P<name>...)", pattern)
	}
	return &Regex{re: re, names: re.SubexpNames(), timeLayout: timeLayout, opts: o}, nil
}

// Parse implements Parser.
func (p *Regex) Parse(line []byte, r *record.Record) error {
	s := string(line)
	m := p.re.FindStringSubmatchIndex(s)
	if m == nil {
		Raw{opts: p.opts}.Parse(line, r)
		return fmt.Errorf("line does not match %s", clip(p.re.String()))
	}
	fields := make(map[string]string, len(p.names))
	for i, n := range p.names {
		if n == "" || m[2*i] < 0 {
			continue
		}
		fields[n] = s[m[2*i]:m[2*i+1]]
	}
	var custom time.Time
	if p.timeLayout != "" {
		if t, err := time.Parse(p.timeLayout, fields["time"]); err == nil {
			custom = t
			delete(fields, "time")
		}
	}
	applyFields(fields, r, p.opts)
	if !custom.IsZero() {
		r.StartTime = custom
	}
	if r.Message == "" {
		r.Message = s
		if r.Trace.TraceID == "" {
			FindTrace(s, &r.Trace)
		}
	}
	return nil
}
