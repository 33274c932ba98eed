//go:build wasm

package main

import (
	"errors"
	"unsafe"
)

// The hot-path host calls, made directly rather than through the SDK: the
// SDK serializes the property path on every call (an allocation) and turns
// every status into an error value. The native build (proxytest) goes
// through the SDK instead (abi_native.go); both are tested.

//go:wasmimport env proxy_get_property
func hostGetProperty(pathData *byte, pathSize int32, returnValueData unsafe.Pointer, returnValueSize *int32) uint32

//go:wasmimport env proxy_set_property
func hostSetProperty(pathData *byte, pathSize int32, valueData *byte, valueSize int32) uint32

//go:wasmimport env proxy_get_header_map_value
func hostGetHeaderMapValue(mapType uint32, keyData *byte, keySize int32, returnValueData unsafe.Pointer, returnValueSize *int32) uint32

//go:wasmimport env proxy_replace_header_map_value
func hostReplaceHeaderMapValue(mapType uint32, keyData *byte, keySize int32, valueData *byte, valueSize int32) uint32

var errHostStatus = errors.New("host call failed")

// getProperty returns the attribute's bytes (owned by the guest: the host
// copied them into a buffer it had the guest allocate).
func getProperty(p *propPath) ([]byte, bool) {
	var ret *byte
	var size int32
	if hostGetProperty(&p.raw[0], int32(len(p.raw)), unsafe.Pointer(&ret), &size) != statusOK {
		return nil, false
	}
	return unsafe.Slice(ret, size), true
}

// setProperty writes filter state; the host copies data.
func setProperty(p *propPath, data []byte) error {
	if len(data) == 0 {
		return errors.New("data must not be empty")
	}
	if hostSetProperty(&p.raw[0], int32(len(p.raw)), &data[0], int32(len(data))) != statusOK {
		return errHostStatus
	}
	return nil
}

// getResponseHeader returns the first value of a response header, "" when
// absent.
func getResponseHeader(key string) (string, error) {
	var ret *byte
	var size int32
	switch hostGetHeaderMapValue(mapResponseHeaders, unsafe.StringData(key), int32(len(key)), unsafe.Pointer(&ret), &size) {
	case statusOK:
		return unsafe.String(ret, size), nil
	case statusNotFound:
		return "", nil
	}
	return "", errHostStatus
}

// replaceRequestHeader sets key to value (the host copies both).
func replaceRequestHeader(key, value string) error {
	if hostReplaceHeaderMapValue(mapRequestHeaders, unsafe.StringData(key), int32(len(key)), unsafe.StringData(value), int32(len(value))) != statusOK {
		return errHostStatus
	}
	return nil
}

const statusNotFound = 1
