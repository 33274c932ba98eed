//go:build wasm

package main

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// Proxy-Wasm map types and statuses used by the direct host calls.
const (
	mapRequestHeaders  = 0
	mapResponseHeaders = 2
	statusOK           = 0
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

//go:wasmimport env proxy_increment_metric
func hostIncrementMetric(metricID uint32, offset int64) uint32

//go:wasmimport env proxy_record_metric
func hostRecordMetric(metricID uint32, value uint64) uint32

//go:wasmimport env proxy_get_header_map_pairs
func hostGetHeaderMapPairs(mapType uint32, returnValueData unsafe.Pointer, returnValueSize *int32) uint32

//go:wasmimport env proxy_replace_header_map_value
func hostReplaceHeaderMapValue(mapType uint32, keyData *byte, keySize int32, valueData *byte, valueSize int32) uint32

var (
	errHostStatus = errors.New("host call failed")
	errEmptyValue = errors.New("data must not be empty")
)

// ret receives what a host call returns. Locals passed by address to a
// wasmimport move to the heap (two allocations per call); the VM is
// single-threaded and no call nests in another, so one global serves.
var ret struct {
	data *byte
	size int32
}

// takeRet returns the buffer the host allocated in the guest and drops the
// global's reference to it.
func takeRet() (*byte, int32) {
	d, n := ret.data, ret.size
	ret.data, ret.size = nil, 0
	return d, n
}

// getProperty returns the attribute's bytes (owned by the guest: the host
// copied them into a buffer it had the guest allocate).
func getProperty(p *propPath) ([]byte, bool) {
	st := hostGetProperty(&p.raw[0], int32(len(p.raw)), unsafe.Pointer(&ret.data), &ret.size)
	d, n := takeRet()
	if st != statusOK || d == nil {
		return nil, false
	}
	return unsafe.Slice(d, n), true
}

// setProperty writes filter state; the host copies data.
func setProperty(p *propPath, data []byte) error {
	if len(data) == 0 {
		return errEmptyValue
	}
	if hostSetProperty(&p.raw[0], int32(len(p.raw)), &data[0], int32(len(data))) != statusOK {
		return errHostStatus
	}
	return nil
}

// getResponseHeader returns the first value of a response header, "" when
// absent.
func getResponseHeader(key string) (string, error) {
	st := hostGetHeaderMapValue(mapResponseHeaders, unsafe.StringData(key), int32(len(key)), unsafe.Pointer(&ret.data), &ret.size)
	d, n := takeRet()
	switch st {
	case statusOK:
		if d == nil {
			return "", nil
		}
		return unsafe.String(d, n), nil
	case statusNotFound:
		return "", nil
	}
	return "", errHostStatus
}

// getRequestHeaders returns the request headers, decoded into dst's
// storage (reused from request to request). The strings point into the
// buffer the host filled, which they keep alive: nothing is copied.
func getRequestHeaders(dst headerList) (headerList, error) {
	st := hostGetHeaderMapPairs(mapRequestHeaders, unsafe.Pointer(&ret.data), &ret.size)
	d, n := takeRet()
	if st != statusOK {
		return nil, errHostStatus
	}
	dst = dst[:0]
	if d == nil || n < 4 {
		return dst, nil
	}
	b := unsafe.Slice(d, n)
	count := int(binary.LittleEndian.Uint32(b))
	data := 4 + 8*count
	if count > len(b)/8 {
		return nil, errHostStatus
	}
	for i := 0; i < count; i++ {
		ks := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vs := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if ks < 0 || vs < 0 || data+ks+1+vs+1 > len(b) {
			return nil, errHostStatus
		}
		var kv [2]string
		if ks > 0 {
			kv[0] = unsafe.String(&b[data], ks)
		}
		data += ks + 1
		if vs > 0 {
			kv[1] = unsafe.String(&b[data], vs)
		}
		data += vs + 1
		dst = append(dst, kv)
	}
	return dst, nil
}

// replaceRequestHeader sets key to value (the host copies both).
func replaceRequestHeader(key, value string) error {
	if hostReplaceHeaderMapValue(mapRequestHeaders, unsafe.StringData(key), int32(len(key)), unsafe.StringData(value), int32(len(value))) != statusOK {
		return errHostStatus
	}
	return nil
}

const statusNotFound = 1

// incrementCounter and recordHistogram panic when the host refuses, as
// the SDK's do; the callback's guard counts it.
func incrementCounter(id uint32, n int64) {
	if hostIncrementMetric(id, n) != statusOK {
		panic(errHostStatus)
	}
}

func recordHistogram(id uint32, v uint64) {
	if hostRecordMetric(id, v) != statusOK {
		panic(errHostStatus)
	}
}
