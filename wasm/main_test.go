package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// Every filter test runs twice: natively (the filter's Go code against
// proxytest's emulated host) and as the compiled .wasm in wazero under the
// same emulator, so what is tested is what Envoy loads.

var (
	wasmOnce sync.Once
	wasmVM   proxytest.WasmVMContext
	wasmErr  error
)

// compiledVM builds ./wasm for wasip1 once per test binary and loads it.
// One module instance serves every test: each emulator creates a fresh
// plugin context in it.
func compiledVM(t *testing.T) types.VMContext {
	t.Helper()
	wasmOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshtrail-wasm-test")
		if err != nil {
			wasmErr = err
			return
		}
		out := filepath.Join(dir, "meshtrail.wasm")
		cmd := exec.Command(goTool(), "build", "-trimpath", "-buildmode=c-shared", "-o", out, ".")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			wasmErr = fmt.Errorf("building the .wasm: %v\n%s", err, b)
			return
		}
		bin, err := os.ReadFile(out)
		if err != nil {
			wasmErr = err
			return
		}
		_ = os.RemoveAll(dir)
		wasmVM, wasmErr = proxytest.NewWasmVMContext(bin)
	})
	if wasmErr != nil {
		t.Fatal(wasmErr)
	}
	return wasmVM
}

// eachRunner runs fn natively and against the compiled .wasm.
func eachRunner(t *testing.T, fn func(t *testing.T, vm types.VMContext)) {
	t.Helper()
	t.Run("native", func(t *testing.T) { fn(t, &vmContext{}) })
	t.Run("wasm", func(t *testing.T) { fn(t, compiledVM(t)) })
}

// emulator is a started plugin in proxytest.
type emulator struct {
	proxytest.HostEmulator
	t *testing.T
	// reqProps are the request.* attributes Envoy derives from the
	// request headers (request.path, request.url_path, ...). Envoy serves
	// them only during proxy_on_request_headers and proxy_on_log;
	// proxytest serves every property always, and cannot remove one, so
	// request() replaces them with outsideRequestHeaders in between: a
	// filter reading them there gets that value, which no test expects.
	reqProps map[string]string
}

// outsideRequestHeaders is what request() serves the request header
// attributes as between the request headers and the log.
const outsideRequestHeaders = "\x00read outside the request headers"

// requestHeaderProperty reports whether the property key (path joined by
// '|') is a request.* attribute Envoy computes from the request headers.
func requestHeaderProperty(key string) bool {
	segs := strings.Split(key, "|")
	return len(segs) >= 2 && segs[0] == "request" && requestHeaderKeys[segs[1]]
}

// setRequestProps serves the request header attributes (on) or the
// marker in their place (off).
func (e *emulator) setRequestProps(on bool) {
	e.t.Helper()
	for k, v := range e.reqProps {
		if !on {
			v = outsideRequestHeaders
		}
		if err := e.SetProperty(strings.Split(k, "|"), []byte(v)); err != nil {
			e.t.Fatal(err)
		}
	}
}

// start creates an emulator with config and properties (path joined by
// '.' -> value) and starts the plugin, which must accept the config.
func start(t *testing.T, vm types.VMContext, config string, props map[string]string) *emulator {
	t.Helper()
	e, status := startStatus(t, vm, config, props)
	if status != types.OnPluginStartStatusOK {
		t.Fatalf("plugin refused config %s: %v", config, e.GetCriticalLogs())
	}
	return e
}

func startStatus(t *testing.T, vm types.VMContext, config string, props map[string]string) (*emulator, types.OnPluginStartStatus) {
	t.Helper()
	opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte(config))
	for k, v := range props {
		opt = opt.WithProperty(strings.Split(k, "|"), []byte(v))
	}
	// proxytest allows one emulator at a time (it holds a lock until
	// reset): starting another one in the same test ends the previous.
	releaseEmulator()
	host, reset := proxytest.NewHostEmulator(opt)
	activeReset = reset
	t.Cleanup(releaseEmulator)
	e := &emulator{HostEmulator: host, t: t, reqProps: map[string]string{}}
	for k, v := range props {
		if requestHeaderProperty(k) {
			e.reqProps[k] = v
		}
	}
	return e, host.StartPlugin()
}

// activeReset releases the running emulator; tests run one at a time.
var activeReset func()

func releaseEmulator() {
	if activeReset != nil {
		activeReset()
		activeReset = nil
	}
}

// exchange is one request through the filter.
type exchange struct {
	id       uint32
	upstream [][2]string // request headers after the filter
	state    map[string]string
}

// request runs a request with headers and a 200 response through the
// filter, reading what the filter wrote right after each callback.
func (e *emulator) request(headers [][2]string, response [][2]string) exchange {
	e.t.Helper()
	// Envoy's filter state is per request; proxytest keeps properties for
	// the emulator's life, so mark every key unset before each request.
	for _, k := range stateKeys {
		if err := e.SetProperty([]string{k}, []byte(unsetMark)); err != nil {
			e.t.Fatal(err)
		}
	}
	id := e.InitializeHttpContext()
	e.setRequestProps(true)
	if a := e.CallOnRequestHeaders(id, headers, false); a != types.ActionContinue {
		e.t.Fatalf("request headers: action %v", a)
	}
	e.setRequestProps(false)
	x := exchange{id: id, state: map[string]string{}}
	for _, kv := range e.GetCurrentRequestHeaders(id) {
		x.upstream = append(x.upstream, [2]string{kv[0], strings.Clone(kv[1])})
	}
	e.readState(x.state)
	if response == nil {
		response = [][2]string{{":status", "200"}}
	}
	if a := e.CallOnResponseHeaders(id, response, false); a != types.ActionContinue {
		e.t.Fatalf("response headers: action %v", a)
	}
	e.readState(x.state)
	e.CallOnResponseBody(id, []byte("hello"), true)
	e.setRequestProps(true) // proxy_on_log: Envoy's access_log_request_headers_
	e.CompleteHttpContext(id)
	return x
}

const unsetMark = "\x00unset"

var stateKeys = []string{
	"meshtrail_trace_id", "meshtrail_span_id", "meshtrail_parent_span_id", "meshtrail_sampled",
	"meshtrail_peer_principal", "meshtrail_peer_workload", "meshtrail_peer_namespace", "meshtrail_peer_canonical_service",
	"meshtrail_h_x_request_id", "meshtrail_h_user_agent", "meshtrail_h_request_path",
	"meshtrail_h_response_code", "meshtrail_h_request_size", "meshtrail_h_connection_mtls", "meshtrail_h_upstream_port",
	"meshtrail_h_request_duration", "meshtrail_h_request_time", "meshtrail_h_connection_id",
}

func (e *emulator) readState(into map[string]string) {
	for _, k := range stateKeys {
		if v, err := e.GetProperty([]string{k}); err == nil && string(v) != unsetMark {
			into[k] = string(v)
		}
	}
}

// header returns the only value of name in h ("" if absent), failing on
// duplicates: the filter must never send a trace header twice.
func header(t *testing.T, h [][2]string, name string) string {
	t.Helper()
	var got []string
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			got = append(got, kv[1])
		}
	}
	if len(got) > 1 {
		t.Fatalf("header %s sent %d times: %q", name, len(got), got)
	}
	if len(got) == 0 {
		return ""
	}
	return got[0]
}

// goTool is the go command running this test.
func goTool() string {
	// `go test` runs the test binary with GOROOT set to its toolchain
	// (runtime.GOROOT is deprecated); elsewhere the go on PATH.
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
