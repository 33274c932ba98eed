package envoystandin

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// Profiling aids for the filter's per-request cost, skipped unless
// MESHTRAIL_WASM_PROFILE=1 (they take a while and print rather than
// assert):
//
//	MESHTRAIL_WASM_PROFILE=1 CGO_ENABLED=0 go test -run 'TestGuestCallProfile|TestPhaseTimes' -v ./test/envoystandin
//
// TestGuestCallProfile counts the guest's function calls per request by
// function (a wazero function listener; MESHTRAIL_PROFILE_NOOP=1 profiles
// the no-op plugin), with the callers of runtime.memequal. TestPhaseTimes
// times each callback (best of 6 x 10 000 requests) for the no-op and
// several filter configurations; MESHTRAIL_PROFILE_HOST=1 also sums the
// time spent inside host functions (listener overhead included).
func profiling(t *testing.T) {
	if os.Getenv("MESHTRAIL_WASM_PROFILE") == "" {
		t.Skip("set MESHTRAIL_WASM_PROFILE=1")
	}
}

func TestGuestCallProfile(t *testing.T) {
	profiling(t)
	counts := map[string]*uint64{}
	var on bool
	fac := experimental.FunctionListenerFactoryFunc(func(def api.FunctionDefinition) experimental.FunctionListener {
		name := def.DebugName()
		c := new(uint64)
		counts[name] = c
		return experimental.FunctionListenerFunc(func(_ context.Context, _ api.Module, _ api.FunctionDefinition, _ []uint64, si experimental.StackIterator) {
			if on {
				*c++
				if name == ".runtime.memequal" {
					si.Next()
					si.Next()
					k := "caller:" + si.Function().Definition().DebugName()
					if counts[k] == nil {
						counts[k] = new(uint64)
					}
					*counts[k]++
				}
			}
		})
	})
	ctx := experimental.WithFunctionListenerFactory(context.Background(), fac)
	mod, cfg := filterModule(t), filterConfig
	if os.Getenv("MESHTRAIL_PROFILE_NOOP") != "" {
		mod, cfg = buildNoop(t), ""
	}
	h, err := NewHost(ctx, mod, HostOptions{PluginConfig: []byte(cfg), Properties: reviews.Properties()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < warmUp; i++ {
		oneRequest(t, h)
	}
	on = true
	const n = 1000
	for i := 0; i < n; i++ {
		oneRequest(t, h)
	}
	on = false
	type kv struct {
		k string
		v uint64
	}
	var all []kv
	var tot uint64
	for k, v := range counts {
		if *v > 0 {
			all = append(all, kv{k, *v})
			tot += *v
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	fmt.Printf("total calls/request %.1f\n", float64(tot)/n)
	for i, e := range all {
		if i > 80 {
			break
		}
		fmt.Printf("%8.2f %s\n", float64(e.v)/n, e.k)
	}
}

func TestPhaseTimes(t *testing.T) {
	profiling(t)
	for _, c := range []struct {
		name   string
		mod    []byte
		config string
	}{{"noop", buildNoop(t), ""}, {"meshtrail", filterModule(t), filterConfig},
		{"noop-readheaders", buildNoop(t), "read-headers"},
		{"notrace", filterModule(t), `{"tracing":{"disabled":true},"access_log":{"headers":["x-request-id"]}}`},
		{"nolog", filterModule(t), `{"tracing":{"sampling_percentage":1},"access_log":{"disabled":true}}`},
		{"nob3", filterModule(t), `{"tracing":{"sampling_percentage":1,"formats":["w3c"]},"access_log":{"headers":["x-request-id"]}}`},
		{"nothing", filterModule(t), `{"tracing":{"disabled":true},"access_log":{"disabled":true},"metrics":{"disabled":true}}`},
		{"meshtrail", filterModule(t), filterConfig},
		{"noop", buildNoop(t), ""},
	} {
		var hostNs int64
		var inHost bool
		var t0 time.Time
		fac := experimental.FunctionListenerFactoryFunc(func(def api.FunctionDefinition) experimental.FunctionListener {
			if def.ModuleName() != "env" || def.Name() == "proxy_on_memory_allocate" {
				return nil
			}
			return hostTimer{&hostNs, &inHost, &t0}
		})
		ctx := context.Background()
		if os.Getenv("MESHTRAIL_PROFILE_HOST") != "" {
			ctx = experimental.WithFunctionListenerFactory(ctx, fac)
		}
		h, err := NewHost(ctx, c.mod, HostOptions{PluginConfig: []byte(c.config), Properties: reviews.Properties()})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < warmUp; i++ {
			oneRequest(t, h)
		}
		var best [4]time.Duration
		const n = 10000
		for rep := 0; rep < 6; rep++ {
			var ph [4]time.Duration
			hostNs = 0
			for i := 0; i < n; i++ {
				a := time.Now()
				s, _ := h.NewStream()
				s.RequestHeaders = append(Headers(nil), benchRequest...)
				s.Properties[Path("xds", "listener_direction")] = u64(1)
				b := time.Now()
				s.OnRequestHeaders(true)
				s.ResponseHeaders = append(Headers(nil), benchResponse...)
				cc := time.Now()
				s.OnResponseHeaders(false)
				s.Properties[Path("request", "duration")] = u64(3_500_000)
				s.Properties[Path("response", "code")] = u64(200)
				d := time.Now()
				s.Done()
				e := time.Now()
				ph[0] += b.Sub(a)
				ph[1] += cc.Sub(b)
				ph[2] += d.Sub(cc)
				ph[3] += e.Sub(d)
			}
			for k := range ph {
				if rep == 0 || ph[k] < best[k] {
					best[k] = ph[k]
				}
			}
		}
		ph := best
		fmt.Printf("%-10s create %5d reqhdr %5d resphdr %5d done %5d total %6d host %5d ns\n", c.name, ph[0]/n, ph[1]/n, ph[2]/n, ph[3]/n, (ph[0]+ph[1]+ph[2]+ph[3])/n, hostNs/n)
		h.Close()
	}
}

type hostTimer struct {
	ns *int64
	in *bool
	t0 *time.Time
}

func (h hostTimer) Before(context.Context, api.Module, api.FunctionDefinition, []uint64, experimental.StackIterator) {
	*h.t0 = time.Now()
}
func (h hostTimer) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {
	*h.ns += int64(time.Since(*h.t0))
}
func (h hostTimer) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}
