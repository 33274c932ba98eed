package main

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// envoyHost reads Envoy attributes through proxy_get_property. Envoy
// serialises strings as their bytes, integers, durations and timestamps as
// 8-byte little endian and booleans as one byte.
type envoyHost struct{}

// renamedAttr is an attribute Envoy has served under two names: the
// Wasm-only top-level one (node, listener_direction) and the xds.* one of
// Envoy's CEL attributes. Envoy 1.33 removed the top-level names
// (envoyproxy/envoy#36619, "Remove previously deprecated xDS attributes
// from get_property"), so the xds.* name is asked first: on the Envoys
// Istio ships today the read costs one host call. When the host answers
// NotFound the other name is asked, for Envoys that serve only that one.
// Once a name has answered, only that name is asked.
type renamedAttr struct {
	names [2][]string // xds.* first
	// served is 1 + the index of the name that answered, 0 before one did.
	served int8
}

var (
	attrNode              = [2][]string{{"xds", "node"}, {"node"}}
	attrListenerDirection = [2][]string{{"xds", "listener_direction"}, {"listener_direction"}}
)

// read returns the value at the attribute's path followed by rest. ok is
// false when neither name has it, or the host failed otherwise than with
// NotFound (then the other name is not tried: Envoy knows this one).
func (a *renamedAttr) read(rest ...string) (b []byte, ok bool) {
	if a.served != 0 {
		b, err := proxywasm.GetProperty(join(a.names[a.served-1], rest))
		return b, err == nil
	}
	for i, name := range a.names {
		b, err := proxywasm.GetProperty(join(name, rest))
		if err == nil {
			a.served = int8(i + 1)
			return b, true
		}
		if !errors.Is(err, types.ErrorStatusNotFound) {
			return nil, false
		}
	}
	return nil, false
}

func (a *renamedAttr) readString(rest ...string) string {
	b, _ := a.read(rest...)
	return string(b)
}

func (a *renamedAttr) readUint(rest ...string) (uint64, bool) {
	b, ok := a.read(rest...)
	if !ok || len(b) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b), true
}

func join(name, rest []string) []string {
	return append(append(make([]string, 0, len(name)+len(rest)), name...), rest...)
}

// The hot-path reads take a path serialized once.

// pathString returns a string attribute, "" when absent. The bytes belong
// to this call (the host copied them into guest memory), so no copy.
func (envoyHost) pathString(p *propPath) string {
	b, ok := getProperty(p)
	if !ok || len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (envoyHost) pathUint(p *propPath) (uint64, bool) {
	b, ok := getProperty(p)
	if !ok || len(b) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b), true
}

func (envoyHost) pathBool(p *propPath) (value, ok bool) {
	b, ok := getProperty(p)
	if !ok || len(b) != 1 {
		return false, false
	}
	return b[0] != 0, true
}

// headerList is a header map as the host returned it. Envoy keeps repeated
// headers as separate entries, which is how duplicates are detected.
type headerList [][2]string

// values returns every value of the lowercase name, nil when absent. A
// single value is returned as a slice of the list itself (no allocation).
func (h headerList) values(name string) []string {
	for i := range h {
		if !nameIs(h[i][0], name) {
			continue
		}
		if h.count(name) == 1 {
			return h[i][1:2]
		}
		var out []string
		for _, kv := range h[i:] {
			if nameIs(kv[0], name) {
				out = append(out, kv[1])
			}
		}
		return out
	}
	return nil
}

// count returns how many values name has.
func (h headerList) count(name string) int {
	n := 0
	for i := range h {
		if nameIs(h[i][0], name) {
			n++
		}
	}
	return n
}

// first returns the first value of name, "" when absent.
func (h headerList) first(name string) string {
	for i := range h {
		if nameIs(h[i][0], name) {
			return h[i][1]
		}
	}
	return ""
}

// nameIs is k == name, checking the first, last and middle bytes before the
// bytes in between: a string comparison is a runtime call in Go's Wasm,
// and most header names of the same length differ at an end.
func nameIs(k, name string) bool {
	if len(k) != len(name) {
		return false
	}
	if len(k) == 0 {
		return true
	}
	n := len(k)
	return k[0] == name[0] && k[n-1] == name[n-1] && k[n/2] == name[n/2] && k == name
}
