// Command tailbench measures meshtrail tail reading a file in page cache
// to NDJSON out, in MB and lines per CPU-second of the tailing process,
// against the OpenTelemetry Collector's filelog receiver writing the same
// file to its file exporter, in the same run, and `cat FILE > /dev/null`
// (the physical limit). Runs alternate meshtrail / peer.
//
//	go build -o bin/tailbench ./bench/tailbench && ./bin/tailbench -kind raw -mb 358 -runs 3
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
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

func main() {
	kind := flag.String("kind", "raw", "line shape: raw (a text line with a traceparent, parser raw), json (parser json) or nginx (nginx combined, parser nginx: a regular expression)")
	mb := flag.Int("mb", 358, "file size in MB")
	runs := flag.Int("runs", 3, "runs of each")
	meshtrail := flag.String("meshtrail", "bin/meshtrail", "meshtrail binary")
	otelcol := flag.String("otelcol", defaultTool("otelcol"), "OpenTelemetry Collector with the filelog receiver and file exporter (empty: no peer)")
	forward := flag.Bool("forward", false, "measure the forward path instead: meshtrail tail --forward to meshtrail als --otlp-listen (writing NDJSON), CPU of each")
	soak := flag.Duration("soak", 0, "instead: append at -rate to a file for this long while meshtrail tail reads it (--out), printing RSS every 10 s")
	rateMB := flag.Float64("rate", 10, "MB per second appended during -soak")
	flag.Parse()
	if *soak > 0 {
		runSoak(*meshtrail, *soak, *rateMB)
		return
	}

	dir, err := os.MkdirTemp("", "tailbench")
	must(err)
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "in", "app.log")
	os.MkdirAll(filepath.Dir(in), 0o755)
	lines := generate(in, *kind, int64(*mb)<<20)
	size := fileSize(in)
	fmt.Printf("machine: %d CPU %s\nfile: %s, %d lines, %.1f MB (%s)\n", benchrun.CPUs(), benchrun.CPUModel(), *kind, lines, float64(size)/1e6, in)

	if *forward {
		var tailS, rcvS []float64
		for r := 0; r < *runs; r++ {
			t, rc := runForward(*meshtrail, *kind, in, dir, lines)
			tailS, rcvS = append(tailS, t), append(rcvS, rc)
			fmt.Printf("run %d: tail --forward %.2f CPU-s (%.0f lines/CPU-s)  als OTLP listener -> NDJSON %.2f CPU-s (%.0f lines/CPU-s)\n",
				r+1, t, float64(lines)/t, rc, float64(lines)/rc)
		}
		fmt.Printf("median: tail --forward %.0f lines/CPU-s, receiver %.0f lines/CPU-s\n", float64(lines)/benchrun.Median(tailS), float64(lines)/benchrun.Median(rcvS))
		return
	}
	var catS, mtS, ocS, mtRSS, ocRSS []float64
	for r := 0; r < *runs; r++ {
		c := catCPU(in)
		catS = append(catS, c)
		cpu, rss := runMeshtrail(*meshtrail, *kind, in, dir, lines)
		mtS, mtRSS = append(mtS, cpu), append(mtRSS, rss)
		line := fmt.Sprintf("run %d: cat %.2fs (%.0f MB/CPU-s)  meshtrail %.2f CPU-s %.0f MB/CPU-s %.0f lines/CPU-s RSS %.0f MiB",
			r+1, c, float64(size)/1e6/c, cpu, float64(size)/1e6/cpu, float64(lines)/cpu, rss)
		if *otelcol != "" {
			ocpu, orss := runOtelcol(*otelcol, *kind, in, dir, lines)
			ocS, ocRSS = append(ocS, ocpu), append(ocRSS, orss)
			line += fmt.Sprintf("  otelcol %.2f CPU-s %.0f MB/CPU-s %.0f lines/CPU-s RSS %.0f MiB  ratio %.2f",
				ocpu, float64(size)/1e6/ocpu, float64(lines)/ocpu, orss, ocpu/cpu)
		}
		fmt.Println(line)
	}
	fmt.Printf("median: cat %.0f MB/CPU-s; meshtrail %.0f MB/CPU-s, %.0f lines/CPU-s, peak RSS %.0f MiB",
		float64(size)/1e6/benchrun.Median(catS), float64(size)/1e6/benchrun.Median(mtS), float64(lines)/benchrun.Median(mtS), benchrun.Median(mtRSS))
	if len(ocS) > 0 {
		fmt.Printf("; otelcol filelog %.0f MB/CPU-s, %.0f lines/CPU-s, peak RSS %.0f MiB; ratio %.2f",
			float64(size)/1e6/benchrun.Median(ocS), float64(lines)/benchrun.Median(ocS), benchrun.Median(ocRSS), benchrun.Median(ocS)/benchrun.Median(mtS))
	}
	fmt.Println()
}

