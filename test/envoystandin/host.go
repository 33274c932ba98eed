// Package envoystandin is a test stand-in for Envoy: it is NOT Envoy. It
// hosts a compiled Proxy-Wasm HTTP filter (meshtrail's .wasm) on wazero,
// implementing the Proxy-Wasm ABI host functions the way Envoy's source
// does (header maps, properties and filter state under "wasm.<name>",
// metrics, plugin configuration), serves real HTTP on 127.0.0.1, runs the
// filter's callbacks around each request it forwards to an upstream, and
// streams access log entries to an ALS receiver as Envoy's
// HttpGrpcAccessLogConfig does. Envoy itself cannot be had on these
// machines; this is what end-to-end tests and `make demo` run instead.
package envoystandin

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"google.golang.org/protobuf/types/known/structpb"
)

// Proxy-Wasm ABI status codes (proxy-wasm spec, WasmResult in Envoy).
const (
	statusOK            = 0
	statusNotFound      = 1
	statusBadArgument   = 2
	statusUnimplemented = 12
)

// Header map and buffer types of the ABI.
const (
	mapRequestHeaders   = 0
	mapRequestTrailers  = 1
	mapResponseHeaders  = 2
	mapResponseTrailers = 3

	bufferVMConfiguration     = 6
	bufferPluginConfiguration = 7
)

// Metric types of the ABI.
const (
	MetricCounter   = 0
	MetricGauge     = 1
	MetricHistogram = 2
)

// filterStatePrefix is Envoy's CelStateKeyPrefix: SetProperty(["x"]) is
// stored as filter state "wasm.x".
const filterStatePrefix = "wasm."

// HostOptions configure a Host.
type HostOptions struct {
	// PluginConfig is the filter's configuration (Envoy `configuration`).
	PluginConfig []byte
	// Properties are the attributes the filter can read that do not
	// change per request, keyed by path joined with '\x00' (use Path):
	// node metadata, ...
	Properties map[string][]byte
	// Names picks the names the local node and the listener direction
	// are served under (Properties, here or a Stream's, may key them by
	// either): XDSNames, the default, as Envoy 1.33 and later.
	Names AttributeNames
	// CompilationCacheDir, when set, keeps wazero's compiled code between
	// runs (start goes from ~1 s to ~50 ms).
	CompilationCacheDir string
	// Env is the guest's environment, as Envoy's
	// vm_config.environment_variables sets it (GOGC, GOMEMLIMIT, ...).
	Env map[string]string
	// FailSetProperty makes proxy_set_property fail, to test how the
	// filter copes with a host error.
	FailSetProperty bool
}

// AttributeNames are the names a Host serves the attributes Envoy has
// renamed under: the local node and the listener direction were the
// Wasm-only top-level node and listener_direction, and are xds.node and
// xds.listener_direction, the names every Envoy filter shares. Envoy 1.33
// removed the top-level ones ("Remove previously deprecated xDS attributes
// from get_property", envoyproxy/envoy#36619).
type AttributeNames int

const (
	// XDSNames serves xds.node and xds.listener_direction only, as Envoy
	// 1.33 and later do (the default).
	XDSNames AttributeNames = iota
	// OldNames serves node and listener_direction only, as Envoys before
	// the xds.* attributes did.
	OldNames
	// BothNames serves both, as Envoys from the xds.* attributes until
	// 1.33 did.
	BothNames
)

func (n AttributeNames) String() string {
	switch n {
	case XDSNames:
		return "xds"
	case OldNames:
		return "old"
	case BothNames:
		return "both"
	}
	return fmt.Sprintf("AttributeNames(%d)", int(n))
}

// ParseAttributeNames reads "xds", "old" or "both" (String's names).
func ParseAttributeNames(s string) (AttributeNames, error) {
	switch s {
	case "xds":
		return XDSNames, nil
	case "old":
		return OldNames, nil
	case "both":
		return BothNames, nil
	}
	return 0, fmt.Errorf("attribute names %q: want xds, old or both", s)
}

// renamed are the renamed attributes, as paths: {xds.* name, old name}.
var renamed = [...][2]string{
	{"xds\x00node", "node"},
	{"xds\x00listener_direction", "listener_direction"},
}

