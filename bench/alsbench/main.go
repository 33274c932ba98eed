// Command alsbench measures ALS receivers end to end (gRPC decode ->
// record -> output) as whole processes: entries per CPU-second of the
// receiver process and its peak RSS, for meshtrail and for the
// OpenTelemetry Collector's envoyals receiver under the same load in the
// same run (A B A B ...), and reports medians and the per-pair ratio. With
// -soak it instead runs meshtrail at a fixed rate and samples its RSS.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrail/meshtrail/bench/internal/benchrun"
)

type target struct {
	name    string
	start   func(dir, grpcAddr, metricsAddr string) *exec.Cmd
	counter func(metrics string) float64 // records fully processed
	report  func(metrics string) string  // optional per-run detail
}

func main() {
	meshtrail := flag.String("meshtrail", "bin/meshtrail", "meshtrail binary")
	otelcol := flag.String("otelcol", defaultTool("otelcol"), "OpenTelemetry Collector with the envoyals receiver")
	loadgen := flag.String("loadgen", "bin/alsload", "load generator binary")
	runs := flag.Int("runs", 5, "runs of each receiver")
	entries := flag.Int("entries", 400000, "entries per run")
	streams := flag.Int("streams", 100, "concurrent streams per run")
	soak := flag.Duration("soak", 0, "instead of comparing, run meshtrail this long at -rate and sample RSS")
	rate := flag.Int("rate", 10000, "entries/s during -soak")
	mtConfig := flag.String("config", "", "meshtrail YAML config for its runs (e.g. a sinks: section); --listen, --metrics-listen and --out still come from the bench")
	rotate := flag.Bool("rotate", false, "keep meshtrail's default NDJSON rotation (100 MB files, 5 kept); by default a run writes one file, as the peer's file exporter does, so both do the same work")
	waitSinks := flag.Bool("wait-sinks", false, "measure meshtrail alone (no peer does the same fan-out) and stop the clock only when every configured sink's meshtrail_sink_records_sent_total has reached the entry count, not only the NDJSON writer")
	peerConfig := flag.String("peer-config", "", "with -wait-sinks: an OpenTelemetry Collector config (envoyals receiver -> exporters into the same backends as -config's sinks) run alternately as the peer; RECEIVER_ENDPOINT, METRICS_HOST and METRICS_PORT in it are replaced. The peer's clock stops when every exporter's otelcol_exporter_sent_log_records has reached the entry count")
	batchBytes := flag.Int("batch-bytes", 0, "bytes per ALS message the load generator sends (0: its default, 16 KiB like Envoy's buffer; 100000 makes ~108-entry messages)")
	flag.Parse()
	loadArgs = nil
	if *batchBytes > 0 {
		loadArgs = []string{"-batch-bytes", strconv.Itoa(*batchBytes)}
	}

	mt := target{
		name: "meshtrail",
		start: func(dir, g, m string) *exec.Cmd {
			args := []string{"als", "--listen", g, "--metrics-listen", m, "--out", filepath.Join(dir, "records.ndjson"), "--log-level", "warn"}
			if *mtConfig != "" {
				args = append(args, "--config", *mtConfig)
			} else if !*rotate {
				// The peer writes one file and never rotates; rotating
				// (closing and deleting 100 MB files) is work it does not do.
				p := filepath.Join(dir, "meshtrail.yaml")
				must(os.WriteFile(p, []byte("out_rotation: {max_size_mb: 65536, max_backups: 1}\n"), 0o644))
				args = append(args, "--config", p)
			}
			return exec.Command(*meshtrail, args...)
		},
		counter: func(text string) float64 { return metric(text, "meshtrail_ndjson_records_written_total") },
	}
	if *waitSinks {
		ndjson := mt.counter
		mt.name = "meshtrail+sinks"
		mt.counter = func(text string) float64 { return min(ndjson(text), minSinkSent(text)) }
		mt.report = sinkReport
	}
	oc := target{
		name: "otelcol-envoyals",
		start: func(dir, g, m string) *exec.Cmd {
			host, port, _ := net.SplitHostPort(m)
			cfg := fmt.Sprintf(`receivers:
  envoyals:
    endpoint: %s
processors:
  batch: {}
exporters:
  file:
    path: %s
service:
  telemetry:
    logs: {level: warn}
    metrics:
      level: normal
      readers:
        - pull: {exporter: {prometheus: {host: %s, port: %s}}}
  pipelines:
    logs: {receivers: [envoyals], processors: [batch], exporters: [file]}
`, g, filepath.Join(dir, "logs.jsonl"), host, port)
			p := filepath.Join(dir, "otelcol.yaml")
			must(os.WriteFile(p, []byte(cfg), 0o644))
			return exec.Command(*otelcol, "--config", p)
		},
		counter: func(text string) float64 { return metric(text, "otelcol_exporter_sent_log_records") },
	}

	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d CPUs (%s), %s\n", host, benchrun.CPUs(), benchrun.CPUModel(), time.Now().UTC().Format(time.RFC3339))
	if *soak > 0 {
		runSoak(mt, *loadgen, *soak, *rate, *streams)
		return
	}
	if *waitSinks && *peerConfig != "" {
		tmpl, err := os.ReadFile(*peerConfig)
		must(err)
		oc.name = "otelcol-exporters"
		oc.start = func(dir, g, m string) *exec.Cmd {
			host, port, _ := net.SplitHostPort(m)
			cfg := strings.NewReplacer("RECEIVER_ENDPOINT", g, "METRICS_HOST", host, "METRICS_PORT", port).Replace(string(tmpl))
			p := filepath.Join(dir, "otelcol.yaml")
			must(os.WriteFile(p, []byte(cfg), 0o644))
			return exec.Command(*otelcol, "--config", p)
		}
		oc.counter = func(text string) float64 { return minPerExporter(text, "otelcol_exporter_sent_log_records") }
		oc.report = peerReport
		runPair(mt, oc, *loadgen, *runs, *entries, *streams)
		return
	}
	if *waitSinks {
		runAlone(mt, *loadgen, *runs, *entries, *streams)
		return
	}
	fmt.Printf("load: %d entries per run over %d streams, ~16 KiB messages, %d runs each, alternating\n\n", *entries, *streams, *runs)
	var rateA, rateB, rssA, rssB, ratios []float64
	for i := 0; i < *runs; i++ {
		a := measure(mt, *loadgen, *entries, *streams)
		b := measure(oc, *loadgen, *entries, *streams)
		fmt.Printf("run %d: %-16s %9.0f entries/CPU-s (user %5.2f s, sys %5.2f s)  peak RSS %5.0f MiB | %-16s %9.0f entries/CPU-s (user %5.2f s, sys %5.2f s)  peak RSS %5.0f MiB | ratio %.2f\n",
			i+1, mt.name, a.perCPU, a.user, a.sys, a.rssMiB, oc.name, b.perCPU, b.user, b.sys, b.rssMiB, a.perCPU/b.perCPU)
		rateA, rateB = append(rateA, a.perCPU), append(rateB, b.perCPU)
		rssA, rssB = append(rssA, a.rssMiB), append(rssB, b.rssMiB)
		ratios = append(ratios, a.perCPU/b.perCPU)
	}
	fmt.Printf("\nmedian: %s %.0f entries/CPU-s (peak RSS %.0f MiB), %s %.0f entries/CPU-s (peak RSS %.0f MiB), ratio %.2f (min %.2f, max %.2f)\n",
		mt.name, benchrun.Median(rateA), benchrun.Median(rssA), oc.name, benchrun.Median(rateB), benchrun.Median(rssB), benchrun.Median(ratios), minOf(ratios), maxOf(ratios))
}

