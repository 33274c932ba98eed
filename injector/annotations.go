package injector

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The labels and annotations the injector reads and writes. README.md
// documents each with examples.
const (
	// NamespaceLabel = "enabled" on a namespace selects its pods.
	NamespaceLabel = "meshtrail-injection"
	// InjectKey as a pod label "true" selects the pod; "false" as a label or
	// an annotation always opts it out.
	InjectKey = "meshtrail.io/inject"
	// StatusAnnotation is written back: the decision, why, and what was added.
	StatusAnnotation = "meshtrail.io/injection-status"

	LogVolumeAnnotation     = "meshtrail.io/log-volume"
	LogPathsAnnotation      = "meshtrail.io/log-paths"
	LogParserAnnotation     = "meshtrail.io/log-parser"
	LogMultilineAnnotation  = "meshtrail.io/log-multiline"
	LogSinksAnnotation      = "meshtrail.io/log-sinks"
	LogContainersAnnotation = "meshtrail.io/log-containers"
	SidecarModeAnnotation   = "meshtrail.io/sidecar-mode"
	CPUAnnotation           = "meshtrail.io/tail-cpu"
	MemoryAnnotation        = "meshtrail.io/tail-memory"
	CPULimitAnnotation      = "meshtrail.io/tail-cpu-limit"
	MemoryLimitAnnotation   = "meshtrail.io/tail-memory-limit"

	// SidecarName is the injected container's name; it also marks the pod
	// as injected, together with StatusAnnotation.
	SidecarName = "meshtrail-tail"

	// defaultContainerAnnotation is kubectl's; it names the app container
	// when a pod has several and meshtrail.io/log-containers is absent.
	defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"
)

var knownAnnotations = map[string]bool{
	InjectKey: true, StatusAnnotation: true, LogVolumeAnnotation: true, LogPathsAnnotation: true,
	LogParserAnnotation: true, LogMultilineAnnotation: true, LogSinksAnnotation: true,
	LogContainersAnnotation: true, SidecarModeAnnotation: true, CPUAnnotation: true,
	MemoryAnnotation: true, CPULimitAnnotation: true, MemoryLimitAnnotation: true,
}

// tailSpec is what a pod's annotations ask the sidecar to do, parsed and
// checked.
type tailSpec struct {
	rate       float64  // declared bytes/s; 0 when not declared
	paths      []string // absolute globs
	parser     string
	multiline  string
	sinks      []string
	containers []string // app containers writing the logs
	mode       SidecarMode
	resources  corev1.ResourceRequirements
}

// unhonourable is an annotation problem that keeps the pod from being
// injected: the pod is admitted without the sidecar (or denied if strict).
type unhonourable struct{ msg string }

func (e *unhonourable) Error() string { return e.msg }

func cannot(format string, a ...any) error { return &unhonourable{fmt.Sprintf(format, a...)} }