// propertyKeys returns the keys path may be stored under: itself and, for
// a renamed attribute, the same path under its other name. It returns
// none when path is a name the host's AttributeNames does not serve.
func (h *Host) propertyKeys(path string) [2]string {
	for _, r := range renamed {
		for i, name := range r {
			rest, ok := strings.CutPrefix(path, name)
			if !ok || (rest != "" && rest[0] != 0) {
				continue
			}
			if (i == 0 && h.opts.Names == OldNames) || (i == 1 && h.opts.Names == XDSNames) {
				return [2]string{}
			}
			return [2]string{path, r[1-i] + rest}
		}
	}
	return [2]string{path}
}

// Path joins a property path as the ABI serialises it.
func Path(segments ...string) string { return strings.Join(segments, "\x00") }

// Host is one Wasm VM with one plugin (root context) started. The VM is
// single-threaded, as an Envoy worker's is: calls are serialised.
type Host struct {
	mu      sync.Mutex
	ctx     context.Context
	runtime wazero.Runtime
	mod     api.Module
	abi     guestABI
	opts    HostOptions

	nextID uint32
	rootID uint32
	// cur is the stream whose callback is running; nil in root callbacks.
	cur *Stream

	calls     map[string]*uint64 // host function name -> times called
	metrics   []*Metric          // by id; ids defined twice for a name share one
	metricIDs map[string]uint32
	logs      []string
}

type guestABI struct {
	malloc, vmStart, contextCreate, configure, requestHeaders, requestBody,
	responseHeaders, responseBody, responseTrailers, log, done, delete api.Function
}

// Metric is one stat the plugin defined.
type Metric struct {
	Name  string
	Type  int
	Value uint64 // counter/gauge value; for histograms the last value
	Count uint64 // histogram: number of values recorded
	Sum   uint64 // histogram: sum of values recorded
}

// NewHost compiles and instantiates the module, starts the VM and the
// plugin. An error means the module would not load or the plugin refused
// its configuration (Envoy would reject it); the plugin's log is included.
func NewHost(ctx context.Context, wasm []byte, opts HostOptions) (*Host, error) {
	cfg := wazero.NewRuntimeConfig()
	if opts.CompilationCacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(opts.CompilationCacheDir)
		if err != nil {
			return nil, err
		}
		cfg = cfg.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	h := &Host{ctx: ctx, runtime: r, opts: opts, nextID: 1, metricIDs: map[string]uint32{}}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		_ = r.Close(ctx)
		return nil, err
	}
	if err := h.exportABI(ctx); err != nil {
		_ = r.Close(ctx)
		return nil, err
	}
	compiled, err := r.CompileModule(ctx, wasm)
	if err != nil {
		_ = r.Close(ctx)
		return nil, fmt.Errorf("compile: %w", err)
	}
	mc := wazero.NewModuleConfig().
		WithStartFunctions("_initialize").WithSysWalltime().WithSysNanotime().WithRandSource(cryptoRand{})
	for k, v := range opts.Env {
		mc = mc.WithEnv(k, v)
	}
	mod, err := r.InstantiateModule(ctx, compiled, mc)
	if err != nil {
		_ = r.Close(ctx)
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	h.mod = mod
	f := mod.ExportedFunction
	h.abi = guestABI{
		malloc: f("proxy_on_memory_allocate"), vmStart: f("proxy_on_vm_start"),
		contextCreate: f("proxy_on_context_create"), configure: f("proxy_on_configure"),
		requestHeaders: f("proxy_on_request_headers"), requestBody: f("proxy_on_request_body"),
		responseHeaders: f("proxy_on_response_headers"), responseBody: f("proxy_on_response_body"),
		responseTrailers: f("proxy_on_response_trailers"),
		log:              f("proxy_on_log"), done: f("proxy_on_done"), delete: f("proxy_on_delete"),
	}
	if h.abi.malloc == nil || h.abi.contextCreate == nil || h.abi.requestHeaders == nil {
		_ = r.Close(ctx)
		return nil, errors.New("module does not export the Proxy-Wasm ABI")
	}
	h.rootID = h.newID()
	if res, err := h.abi.vmStart.Call(ctx, uint64(h.rootID), 0); err != nil || res[0] == 0 {
		_ = r.Close(ctx)
		return nil, fmt.Errorf("proxy_on_vm_start failed (%v): %s", err, h.logText())
	}
	if _, err := h.abi.contextCreate.Call(ctx, uint64(h.rootID), 0); err != nil {
		_ = r.Close(ctx)
		return nil, err
	}
	res, err := h.abi.configure.Call(ctx, uint64(h.rootID), uint64(len(opts.PluginConfig)))
	if err != nil || res[0] == 0 {
		_ = r.Close(ctx)
		return nil, fmt.Errorf("plugin refused its configuration (%v): %s", err, h.logText())
	}
	return h, nil
}