// generate writes lines of the given shape until size bytes.
func generate(path, kind string, size int64) int {
	f, err := os.Create(path)
	must(err)
	w := bufio.NewWriterSize(f, 1<<20)
	var n int
	var written int64
	t := time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)
	for written < size {
		ts := t.Add(time.Duration(n) * time.Millisecond).Format(time.RFC3339Nano)
		var l string
		switch kind {
		case "json":
			l = fmt.Sprintf(`{"time":"%s","level":"info","msg":"request handled","path":"/api/cart/%d","user":%d,"dur_ms":%d,"trace_id":"%016x%016x","span_id":"%016x"}`+"\n",
				ts, n%1000, n%97, n%250, n+1, n*7+1, n*13+1)
		case "nginx":
			l = fmt.Sprintf(`10.0.%d.%d - - [02/Dec/2026:21:%02d:%02d +0000] "GET /api/cart/%d?traceparent=00-%016x%016x-%016x-01 HTTP/1.1" %d %d "-" "Mozilla/5.0 (X11; Linux x86_64)"`+"\n",
				n%256, n%199, n/60000%60, n/1000%60, n%1000, n+1, n*7+1, n*13+1, 200+n%4*100, n%5000)
		default:
			l = fmt.Sprintf("%s INFO request handled path=/api/cart/%d user=%d dur=%dms traceparent=00-%016x%016x-%016x-01\n",
				ts, n%1000, n%97, n%250, n+1, n*7+1, n*13+1)
		}
		w.WriteString(l)
		written += int64(len(l))
		n++
	}
	must(w.Flush())
	must(f.Close())
	// Into page cache.
	catCPU(path)
	return n
}

func catCPU(path string) float64 {
	cmd := exec.Command("sh", "-c", "cat "+path+" > /dev/null")
	must(cmd.Run())
	return cmd.ProcessState.UserTime().Seconds() + cmd.ProcessState.SystemTime().Seconds()
}

func runMeshtrail(bin, kind, in, dir string, lines int) (cpu, rssMiB float64) {
	run := filepath.Join(dir, "mt")
	os.RemoveAll(run)
	os.MkdirAll(run, 0o755)
	addr := benchrun.FreeAddr()
	cmd := exec.Command(bin, "tail", "--paths="+in, "--parser="+kind, "--state-dir="+filepath.Join(run, "state"),
		"--out="+filepath.Join(run, "out.ndjson"), "--listen="+addr, "--log-level=warn")
	cmd.Stderr = os.Stderr
	must(cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	benchrun.WaitFor(func() bool {
		return metric(get("http://"+addr+"/metrics"), "meshtrail_tail_records_delivered_total") >= float64(lines)
	},
		15*time.Minute, "meshtrail to deliver every line")
	u, s := userSys(cmd.Process.Pid)
	if os.Getenv("TAILBENCH_VERBOSE") != "" {
		fmt.Printf("  meshtrail user %.2f sys %.2f\n", u, s)
	}
	return u + s, float64(hwmKiB(cmd.Process.Pid)) / 1024
}

// runSoak appends raw lines at rateMB per second (in 100 ms steps) for d
// and prints the agent's RSS, CPU and lag every 10 s.
func runSoak(bin string, d time.Duration, rateMB float64) {
	dir, err := os.MkdirTemp("", "tailsoak")
	must(err)
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "app.log")
	f, err := os.Create(in)
	must(err)
	defer f.Close()
	addr := benchrun.FreeAddr()
	cmd := exec.Command(bin, "tail", "--paths="+in, "--state-dir="+filepath.Join(dir, "state"),
		"--out="+filepath.Join(dir, "out.ndjson"), "--listen="+addr, "--log-level=warn")
	cmd.Stderr = os.Stderr
	must(cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	fmt.Printf("soak: %.0f MB/s of raw lines for %v (machine: %d CPU %s)\n", rateMB, d, benchrun.CPUs(), benchrun.CPUModel())
	step := int(rateMB * 1e6 / 10)
	var buf []byte
	n := 0
	start := time.Now()
	next := start
	report := start.Add(10 * time.Second)
	var maxRSS int
	for time.Since(start) < d {
		buf = buf[:0]
		for len(buf) < step {
			buf = fmt.Appendf(buf, "2026-12-02T21:00:00.000Z INFO request handled path=/api/cart/%d user=%d traceparent=00-%016x%016x-%016x-01\n", n%1000, n%97, n+1, n*7+1, n*13+1)
			n++
		}
		f.Write(buf)
		next = next.Add(100 * time.Millisecond)
		time.Sleep(time.Until(next))
		if time.Now().After(report) {
			report = report.Add(10 * time.Second)
			rss := rssKiB(cmd.Process.Pid)
			maxRSS = max(maxRSS, rss)
			u, s := userSys(cmd.Process.Pid)
			fmt.Printf("  t=%3.0fs RSS %5.1f MiB  CPU %.2f s  lines written %d, delivered %.0f\n", time.Since(start).Seconds(), float64(rss)/1024, u+s, n,
				metric(get("http://"+addr+"/metrics"), "meshtrail_tail_records_delivered_total"))
		}
	}
	fmt.Printf("soak: max RSS %.1f MiB, peak (VmHWM) %.1f MiB\n", float64(maxRSS)/1024, float64(hwmKiB(cmd.Process.Pid))/1024)
}

func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.Atoi(strings.Fields(l)[1])
			return v
		}
	}
	return 0
}

