//go:build !wasm

package main

import (
	"errors"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// The native build (proxytest) makes the hot-path host calls through the
// SDK; the .wasm makes them directly (abi_wasm.go).

func getProperty(p *propPath) ([]byte, bool) {
	b, err := proxywasm.GetProperty(p.segs)
	if err != nil {
		return nil, false
	}
	return b, true
}

func setProperty(p *propPath, data []byte) error {
	return proxywasm.SetProperty(p.segs, data)
}

func getResponseHeader(key string) (string, error) {
	v, err := proxywasm.GetHttpResponseHeader(key)
	if errors.Is(err, types.ErrorStatusNotFound) {
		return "", nil
	}
	return v, err
}

func replaceRequestHeader(key, value string) error {
	return proxywasm.ReplaceHttpRequestHeader(key, value)
}

func getRequestHeaders(headerList) (headerList, error) {
	return proxywasm.GetHttpRequestHeaders()
}

func incrementCounter(id uint32, n int64) { proxywasm.MetricCounter(id).Increment(uint64(n)) }

func recordHistogram(id uint32, v uint64) { proxywasm.MetricHistogram(id).Record(v) }