func (h *Host) newID() uint32 {
	id := h.nextID
	h.nextID++
	return id
}

// Close releases the VM.
func (h *Host) Close() error { return h.runtime.Close(h.ctx) }

// MemoryBytes is the guest's linear memory size: it grows when the
// plugin's heap does and never shrinks, so flat means no leak.
func (h *Host) MemoryBytes() uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mod.Memory().Size()
}

// HostCalls returns how many times the plugin called each host function.
func (h *Host) HostCalls() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range h.calls {
		if *v > 0 {
			out[k] = *v
		}
	}
	return out
}

// Logs returns what the plugin logged.
func (h *Host) Logs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.logs...)
}

func (h *Host) logText() string { return strings.Join(h.logs, "; ") }

// Metrics returns the plugin's stats sorted by name.
func (h *Host) Metrics() []Metric {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Metric
	for id, m := range h.metrics {
		if h.metricIDs[m.Name] == uint32(id) {
			out = append(out, *m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Metric returns the stat named name.
func (h *Host) Metric(name string) (Metric, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id, ok := h.metricIDs[name]
	if !ok {
		return Metric{}, false
	}
	return *h.metrics[id], true
}

// Headers is a header map in order; names are lowercase.
type Headers [][2]string

// Get returns the first value of name.
func (hs Headers) Get(name string) string {
	for _, kv := range hs {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}

// Stream is one HTTP request through the filter.
type Stream struct {
	h  *Host
	id uint32

	RequestHeaders   Headers
	ResponseHeaders  Headers
	ResponseTrailers Headers
	// Properties are per-request attributes (request.duration, ...), set
	// by the caller before the callback that needs them.
	Properties map[string][]byte
	// FilterState is what the filter stored with SetProperty, under
	// Envoy's key ("wasm.<name>").
	FilterState map[string][]byte

	// IstioPeers are the filter state objects Istio's peer_metadata
	// filter keeps (downstream_peer, upstream_peer), as the Struct
	// Envoy's access logger logs.
	IstioPeers map[string]*structpb.Struct

	// phase is the callback running, for what Envoy serves in it.
	phase phase
}

// phase is the stream callback running. Envoy's Wasm context holds the
// request header map only during proxy_on_request_headers (decodeHeaders
// sets request_headers_ back to nullptr once the filter continues) and the
// response header map only during proxy_on_response_headers; proxy_on_log
// gets both again (access_log_request_headers_, ...). In between, the
// request.* attributes computed from the headers are NotFound and the maps
// are unavailable (source/extensions/common/wasm/context.cc).
type phase uint8

const (
	phaseOther phase = iota
	phaseRequestHeaders
	phaseResponseHeaders
	phaseResponseTrailers
	phaseLog
)

// NewStream creates the filter's context for a request.
func (h *Host) NewStream() (*Stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &Stream{h: h, id: h.newID(), Properties: map[string][]byte{}, FilterState: map[string][]byte{}, IstioPeers: map[string]*structpb.Struct{}}
	h.cur = s
	defer func() { h.cur = nil }()
	if _, err := h.abi.contextCreate.Call(h.ctx, uint64(s.id), uint64(h.rootID)); err != nil {
		return nil, err
	}
	return s, nil
}

// call runs one stream callback with s as the current stream.
func (s *Stream) call(f api.Function, args ...uint64) (uint64, error) {
	return s.callIn(phaseOther, f, args...)
}

// callIn runs one stream callback in phase p.
func (s *Stream) callIn(p phase, f api.Function, args ...uint64) (uint64, error) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = s
	s.phase = p
	defer func() { h.cur, s.phase = nil, phaseOther }()
	res, err := f.Call(h.ctx, args...)
	if err != nil {
		return 0, err
	}
	if len(res) == 0 {
		return 0, nil
	}
	return res[0], nil
}

func wasmBool(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// OnRequestHeaders runs proxy_on_request_headers; the filter's changes are
// in s.RequestHeaders afterwards. It returns the filter's action (0 is
// Continue).
func (s *Stream) OnRequestHeaders(endOfStream bool) (uint64, error) {
	return s.callIn(phaseRequestHeaders, s.h.abi.requestHeaders, uint64(s.id), uint64(len(s.RequestHeaders)), wasmBool(endOfStream))
}

// OnRequestBody reports a request body chunk of size bytes.
func (s *Stream) OnRequestBody(size int, endOfStream bool) (uint64, error) {
	return s.call(s.h.abi.requestBody, uint64(s.id), uint64(size), wasmBool(endOfStream))
}

// OnResponseHeaders runs proxy_on_response_headers.
func (s *Stream) OnResponseHeaders(endOfStream bool) (uint64, error) {
	return s.callIn(phaseResponseHeaders, s.h.abi.responseHeaders, uint64(s.id), uint64(len(s.ResponseHeaders)), wasmBool(endOfStream))
}

// OnResponseBody reports a response body chunk of size bytes.
func (s *Stream) OnResponseBody(size int, endOfStream bool) (uint64, error) {
	return s.call(s.h.abi.responseBody, uint64(s.id), uint64(size), wasmBool(endOfStream))
}

// OnResponseTrailers runs proxy_on_response_trailers.
func (s *Stream) OnResponseTrailers() (uint64, error) {
	return s.callIn(phaseResponseTrailers, s.h.abi.responseTrailers, uint64(s.id), uint64(len(s.ResponseTrailers)))
}

// Done runs proxy_on_log, proxy_on_done and proxy_on_delete, as Envoy does
// when a stream ends. Envoy's configured access loggers (HttpGrpcAccessLog)
// run before proxy_on_log: write the access log entry before calling Done.
func (s *Stream) Done() error {
	if _, err := s.callIn(phaseLog, s.h.abi.log, uint64(s.id)); err != nil {
		return err
	}
	if _, err := s.call(s.h.abi.done, uint64(s.id)); err != nil {
		return err
	}
	_, err := s.call(s.h.abi.delete, uint64(s.id))
	return err
}

// --- host side of the ABI ---

func (h *Host) read(mod api.Module, ptr, size uint32) []byte {
	if size == 0 {
		return nil
	}
	b, ok := mod.Memory().Read(ptr, size)
	if !ok {
		panic("envoystandin: guest pointer out of range")
	}
	return b
}

// give copies b into guest memory (allocated by the guest) and writes its
// address and size to the guest's return pointers.
func (h *Host) give(ctx context.Context, mod api.Module, b []byte, retPtr, retSize uint32) {
	var addr uint32
	if len(b) > 0 {
		res, err := h.abi.malloc.Call(ctx, uint64(len(b)))
		if err != nil {
			panic(err)
		}
		addr = uint32(res[0])
		if !mod.Memory().Write(addr, b) {
			panic("envoystandin: guest allocation out of range")
		}
	}
	mod.Memory().WriteUint32Le(retPtr, addr)
	mod.Memory().WriteUint32Le(retSize, uint32(len(b)))
}

// mutableHeaderMap is headerMap for a change: in proxy_on_log Envoy's maps
// are the access log's, read only.
func (h *Host) mutableHeaderMap(t uint32) *Headers {
	if h.cur == nil || h.cur.phase == phaseLog {
		return nil
	}
	return h.headerMap(t)
}

// headerMap returns the map of type t if Envoy would hand it out in the
// running callback (see phase), else nil.
func (h *Host) headerMap(t uint32) *Headers {
	s := h.cur
	if s == nil {
		return nil
	}
	switch t {
	case mapRequestHeaders:
		if s.phase == phaseRequestHeaders || s.phase == phaseLog {
			return &s.RequestHeaders
		}
	case mapResponseHeaders:
		if s.phase == phaseResponseHeaders || s.phase == phaseLog {
			return &s.ResponseHeaders
		}
	case mapResponseTrailers:
		if s.phase == phaseResponseTrailers || s.phase == phaseLog {
			return &s.ResponseTrailers
		}
	}
	return nil
}

// serializeMap encodes headers as the ABI does: count, then (key size,
// value size) pairs, then each key and value NUL-terminated.
func serializeMap(hs Headers) []byte {
	size := 4
	for _, kv := range hs {
		size += 8 + len(kv[0]) + 1 + len(kv[1]) + 1
	}
	b := make([]byte, 4, size)
	binary.LittleEndian.PutUint32(b, uint32(len(hs)))
	for _, kv := range hs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[0])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[1])))
	}
	for _, kv := range hs {
		b = append(b, kv[0]...)
		b = append(b, 0)
		b = append(b, kv[1]...)
		b = append(b, 0)
	}
	return b
}

