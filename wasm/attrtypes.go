package main

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Envoy hands a Wasm filter an attribute in its CEL type's raw form
// (serializeValue in source/extensions/common/wasm/context.cc): strings
// and bytes as they are, int and uint as 8 bytes little endian, bool as
// one byte, durations and timestamps as int64 nanoseconds (since the Unix
// epoch for timestamps), maps and messages as pairs or protobuf bytes. A
// label or filter-state value needs text, so the filter knows the type of
// every attribute Envoy documents (docs/root/intro/arch_overview/advanced/
// attributes.rst, the wrappers in source/extensions/filters/common/expr/
// context.cc) and prints it as Envoy's Expr::print does, which is what
// Istio's stats filter puts in a custom dimension: ints in decimal,
// bools true/false, durations as absl::FormatDuration (1.5ms, 1h2m3s),
// timestamps as absl::FormatTime in UTC (2026-11-21T10:00:00.5+00:00).
type attrKind uint8

const (
	kindString attrKind = iota
	kindInt
	kindUint
	kindBool
	kindDuration
	kindTimestamp
	// kindMap is a map or message: no single value to print.
	kindMap
	// kindDynamic is a value inside metadata or filter state, whose type
	// only the data says: taken as a string, as most are.
	kindDynamic
)

// attributeKinds are Envoy's attributes by path.
var attributeKinds = map[string]attrKind{
	// request.*
	"request.path": kindString, "request.url_path": kindString, "request.host": kindString,
	"request.scheme": kindString, "request.method": kindString, "request.headers": kindMap,
	"request.headers_bytes": kindInt, "request.referer": kindString, "request.useragent": kindString,
	"request.time": kindTimestamp, "request.id": kindString, "request.protocol": kindString,
	"request.query": kindString, "request.duration": kindDuration, "request.size": kindInt,
	"request.total_size": kindInt,
	// response.*
	"response.code": kindInt, "response.code_details": kindString, "response.flags": kindInt,
	"response.grpc_status": kindInt, "response.headers": kindMap, "response.headers_bytes": kindInt,
	"response.trailers": kindMap, "response.size": kindInt, "response.total_size": kindInt,
	"response.backend_latency": kindDuration,
	// source.*, destination.*, connection.*
	"source.address": kindString, "source.port": kindInt,
	"destination.address": kindString, "destination.port": kindInt,
	"connection.id": kindUint, "connection.mtls": kindBool,
	"connection.requested_server_name": kindString, "connection.termination_details": kindString,
	"connection.transport_failure_reason": kindString,
	// upstream.*
	"upstream.address": kindString, "upstream.port": kindInt, "upstream.num_endpoints": kindUint,
	"upstream.local_address": kindString, "upstream.transport_failure_reason": kindString,
	"upstream.request_attempt_count": kindUint, "upstream.cx_pool_ready_duration": kindDuration,
	"upstream.locality": kindMap,
	// metadata and filter state
	"metadata": kindMap, "filter_state": kindMap, "upstream_filter_state": kindMap,
	// xds.*
	"xds.node": kindMap, "xds.cluster_name": kindString, "xds.cluster_metadata": kindMap,
	"xds.listener_direction": kindInt, "xds.listener_metadata": kindMap, "xds.route_name": kindString,
	"xds.route_metadata": kindMap, "xds.virtual_host_name": kindString, "xds.virtual_host_metadata": kindMap,
	"xds.upstream_host_metadata": kindMap, "xds.upstream_host_locality_metadata": kindMap,
	"xds.filter_chain_name": kindString,
	// Wasm only, and the names Envoy before the xds.* ones served.
	"plugin_name": kindString, "plugin_root_id": kindString, "plugin_vm_id": kindString,
	"connection_id": kindUint, "node": kindMap, "listener_direction": kindInt,
	"listener_metadata": kindMap, "cluster_name": kindString, "cluster_metadata": kindMap,
	"route_name": kindString, "route_metadata": kindMap, "upstream_host_metadata": kindMap,
}

func init() {
	// The TLS attributes of both connections.
	for _, f := range []string{"tls_version", "subject_local_certificate", "subject_peer_certificate",
		"dns_san_local_certificate", "dns_san_peer_certificate", "uri_san_local_certificate",
		"uri_san_peer_certificate", "sha256_peer_certificate_digest", "peer_certificate"} {
		attributeKinds["connection."+f] = kindString
		attributeKinds["upstream."+f] = kindString
	}
}

// fixedRoots are the attribute roots whose keys Envoy fixes: any other key
// under them is never there.
var fixedRoots = map[string]bool{
	"request": true, "response": true, "source": true, "destination": true,
	"connection": true, "upstream": true, "xds": true,
}

// attributeKind returns the type of the attribute at path, or an error
// for a path that names a map (no single value) or no Envoy attribute.
func attributeKind(path []string) (attrKind, error) {
	full := strings.Join(path, ".")
	if k, ok := attributeKinds[full]; ok {
		if k == kindMap {
			return 0, fmt.Errorf("%q is a map, not a value: name one of its entries", full)
		}
		return k, nil
	}
	if fixedRoots[path[0]] && len(path) == 1 {
		return 0, fmt.Errorf("%q is a map, not a value: name one of its attributes, e.g. %s.%s", full, full, exampleKey(full))
	}
	// The deepest known prefix decides what is below it.
	for n := len(path) - 1; n >= 1; n-- {
		prefix := strings.Join(path[:n], ".")
		k, ok := attributeKinds[prefix]
		if !ok {
			continue
		}
		if k != kindMap {
			return 0, fmt.Errorf("%q is not an Envoy attribute: %s is a value, with nothing below it", full, prefix)
		}
		switch prefix {
		case "request.headers", "response.headers", "response.trailers":
			if n == len(path)-1 {
				return kindString, nil // one header's value
			}
			return 0, fmt.Errorf("%q is not an Envoy attribute: a header value has nothing below it", full)
		}
		return kindDynamic, nil
	}
	if fixedRoots[path[0]] {
		return 0, fmt.Errorf("%q is not an Envoy attribute (see Envoy's attribute list for %s.*)", full, path[0])
	}
	// Envoy looks any other name up as the filter state wasm.<name> (a
	// value another Wasm filter set).
	return kindDynamic, nil
}