// runForward runs the receiver (OTLP listener, NDJSON out) and the agent
// forwarding to it; it returns each one's CPU seconds once the receiver
// accepted every line.
func runForward(bin, kind, in, dir string, lines int) (tailCPU, rcvCPU float64) {
	run := filepath.Join(dir, "fw")
	os.RemoveAll(run)
	os.MkdirAll(run, 0o755)
	otlp, metrics := benchrun.FreeAddr(), benchrun.FreeAddr()
	rcv := exec.Command(bin, "als", "--listen", benchrun.FreeAddr(), "--metrics-listen", metrics, "--otlp-listen", otlp,
		"--out", filepath.Join(run, "als.ndjson"), "--log-level", "warn")
	rcv.Stderr = os.Stderr
	must(rcv.Start())
	defer func() { rcv.Process.Kill(); rcv.Wait() }()
	benchrun.WaitFor(func() bool { return strings.Contains(get("http://"+metrics+"/readyz"), "ready") }, time.Minute, "the receiver")
	agent := exec.Command(bin, "tail", "--paths="+in, "--parser="+kind, "--state-dir="+filepath.Join(run, "state"),
		"--forward="+otlp, "--log-level=warn")
	agent.Stderr = os.Stderr
	must(agent.Start())
	defer func() { agent.Process.Kill(); agent.Wait() }()
	benchrun.WaitFor(func() bool {
		return metric(get("http://"+metrics+"/metrics"), "meshtrail_otlp_log_records_received_total") >= float64(lines)
	}, 15*time.Minute, "the receiver to accept every line")
	u, s := userSys(agent.Process.Pid)
	ru, rs := userSys(rcv.Process.Pid)
	return u + s, ru + rs
}

func runOtelcol(bin, kind, in, dir string, lines int) (cpu, rssMiB float64) {
	run := filepath.Join(dir, "oc")
	os.RemoveAll(run)
	os.MkdirAll(run, 0o755)
	mport := strings.Split(benchrun.FreeAddr(), ":")[1]
	ops := ""
	if kind == "nginx" {
		// The same regular expression meshtrail's nginx preset uses.
		ops = `
    operators:
      - type: regex_parser
        regex: '^(?P<remote_addr>\S+) - (?P<remote_user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+) "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)"'
        timestamp: {parse_from: attributes.time, layout_type: gotime, layout: "02/Jan/2006:15:04:05 -0700"}`
	}
	if kind == "json" {
		// The same work as meshtrail's json parser: the object's members
		// as attributes, the time from the time member.
		ops = `
    operators:
      - type: json_parser
        timestamp: {parse_from: attributes.time, layout_type: gotime, layout: "2006-01-02T15:04:05.999999999Z07:00"}`
	}
	cfg := fmt.Sprintf(`receivers:
  filelog:
    include: [%q]
    start_at: beginning
    storage: null%s
processors:
  batch: {}
exporters:
  file:
    path: %s
service:
  telemetry:
    logs: {level: warn}
    metrics:
      readers:
        - pull:
            exporter:
              prometheus: {host: 127.0.0.1, port: %s}
  pipelines:
    logs: {receivers: [filelog], processors: [batch], exporters: [file]}
`, in, ops, filepath.Join(run, "out.json"), mport)
	p := filepath.Join(run, "otelcol.yaml")
	must(os.WriteFile(p, []byte(cfg), 0o644))
	cmd := exec.Command(bin, "--config", p)
	cmd.Stderr = os.Stderr
	must(cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	benchrun.WaitFor(func() bool {
		return metric(get("http://127.0.0.1:"+mport+"/metrics"), "otelcol_exporter_sent_log_records") >= float64(lines)
	}, 15*time.Minute, "otelcol to export every line")
	u, s := userSys(cmd.Process.Pid)
	return u + s, float64(hwmKiB(cmd.Process.Pid)) / 1024
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	must(err)
	return fi.Size()
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

func userSys(pid int) (user, sys float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return ut / 100, st / 100
}

func hwmKiB(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmHWM:") {
			v, _ := strconv.Atoi(strings.Fields(sc.Text())[1])
			return v
		}
	}
	return 0
}

func must(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tailbench:", err)
	os.Exit(1)
}

// defaultTool is where the tool installers put a tool, or "" when absent.
func defaultTool(name string) string {
	dir := os.Getenv("MESHTRAIL_TOOLS_DIR")
	if dir == "" {
		cache, _ := os.UserCacheDir()
		dir = filepath.Join(cache, "meshtrail", "tools")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, name+"-*", name))
	if len(matches) == 0 {
		return ""
	}
	sort.Strings(matches)
	return matches[len(matches)-1]
}