func deserializeMap(b []byte) (Headers, bool) {
	if len(b) < 4 {
		return nil, len(b) == 0
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > len(b)/8 {
		return nil, false
	}
	sizes := b[4:]
	data := 4 + 8*n
	var out Headers
	for i := 0; i < n; i++ {
		ks := int(binary.LittleEndian.Uint32(sizes[8*i:]))
		vs := int(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if data+ks+1+vs+1 > len(b) {
			return nil, false
		}
		k := string(b[data : data+ks])
		data += ks + 1
		v := string(b[data : data+vs])
		data += vs + 1
		out = append(out, [2]string{k, v})
	}
	return out, true
}

func (h *Host) property(path string) ([]byte, bool) {
	if rest, ok := strings.CutPrefix(path, "request\x00"); ok {
		if v, ok, fromHeaders := h.requestAttribute(rest); fromHeaders {
			return v, ok
		}
	}
	keys := h.propertyKeys(path)
	if s := h.cur; s != nil {
		for _, k := range keys {
			if v, ok := s.Properties[k]; ok && k != "" {
				return v, true
			}
		}
		if v, ok := s.FilterState[filterStatePrefix+path]; ok {
			return v, true
		}
	}
	for _, k := range keys {
		if v, ok := h.opts.Properties[k]; ok && k != "" {
			return v, true
		}
	}
	return nil, false
}

// requestAttribute serves the request.* attributes Envoy computes from the
// request header map (RequestWrapper in source/extensions/filters/common/
// expr/context.cc), from the stream's headers as the filter left them,
// only while Envoy has that map (see phase): otherwise NotFound, and 0 for
// headers_bytes. fromHeaders is false for the other request.* attributes
// (time, duration, size, ...), which come from the stream info.
func (h *Host) requestAttribute(rest string) (v []byte, ok, fromHeaders bool) {
	key, sub, nested := strings.Cut(rest, "\x00")
	switch key {
	case "path", "url_path", "host", "scheme", "method", "referer", "useragent", "id", "query", "headers", "headers_bytes":
	default:
		return nil, false, false
	}
	s := h.cur
	var hs Headers
	present := s != nil && (s.phase == phaseRequestHeaders || s.phase == phaseLog)
	if present {
		hs = s.RequestHeaders
	}
	header := func(name string) ([]byte, bool, bool) {
		for _, kv := range hs {
			if kv[0] == name {
				return []byte(kv[1]), !nested, true
			}
		}
		return nil, false, true
	}
	switch key {
	case "headers_bytes":
		return u64(headerBytes(hs)), !nested, true
	case "headers":
		if !present {
			return nil, false, true
		}
		if !nested {
			return serializeMap(hs), true, true
		}
		if strings.IndexByte(sub, 0) >= 0 {
			return nil, false, true
		}
		// Envoy joins a repeated header's values with ",".
		var vals []string
		for _, kv := range hs {
			if kv[0] == strings.ToLower(sub) {
				vals = append(vals, kv[1])
			}
		}
		if vals == nil {
			return nil, false, true
		}
		return []byte(strings.Join(vals, ",")), true, true
	case "path":
		return header(":path")
	case "host":
		return header(":authority")
	case "scheme":
		return header(":scheme")
	case "method":
		return header(":method")
	case "referer":
		return header("referer")
	case "useragent":
		return header("user-agent")
	case "id":
		return header("x-request-id")
	}
	p, ok, _ := header(":path")
	if !ok {
		return nil, false, true
	}
	path, query, _ := strings.Cut(string(p), "?")
	if key == "url_path" {
		return []byte(path), true, true
	}
	query, _, _ = strings.Cut(query, "#")
	return []byte(query), true, true
}

func (h *Host) exportABI(ctx context.Context) error {
	b := h.runtime.NewHostModuleBuilder("env")
	// Host functions take their arguments from the value stack directly
	// (api.GoModuleFunc): wazero's reflection-based WithFunc costs about a
	// microsecond per call, which would swamp the filter's own cost in the
	// benchmarks.
	h.calls = map[string]*uint64{}
	fn := func(name string, params []api.ValueType, f func(ctx context.Context, mod api.Module, s []uint64) uint32) {
		n := new(uint64)
		h.calls[name] = n
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			*n++ // the VM is single-threaded: calls come under h.mu
			stack[0] = uint64(f(ctx, mod, stack))
		}), params, []api.ValueType{api.ValueTypeI32}).Export(name)
	}
	fn("proxy_log", sig(i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		_, ptr, size := uint32(s[0]), uint32(s[1]), uint32(s[2])
		h.logs = append(h.logs, string(h.read(mod, ptr, size)))
		return statusOK
	})
	fn("proxy_get_property", sig(i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		pathPtr, pathSize, retPtr, retSize := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
		v, ok := h.property(string(h.read(mod, pathPtr, pathSize)))
		if !ok {
			return statusNotFound
		}
		h.give(ctx, mod, v, retPtr, retSize)
		return statusOK
	})
	fn("proxy_set_property", sig(i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		pathPtr, pathSize, valPtr, valSize := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
		if h.opts.FailSetProperty {
			return statusBadArgument
		}
		if h.cur == nil {
			return statusNotFound
		}
		path := string(h.read(mod, pathPtr, pathSize))
		h.cur.FilterState[filterStatePrefix+path] = append([]byte(nil), h.read(mod, valPtr, valSize)...)
		return statusOK
	})
	fn("proxy_get_header_map_value", sig(i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		t, keyPtr, keySize, retPtr, retSize := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4])
		m := h.headerMap(t)
		if m == nil {
			return statusBadArgument
		}
		key := strings.ToLower(string(h.read(mod, keyPtr, keySize)))
		for _, kv := range *m {
			if kv[0] == key {
				// Envoy returns only the first value of a repeated header.
				h.give(ctx, mod, []byte(kv[1]), retPtr, retSize)
				return statusOK
			}
		}
		return statusNotFound
	})
	fn("proxy_get_header_map_pairs", sig(i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		t, retPtr, retSize := uint32(s[0]), uint32(s[1]), uint32(s[2])
		m := h.headerMap(t)
		if m == nil {
			// Envoy hands out an unavailable map as an empty one.
			if t > mapResponseTrailers {
				return statusBadArgument
			}
			m = &Headers{}
		}
		h.give(ctx, mod, serializeMap(*m), retPtr, retSize)
		return statusOK
	})
	fn("proxy_set_header_map_pairs", sig(i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		t, ptr, size := uint32(s[0]), uint32(s[1]), uint32(s[2])
		m := h.mutableHeaderMap(t)
		if m == nil {
			return statusBadArgument
		}
		hs, ok := deserializeMap(h.read(mod, ptr, size))
		if !ok {
			return statusBadArgument
		}
		*m = hs
		return statusOK
	})
	fn("proxy_add_header_map_value", sig(i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		t, keyPtr, keySize, valPtr, valSize := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4])
		m := h.mutableHeaderMap(t)
		if m == nil {
			return statusBadArgument
		}
		*m = append(*m, [2]string{strings.ToLower(string(h.read(mod, keyPtr, keySize))), string(h.read(mod, valPtr, valSize))})
		return statusOK
	})
	fn("proxy_replace_header_map_value", sig(i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		t, keyPtr, keySize, valPtr, valSize := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4])
		m := h.mutableHeaderMap(t)
		if m == nil {
			return statusBadArgument
		}
		// Envoy's setCopy: every value of the header is replaced by one.
		key := strings.ToLower(string(h.read(mod, keyPtr, keySize)))
		*m = append(removeAll(*m, key), [2]string{key, string(h.read(mod, valPtr, valSize))})
		return statusOK
	})
	fn("proxy_remove_header_map_value", sig(i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		t, keyPtr, keySize := uint32(s[0]), uint32(s[1]), uint32(s[2])
		m := h.mutableHeaderMap(t)
		if m == nil {
			return statusBadArgument
		}
		*m = removeAll(*m, strings.ToLower(string(h.read(mod, keyPtr, keySize))))
		return statusOK
	})
	fn("proxy_get_buffer_bytes", sig(i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		t, start, maxSize, retPtr, retSize := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4])
		var buf []byte
		switch t {
		case bufferPluginConfiguration:
			buf = h.opts.PluginConfig
		case bufferVMConfiguration:
		default:
			return statusUnimplemented // bodies are not buffered by this host
		}
		if int(start) > len(buf) {
			return statusBadArgument
		}
		buf = buf[start:]
		if int(maxSize) < len(buf) {
			buf = buf[:maxSize]
		}
		h.give(ctx, mod, buf, retPtr, retSize)
		return statusOK
	})
	fn("proxy_set_buffer_bytes", sig(i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusUnimplemented
	})
	fn("proxy_define_metric", sig(i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		t, namePtr, nameSize, retID := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
		name := string(h.read(mod, namePtr, nameSize))
		// Envoy hands out a new id per call, for the same stat.
		id := uint32(len(h.metrics))
		if first, ok := h.metricIDs[name]; ok {
			h.metrics = append(h.metrics, h.metrics[first])
		} else {
			h.metricIDs[name] = id
			h.metrics = append(h.metrics, &Metric{Name: name, Type: int(t)})
		}
		mod.Memory().WriteUint32Le(retID, id)
		return statusOK
	})
	fn("proxy_increment_metric", sig(i32, i64), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		id, offset := uint32(s[0]), int64(s[1])
		m := h.metricByID(id)
		if m == nil {
			return statusNotFound
		}
		m.Value = uint64(int64(m.Value) + offset)
		return statusOK
	})
	fn("proxy_record_metric", sig(i32, i64), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		id, value := uint32(s[0]), s[1]
		m := h.metricByID(id)
		if m == nil {
			return statusNotFound
		}
		if m.Type == MetricHistogram {
			m.Count++
			m.Sum += value
		}
		m.Value = value
		return statusOK
	})
	fn("proxy_get_metric", sig(i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		id, retPtr := uint32(s[0]), uint32(s[1])
		m := h.metricByID(id)
		if m == nil {
			return statusNotFound
		}
		mod.Memory().WriteUint64Le(retPtr, m.Value)
		return statusOK
	})
	fn("proxy_set_tick_period_milliseconds", sig(i32), okFunc)
	fn("proxy_set_effective_context", sig(i32), okFunc)
	fn("proxy_continue_stream", sig(i32), okFunc)
	fn("proxy_close_stream", sig(i32), okFunc)
	fn("proxy_done", sig(), okFunc)
	fn("proxy_send_local_response", sig(i32, i32, i32, i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusUnimplemented
	})
	fn("proxy_get_shared_data", sig(i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusNotFound
	})
	fn("proxy_set_shared_data", sig(i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusUnimplemented
	})
	fn("proxy_register_shared_queue", sig(i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusUnimplemented
	})
	fn("proxy_resolve_shared_queue", sig(i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusNotFound
	})
	fn("proxy_dequeue_shared_queue", sig(i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusNotFound
	})
	fn("proxy_enqueue_shared_queue", sig(i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusNotFound
	})
	fn("proxy_http_call", sig(i32, i32, i32, i32, i32, i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusUnimplemented
	})
	fn("proxy_call_foreign_function", sig(i32, i32, i32, i32, i32, i32), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		return statusNotFound
	})
	_, err := b.Instantiate(ctx)
	return err
}

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func sig(params ...api.ValueType) []api.ValueType { return params }

func okFunc(context.Context, api.Module, []uint64) uint32 { return statusOK }

func (h *Host) metricByID(id uint32) *Metric {
	if int(id) >= len(h.metrics) {
		return nil
	}
	return h.metrics[id]
}

// cryptoRand is the guest's random_get: real entropy, as Envoy gives.
type cryptoRand struct{}

func (cryptoRand) Read(b []byte) (int, error) { return crand.Read(b) }

func removeAll(hs Headers, key string) Headers {
	out := hs[:0]
	for _, kv := range hs {
		if kv[0] != key {
			out = append(out, kv)
		}
	}
	return out
}