func exampleKey(root string) string {
	switch root {
	case "request":
		return "url_path"
	case "response":
		return "code"
	case "xds":
		return "cluster_name"
	}
	return "address"
}

// requestHeaderKeys are the request.* attributes Envoy computes from the
// request header map (RequestWrapper in source/extensions/filters/common/
// expr/context.cc). A Wasm filter's context has that map only during
// proxy_on_request_headers (decodeHeaders clears request_headers_ once the
// filter continues) and again in proxy_on_log (access_log_request_headers_):
// in the response callbacks Envoy answers NotFound for these (and 0 for
// request.headers_bytes).
var requestHeaderKeys = map[string]bool{
	"path": true, "url_path": true, "host": true, "scheme": true, "method": true,
	"referer": true, "useragent": true, "id": true, "query": true, "headers": true,
	"headers_bytes": true,
}

// fromRequestHeaders reports whether Envoy serves the attribute only while
// the request headers are available.
func (a *attrRead) fromRequestHeaders() bool {
	segs := a.path.segs
	return len(segs) >= 2 && segs[0] == "request" && requestHeaderKeys[segs[1]]
}

// attrRead reads one configured attribute and prints it by its type. The
// last value printed is kept: most requests repeat it (response.code,
// connection.mtls), and the same string then costs no allocation.
type attrRead struct {
	path    propPath
	kind    attrKind
	lastRaw uint64
	last    string
	hasLast bool
}

// read returns the attribute as text, "" when absent or not of its type.
func (a *attrRead) read() string {
	b, ok := getProperty(&a.path)
	if !ok || len(b) == 0 {
		return ""
	}
	switch a.kind {
	case kindString, kindDynamic:
		// The bytes belong to this read (the host copied them into a
		// buffer the guest allocated): no copy.
		return unsafe.String(&b[0], len(b))
	case kindBool:
		if len(b) != 1 {
			return ""
		}
		if b[0] != 0 {
			return "true"
		}
		return "false"
	}
	if len(b) != 8 {
		return ""
	}
	raw := binary.LittleEndian.Uint64(b)
	if a.hasLast && raw == a.lastRaw {
		return a.last
	}
	var buf [48]byte
	var out []byte
	switch a.kind {
	case kindInt:
		out = strconv.AppendInt(buf[:0], int64(raw), 10)
	case kindUint:
		out = strconv.AppendUint(buf[:0], raw, 10)
	case kindDuration:
		out = appendAbslDuration(buf[:0], int64(raw))
	case kindTimestamp:
		out = time.Unix(0, int64(raw)).UTC().AppendFormat(buf[:0], abslTimeLayout)
	}
	a.last, a.lastRaw, a.hasLast = string(out), raw, true
	return a.last
}

// abslTimeLayout is absl::FormatTime's default, RFC3339_full
// (%Y-%m-%d%ET%H:%M:%E*S%Ez): fractional seconds without trailing zeros,
// the UTC offset as +00:00.
const abslTimeLayout = "2006-01-02T15:04:05.999999999-07:00"

// appendAbslDuration prints ns as absl::FormatDuration does: under a
// second as a fraction of one unit (ns, us, ms: 1.5ms), else hours,
// minutes and fractional seconds, each left out when zero (1h2m3.5s,
// 1h); zero is "0".
func appendAbslDuration(b []byte, ns int64) []byte {
	if ns == 0 {
		return append(b, '0')
	}
	u := uint64(ns)
	if ns < 0 {
		b = append(b, '-')
		u = uint64(-(ns + 1)) + 1
	}
	switch {
	case u < 1e3:
		return append(strconv.AppendUint(b, u, 10), "ns"...)
	case u < 1e6:
		return appendUnit(b, u, 1e3, 3, "us")
	case u < 1e9:
		return appendUnit(b, u, 1e6, 6, "ms")
	}
	if h := u / 3600e9; h > 0 {
		b = append(strconv.AppendUint(b, h, 10), 'h')
	}
	u %= 3600e9
	if m := u / 60e9; m > 0 {
		b = append(strconv.AppendUint(b, m, 10), 'm')
	}
	u %= 60e9
	if u > 0 {
		b = appendUnit(b, u, 1e9, 9, "s")
	}
	return b
}

// appendUnit prints u/unit (unit = 10^digits) with its fraction, trailing
// zeros dropped.
func appendUnit(b []byte, u, unit uint64, digits int, abbr string) []byte {
	b = strconv.AppendUint(b, u/unit, 10)
	if f := u % unit; f > 0 {
		b = append(b, '.')
		var frac [9]byte
		for i := digits - 1; i >= 0; i-- {
			frac[i] = byte('0' + f%10)
			f /= 10
		}
		n := digits
		for n > 0 && frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, abbr...)
}