type result struct {
	perCPU, rssMiB, cpu, wall float64
	user, sys                 float64 // seconds of cpu
	detail                    string
}

// loadArgs are extra arguments for the load generator (-batch-bytes).
var loadArgs []string

// runPair alternates meshtrail fanning out to its sinks and the peer
// exporting into the same backends, on the same load; each run's clock
// stops when every sink (every exporter) has sent every entry.
func runPair(a, b target, loadgen string, runs, entries, streams int) {
	fmt.Printf("load: %d entries per run over %d streams %v, %d runs each, alternating; the clock stops when every sink/exporter has sent every entry\n\n", entries, streams, loadArgs, runs)
	var rateA, rateB, wallA, wallB, ratios []float64
	for i := 0; i < runs; i++ {
		x := measure(a, loadgen, entries, streams)
		y := measure(b, loadgen, entries, streams)
		fmt.Printf("run %d: %-16s %9.0f entries/CPU-s  CPU %6.2f s  wall %6.2f s  RSS %4.0f MiB  %s\n", i+1, a.name, x.perCPU, x.cpu, x.wall, x.rssMiB, x.detail)
		fmt.Printf("run %d: %-16s %9.0f entries/CPU-s  CPU %6.2f s  wall %6.2f s  RSS %4.0f MiB  %s\n", i+1, b.name, y.perCPU, y.cpu, y.wall, y.rssMiB, y.detail)
		fmt.Printf("run %d: ratio %.2f\n", i+1, x.perCPU/y.perCPU)
		rateA, rateB = append(rateA, x.perCPU), append(rateB, y.perCPU)
		wallA, wallB = append(wallA, x.wall), append(wallB, y.wall)
		ratios = append(ratios, x.perCPU/y.perCPU)
	}
	fmt.Printf("\nmedian: %s %.0f entries/CPU-s (wall %.1f s), %s %.0f entries/CPU-s (wall %.1f s), ratio %.2f (min %.2f, max %.2f)\n",
		a.name, benchrun.Median(rateA), benchrun.Median(wallA), b.name, benchrun.Median(rateB), benchrun.Median(wallB), benchrun.Median(ratios), minOf(ratios), maxOf(ratios))
}