// unknownAnnotations lists meshtrail.io/ annotations this version does not
// know: likely typos, returned as warnings.
func unknownAnnotations(ann map[string]string) []string {
	var out []string
	for k := range ann {
		if strings.HasPrefix(k, "meshtrail.io/") && !knownAnnotations[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// parseTailSpec reads the pod's annotations. A problem returns an
// *unhonourable error naming the annotation and the value.
func (inj *Injector) parseTailSpec(pod *corev1.Pod) (tailSpec, error) {
	ann := pod.Annotations
	var s tailSpec
	if v, ok := ann[LogVolumeAnnotation]; ok {
		r, err := ParseRate(v)
		if err != nil {
			return s, cannot("%s: %v", LogVolumeAnnotation, err)
		}
		s.rate = r
	}
	for _, p := range splitList(ann[LogPathsAnnotation]) {
		if err := checkLogPath(p); err != nil {
			return s, cannot("%s: %v", LogPathsAnnotation, err)
		}
		s.paths = append(s.paths, p)
	}
	s.parser = "raw"
	if v, ok := ann[LogParserAnnotation]; ok {
		if !contains(inj.cfg.Sidecar.Parsers, v) {
			return s, cannot("%s: unknown parser %q (one of %s)", LogParserAnnotation, v, strings.Join(inj.cfg.Sidecar.Parsers, ", "))
		}
		s.parser = v
	}
	if v, ok := ann[LogMultilineAnnotation]; ok {
		if _, err := regexp.Compile(v); err != nil {
			return s, cannot("%s: %q is not a regular expression: %v", LogMultilineAnnotation, v, err)
		}
		s.multiline = v
	}
	s.sinks = inj.cfg.Sidecar.DefaultSinks
	if v, ok := ann[LogSinksAnnotation]; ok {
		s.sinks = nil
		for _, n := range splitList(v) {
			if !sinkName.MatchString(n) {
				return s, cannot("%s: %q is not a sink name", LogSinksAnnotation, n)
			}
			if len(inj.cfg.Sidecar.Sinks) > 0 && !contains(inj.cfg.Sidecar.Sinks, n) {
				return s, cannot("%s: unknown sink %q (one of %s)", LogSinksAnnotation, n, strings.Join(inj.cfg.Sidecar.Sinks, ", "))
			}
			s.sinks = append(s.sinks, n)
		}
	}
	s.mode = inj.mode
	if v, ok := ann[SidecarModeAnnotation]; ok {
		switch SidecarMode(v) {
		case ModeNative, ModeRegular:
			s.mode = SidecarMode(v)
		default:
			return s, cannot("%s: %q is not native or regular", SidecarModeAnnotation, v)
		}
	}
	var err error
	if s.containers, err = logContainers(pod); err != nil {
		return s, err
	}
	s.resources, err = inj.resources(ann)
	return s, err
}

// logContainers picks the app containers whose log directories the sidecar
// reads: meshtrail.io/log-containers, else kubectl's default container, else
// the first container that is not a known sidecar.
func logContainers(pod *corev1.Pod) ([]string, error) {
	has := func(name string) bool {
		for _, c := range pod.Spec.Containers {
			if c.Name == name {
				return true
			}
		}
		return false
	}
	if v, ok := pod.Annotations[LogContainersAnnotation]; ok {
		names := splitList(v)
		if len(names) == 0 {
			return nil, cannot("%s: empty", LogContainersAnnotation)
		}
		for _, n := range names {
			if isIstioContainer(n) {
				return nil, cannot("%s: %q is Istio's container; meshtrail leaves Istio's containers and volumes alone (its proxy logs reach the ALS receiver)", LogContainersAnnotation, n)
			}
			if !has(n) || n == SidecarName {
				return nil, cannot("%s: the pod has no app container %q", LogContainersAnnotation, n)
			}
		}
		return names, nil
	}
	if n := pod.Annotations[defaultContainerAnnotation]; n != "" && has(n) && n != SidecarName {
		return []string{n}, nil
	}
	for _, c := range pod.Spec.Containers {
		if !isIstioContainer(c.Name) && c.Name != SidecarName {
			return []string{c.Name}, nil
		}
	}
	return nil, cannot("the pod has no app container to read logs from")
}

// isIstioContainer reports whether a container is one Istio's injector
// adds (istio-proxy, istio-init, istio-validation: the istio- prefix is
// Istio's).
func isIstioContainer(name string) bool { return strings.HasPrefix(name, "istio-") }

// isIstioVolume reports whether a volume is one Istio's injector adds
// (istio-envoy, istio-data, istio-podinfo, istio-token, istiod-ca-cert,
// and the ambient/SPIRE sockets' workload-socket, credential-socket,
// workload-certs; Istio's manifests/charts/istio-control/istio-discovery/files/injection-template.yaml).
func isIstioVolume(name string) bool {
	switch name {
	case "workload-socket", "credential-socket", "workload-certs":
		return true
	}
	return strings.HasPrefix(name, "istio-") || strings.HasPrefix(name, "istiod-")
}

func (inj *Injector) resources(ann map[string]string) (corev1.ResourceRequirements, error) {
	sc := inj.cfg.Sidecar
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		key, def string
		list     corev1.ResourceList
		name     corev1.ResourceName
	}{
		{CPUAnnotation, sc.CPURequest, r.Requests, corev1.ResourceCPU},
		{MemoryAnnotation, sc.MemoryRequest, r.Requests, corev1.ResourceMemory},
		{CPULimitAnnotation, sc.CPULimit, r.Limits, corev1.ResourceCPU},
		{MemoryLimitAnnotation, sc.MemoryLimit, r.Limits, corev1.ResourceMemory},
	} {
		v, ok := ann[q.key]
		if !ok {
			v = q.def
		}
		if v == "" {
			continue
		}
		qty, err := resource.ParseQuantity(v)
		if err != nil || qty.Sign() < 0 {
			return r, cannot("%s: %q is not a resource quantity", q.key, v)
		}
		q.list[q.name] = qty
	}
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okR := r.Requests[n]
		lim, okL := r.Limits[n]
		if okR && okL && req.Cmp(lim) > 0 {
			return r, cannot("sidecar %s request %s is above its limit %s (check %s and %s)", n, req.String(), lim.String(), CPUAnnotation, CPULimitAnnotation)
		}
	}
	if len(r.Limits) == 0 {
		r.Limits = nil
	}
	if len(r.Requests) == 0 {
		r.Requests = nil
	}
	return r, nil
}

// checkLogPath accepts absolute, clean globs whose directory part is not /.
func checkLogPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	if path.Clean(p) != p {
		return fmt.Errorf("%q is not a clean path (no .., //, trailing /)", p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("%q is not a valid glob: %v", p, err)
	}
	if logDir(p) == "/" {
		return fmt.Errorf("%q: logs directly under / cannot be shared through a volume", p)
	}
	return nil
}

// logDir is the directory a glob's files live under: the components before
// the first one holding a glob character (or the parent of a plain file).
func logDir(p string) string {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if strings.ContainsAny(part, `*?[\`) {
			if i <= 1 {
				return "/"
			}
			return strings.Join(parts[:i], "/")
		}
	}
	return path.Dir(p)
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
