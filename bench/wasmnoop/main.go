// Command wasmnoop is the baseline of the filter benchmarks: a Proxy-Wasm
// plugin built on the same SDK that does nothing on any callback, so the
// benchmark can subtract the cost of the SDK and the host ABI from the
// cost of meshtrail's filter.
//
// With the plugin configuration "read-headers" it instead reads the
// request and response header maps (one host call each) and nothing else:
// a second reference for what the least a header-inspecting filter pays.
// Empty configuration: the SDK's default contexts, exactly the no-op.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type plugin struct {
	types.DefaultPluginContext
	readHeaders bool
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	c, _ := proxywasm.GetPluginConfiguration()
	p.readHeaders = string(c) == "read-headers"
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext {
	if p.readHeaders {
		return &reader{}
	}
	return &types.DefaultHttpContext{}
}

// reader reads both header maps and drops them.
type reader struct{ types.DefaultHttpContext }

func (*reader) OnHttpRequestHeaders(int, bool) types.Action {
	_, _ = proxywasm.GetHttpRequestHeaders()
	return types.ActionContinue
}

func (*reader) OnHttpResponseHeaders(int, bool) types.Action {
	_, _ = proxywasm.GetHttpResponseHeaders()
	return types.ActionContinue
}

func init() { proxywasm.SetVMContext(&vm{}) }

func main() {}