// minPerExporter is the smallest value of a counter across its exporter
// labels (0 when there is none).
func minPerExporter(text, name string) float64 {
	per := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.Index(line, `exporter="`)
		if i < 0 {
			continue
		}
		ex := line[i+len(`exporter="`):]
		ex = ex[:strings.IndexByte(ex, '"')]
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			per[ex] += v
		}
	}
	m := -1.0
	for _, v := range per {
		if m < 0 || v < m {
			m = v
		}
	}
	return max(m, 0)
}

// peerReport is what the peer's exporters sent and failed to send.
func peerReport(text string) string {
	return fmt.Sprintf("[sent min %.0f, send_failed %.0f, enqueue_failed %.0f]", minPerExporter(text, "otelcol_exporter_sent_log_records"),
		metric(text, "otelcol_exporter_send_failed_log_records"), metric(text, "otelcol_exporter_enqueue_failed_log_records"))
}

// runAlone measures t alone (-wait-sinks: meshtrail fanning out to real
// backends, which no peer in this bench does).
func runAlone(t target, loadgen string, runs, entries, streams int) {
	fmt.Printf("load: %d entries per run over %d streams, ~16 KiB messages, %d runs of %s; the clock stops when every sink has sent every entry\n\n", entries, streams, runs, t.name)
	var rate, rss, cpu, wall []float64
	for i := 0; i < runs; i++ {
		r := measure(t, loadgen, entries, streams)
		fmt.Printf("run %d: %-16s %9.0f entries/CPU-s  CPU %6.2f s  wall %6.2f s  peak RSS %5.0f MiB  %s\n", i+1, t.name, r.perCPU, r.cpu, r.wall, r.rssMiB, r.detail)
		rate, rss, cpu, wall = append(rate, r.perCPU), append(rss, r.rssMiB), append(cpu, r.cpu), append(wall, r.wall)
	}
	fmt.Printf("\nmedian: %s %.0f entries/CPU-s (min %.0f, max %.0f), CPU %.2f s, wall %.2f s, peak RSS %.0f MiB\n",
		t.name, benchrun.Median(rate), minOf(rate), maxOf(rate), benchrun.Median(cpu), benchrun.Median(wall), benchrun.Median(rss))
}

// sinkSent returns meshtrail_sink_records_sent_total per sink label.
func sinkSent(text string) map[string]float64 {
	return perSink(text, "meshtrail_sink_records_sent_total")
}

func perSink(text, name string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		i := strings.Index(line, `sink="`)
		if i < 0 {
			continue
		}
		rest := line[i+len(`sink="`):]
		sink := rest[:strings.IndexByte(rest, '"')]
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			out[sink] += v
		}
	}
	return out
}

// minSinkSent is the least any configured sink has sent (0 if none is
// configured, so a -wait-sinks run without sinks never ends quietly).
func minSinkSent(text string) float64 {
	sent := sinkSent(text)
	if len(sent) == 0 {
		return 0
	}
	m := -1.0
	for _, v := range sent {
		if m < 0 || v < m {
			m = v
		}
	}
	return m
}

func sinkReport(text string) string {
	sent, retried := sinkSent(text), perSink(text, "meshtrail_sink_records_retried_total")
	dropped := perSink(text, "meshtrail_sink_dropped_total")
	names := make([]string, 0, len(sent))
	for n := range sent {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "[%s sent %.0f retried %.0f dropped %.0f] ", n, sent[n], retried[n], dropped[n])
	}
	return strings.TrimSpace(b.String())
}

