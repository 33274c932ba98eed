package main

import "strings"

// propPath is an Envoy attribute or filter-state path serialized once (the
// ABI's NUL-joined segments): the SDK would serialize, and allocate, on
// every call.
type propPath struct {
	segs []string
	raw  []byte
}

func mkPath(segs ...string) propPath {
	return propPath{segs: segs, raw: []byte(strings.Join(segs, "\x00"))}
}
