// Command wasmnoop is the baseline of the filter benchmarks: a Proxy-Wasm
// plugin built on the same SDK that does nothing on any callback, so the
// benchmark can subtract the cost of the SDK and the host ABI from the
// cost of meshtrail's filter.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type plugin struct{ types.DefaultPluginContext }

func (*plugin) NewHttpContext(uint32) types.HttpContext { return &types.DefaultHttpContext{} }

func init() { proxywasm.SetVMContext(&vm{}) }

func main() {}