func measure(t target, loadgen string, entries, streams int) result {
	dir, err := os.MkdirTemp("", "alsbench-")
	must(err)
	defer os.RemoveAll(dir)
	g, m := benchrun.FreeAddr(), benchrun.FreeAddr()
	cmd := t.start(dir, g, m)
	logf, _ := os.Create(filepath.Join(dir, "server.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	must(cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	benchrun.WaitFor(func() bool { return get("http://"+m+"/metrics") != "" }, 60*time.Second, t.name+" metrics endpoint")
	benchrun.WaitFor(func() bool {
		c, err := net.Dial("tcp", g)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 30*time.Second, t.name+" gRPC port")
	user0, sys0 := userSys(cmd.Process.Pid)
	t0 := time.Now()
	lg := exec.Command(loadgen, append([]string{"-addr", g, "-entries", strconv.Itoa(entries), "-streams", strconv.Itoa(streams)}, loadArgs...)...)
	lg.Stderr = os.Stderr
	out, err := lg.Output()
	if err != nil {
		dump(filepath.Join(dir, "server.log"))
		fail(fmt.Errorf("loadgen against %s: %v: %s", t.name, err, out))
	}
	sent := sentEntries(string(out))
	benchrun.WaitFor(func() bool { return t.counter(get("http://"+m+"/metrics")) >= sent }, 900*time.Second,
		fmt.Sprintf("%s to process all %.0f entries", t.name, sent))
	user, sys := userSys(cmd.Process.Pid)
	user, sys = user-user0, sys-sys0
	cpu := user + sys
	r := result{perCPU: sent / cpu, rssMiB: float64(hwmKiB(cmd.Process.Pid)) / 1024, cpu: cpu, user: user, sys: sys, wall: time.Since(t0).Seconds()}
	if t.report != nil {
		r.detail = t.report(get("http://" + m + "/metrics"))
	}
	return r
}

func runSoak(t target, loadgen string, d time.Duration, rate, streams int) {
	dir, err := os.MkdirTemp("", "alsbench-soak-")
	must(err)
	defer os.RemoveAll(dir)
	g, m := benchrun.FreeAddr(), benchrun.FreeAddr()
	cmd := t.start(dir, g, m)
	must(cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	benchrun.WaitFor(func() bool { return get("http://"+m+"/metrics") != "" }, 30*time.Second, "metrics endpoint")
	lg := exec.Command(loadgen, "-addr", g, "-duration", d.String(), "-rate", strconv.Itoa(rate), "-streams", strconv.Itoa(streams))
	lg.Stdout, lg.Stderr = os.Stdout, os.Stderr
	must(lg.Start())
	fmt.Printf("soak: %s at %d entries/s over %d streams; RSS sampled every 30s (the NDJSON file is removed at the end)\n", d, rate, streams)
	begin := time.Now()
	var samples []float64
	for time.Since(begin) < d {
		time.Sleep(30 * time.Second)
		rss := float64(rssKiB(cmd.Process.Pid)) / 1024
		samples = append(samples, rss)
		text := get("http://" + m + "/metrics")
		fmt.Printf("  t=%4.0fs RSS %6.1f MiB  records %.0f  queued in memory %.0f, on disk %.0f\n", time.Since(begin).Seconds(), rss, t.counter(text),
			metricWhere(text, "meshtrail_sink_queue_records", "memory"), metricWhere(text, "meshtrail_sink_queue_records", "disk"))
	}
	_ = lg.Wait()
	half := samples[len(samples)/2:]
	fmt.Printf("soak RSS: first %.1f MiB, median of second half %.1f MiB, max %.1f MiB, last %.1f MiB\n",
		samples[0], benchrun.Median(half), maxOf(samples), samples[len(samples)-1])
}

func sentEntries(out string) float64 {
	var n float64
	fmt.Sscanf(strings.TrimPrefix(out, "sent "), "%f", &n)
	if n == 0 {
		fail(fmt.Errorf("cannot read the entry count from %q", out))
	}
	return n
}

// metric sums every series of a counter (with or without _total suffix).
func metric(text, name string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") || !(strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"_total")) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// metricWhere sums a gauge's series with where="..." (the sinks' queues).
func metricWhere(text, name, where string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, `where="`+where+`"`) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

func get(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// userSys is utime and stime of pid, in seconds: the system part is mostly
// the kernel taking the NDJSON writes and the sockets' reads.
func userSys(pid int) (user, sys float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return ut / 100, st / 100
}

func statusKiB(pid int, key string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), key+":") {
			v, _ := strconv.Atoi(strings.Fields(sc.Text())[1])
			return v
		}
	}
	return 0
}

func hwmKiB(pid int) int { return statusKiB(pid, "VmHWM") }
func rssKiB(pid int) int { return statusKiB(pid, "VmRSS") }

func minOf(v []float64) float64 { s := append([]float64(nil), v...); sort.Float64s(s); return s[0] }
func maxOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)-1]
}

func dump(path string) {
	b, _ := os.ReadFile(path)
	os.Stderr.Write(b)
}

func must(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "alsbench:", err)
	os.Exit(1)
}

// defaultTool is where `make tools` installs a tool: $MESHTRAIL_TOOLS_DIR,
// or meshtrail/tools in the user's cache directory.
func defaultTool(name string) string {
	dir := os.Getenv("MESHTRAIL_TOOLS_DIR")
	if dir == "" {
		cache, _ := os.UserCacheDir()
		dir = filepath.Join(cache, "meshtrail", "tools")
	}
	return filepath.Join(dir, "bin", name)
}
