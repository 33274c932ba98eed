package main

import (
	"encoding/binary"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// envoyHost reads Envoy attributes through proxy_get_property. Envoy
// serialises strings as their bytes, integers, durations and timestamps as
// 8-byte little endian and booleans as one byte.
type envoyHost struct{}

func (envoyHost) propertyString(path []string) string {
	b, err := proxywasm.GetProperty(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func (envoyHost) propertyUint(path []string) (uint64, bool) {
	b, err := proxywasm.GetProperty(path)
	if err != nil || len(b) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b), true
}

func (envoyHost) propertyBool(path []string) (value, ok bool) {
	b, err := proxywasm.GetProperty(path)
	if err != nil || len(b) != 1 {
		return false, false
	}
	return b[0] != 0, true
}

// headerList is a header map as the host returned it. Envoy keeps repeated
// headers as separate entries, which is how duplicates are detected.
type headerList [][2]string

// values returns every value of the lowercase name, nil when absent.
func (h headerList) values(name string) []string {
	var out []string
	for _, kv := range h {
		if kv[0] == name {
			out = append(out, kv[1])
		}
	}
	return out
}

// first returns the first value of name, "" when absent.
func (h headerList) first(name string) string {
	for _, kv := range h {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}
