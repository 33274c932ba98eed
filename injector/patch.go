package injector

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// patchOp is one RFC 6902 operation. Only "add" is emitted: adding an
// object member replaces it when present, and appending with "/-" needs no
// index, so no operation depends on a path the pod might not have, except
// the array indexes of containers the pod was decoded with.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// stateDir is where the sidecar keeps its read offsets (its root
// filesystem is read-only).
const stateDir = "/var/lib/meshtrail-tail"

// injection is what buildInjection adds to a pod.
type injection struct {
	ops    []patchOp
	status Status
}

// buildInjection plans the sidecar, its volumes and mounts for pod. It does
// not touch pod. Problems are *unhonourable errors.
func (inj *Injector) buildInjection(pod *corev1.Pod, spec tailSpec) (injection, error) {
	var out injection
	if where := findContainer(pod, SidecarName); where != "" {
		return out, cannot("name clash: the pod already has a container named %q in %s that meshtrail did not inject", SidecarName, where)
	}
	if spec.mode == ModeRegular && pod.Spec.RestartPolicy != "" && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		return out, cannot("a regular (non-native) sidecar would keep this restartPolicy %s pod from completing; use %s: native on Kubernetes >= 1.29", pod.Spec.RestartPolicy, SidecarModeAnnotation)
	}

	names := newNamer(pod)
	containerIndex := map[string]int{}
	for i, c := range pod.Spec.Containers {
		containerIndex[c.Name] = i
	}

	// Where each log directory already lives on a volume, the sidecar mounts
	// that volume at the same path; otherwise an emptyDir is added there.
	sidecarMounts := map[string]corev1.VolumeMount{} // by mountPath
	uncovered := map[string][]string{}               // dir -> containers needing an emptyDir there
	for _, dir := range uniqueDirs(spec.paths) {
		for _, cname := range spec.containers {
			c := pod.Spec.Containers[containerIndex[cname]]
			m, ok := coveringMount(c.VolumeMounts, dir)
			if !ok {
				uncovered[dir] = append(uncovered[dir], cname)
				continue
			}
			if isIstioVolume(m.Name) {
				return out, cannot("%s: %s is on Istio's volume %q in container %q; meshtrail leaves Istio's volumes alone: log elsewhere", LogPathsAnnotation, dir, m.Name, cname)
			}
			sm := corev1.VolumeMount{Name: m.Name, MountPath: m.MountPath, SubPath: m.SubPath, SubPathExpr: m.SubPathExpr, ReadOnly: true}
			if prev, ok := sidecarMounts[sm.MountPath]; ok && (prev.Name != sm.Name || prev.SubPath != sm.SubPath || prev.SubPathExpr != sm.SubPathExpr) {
				return out, cannot("name clash: %s is volume %q in one log container and %q in another; list one in %s", sm.MountPath, prev.Name, sm.Name, LogContainersAnnotation)
			}
			sidecarMounts[sm.MountPath] = sm
		}
	}
	// One emptyDir per outermost uncovered directory.
	var newVolumes []corev1.Volume
	appMounts := map[string][]corev1.VolumeMount{} // container -> mounts to add
	for _, dir := range outermost(keys(uncovered)) {
		if _, ok := sidecarMounts[dir]; ok {
			return out, cannot("name clash: %s is on a volume in one log container and on no volume in another; list one in %s", dir, LogContainersAnnotation)
		}
		name := names.volume("meshtrail-logs")
		newVolumes = append(newVolumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		seen := map[string]bool{}
		for d, cs := range uncovered {
			if d != dir && !strings.HasPrefix(d, dir+"/") {
				continue
			}
			for _, cname := range cs {
				if !seen[cname] {
					seen[cname] = true
					appMounts[cname] = append(appMounts[cname], corev1.VolumeMount{Name: name, MountPath: dir})
				}
			}
		}
		sidecarMounts[dir] = corev1.VolumeMount{Name: name, MountPath: dir, ReadOnly: true}
	}
	if _, ok := sidecarMounts[stateDir]; ok {
		return out, cannot("%s: %s is the sidecar's own state directory; log there elsewhere", LogPathsAnnotation, stateDir)
	}
	stateVol := names.volume("meshtrail-tail-state")
	newVolumes = append(newVolumes, corev1.Volume{Name: stateVol, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})

	mounts := make([]corev1.VolumeMount, 0, len(sidecarMounts)+1)
	for _, m := range sidecarMounts {
		mounts = append(mounts, m)
	}
	// Parents before children: the runtime mounts in order.
	sort.Slice(mounts, func(i, j int) bool { return mounts[i].MountPath < mounts[j].MountPath })
	mounts = append(mounts, corev1.VolumeMount{Name: stateVol, MountPath: stateDir})

	sidecar := inj.sidecarContainer(spec, mounts)

	// The patch.
	out.ops = append(out.ops, podResourceOps(pod, sidecar.Resources)...)
	out.ops = appendAll(out.ops, "/spec/volumes", len(pod.Spec.Volumes) == 0, toAny(newVolumes))
	for _, cname := range spec.containers {
		ms := appMounts[cname]
		if len(ms) == 0 {
			continue
		}
		i := containerIndex[cname]
		out.ops = appendAll(out.ops, "/spec/containers/"+strconv.Itoa(i)+"/volumeMounts", len(pod.Spec.Containers[i].VolumeMounts) == 0, toAny(ms))
		delete(appMounts, cname) // a container listed twice gets its mounts once
	}
	if spec.mode == ModeNative {
		out.ops = appendAll(out.ops, "/spec/initContainers", len(pod.Spec.InitContainers) == 0, []any{sidecar})
	} else {
		out.ops = appendAll(out.ops, "/spec/containers", false, []any{sidecar})
	}

	out.status = Status{Decision: DecisionSidecar, Mode: spec.mode, Container: SidecarName}
	for _, v := range newVolumes {
		out.status.Volumes = append(out.status.Volumes, v.Name)
	}
	for _, m := range mounts {
		out.status.Mounts = append(out.status.Mounts, m.Name+":"+m.MountPath)
	}
	return out, nil
}

// sidecarContainer is the `meshtrail tail` container. Its command line is
// the contract with the tail subcommand (README.md, "Sidecar contract").
func (inj *Injector) sidecarContainer(spec tailSpec, mounts []corev1.VolumeMount) corev1.Container {
	sc := inj.cfg.Sidecar
	args := []string{"--paths=" + strings.Join(spec.paths, ","), "--parser=" + spec.parser, "--state-dir=" + stateDir}
	if spec.multiline != "" {
		args = append(args, "--multiline="+spec.multiline)
	}
	if len(spec.sinks) > 0 {
		args = append(args, "--sinks="+strings.Join(spec.sinks, ","))
	}
	if sc.Forward != "" {
		args = append(args, "--forward="+sc.Forward)
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	c := corev1.Container{
		Name:            SidecarName,
		Image:           sc.Image,
		ImagePullPolicy: corev1.PullPolicy(sc.ImagePullPolicy),
		Command:         []string{"meshtrail", "tail"},
		Args:            args,
		Env: []corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_UID", "metadata.uid"),
			fieldEnv("NODE_NAME", "spec.nodeName"),
		},
		Resources:    spec.resources,
		VolumeMounts: mounts,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptrTo(true),
			RunAsUser:                ptrTo(sc.RunAsUser),
			ReadOnlyRootFilesystem:   ptrTo(true),
			AllowPrivilegeEscalation: ptrTo(false),
			Privileged:               ptrTo(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if spec.mode == ModeNative {
		// Started before the app containers, stopped after them.
		c.RestartPolicy = ptrTo(corev1.ContainerRestartPolicyAlways)
	} else {
		// A regular container gets SIGTERM together with the app: drain
		// first so the app's last lines are shipped.
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"meshtrail", "tail", "drain", "--state-dir=" + stateDir, "--timeout=" + strconv.Itoa(sc.DrainSeconds) + "s"},
		}}}
	}
	return c
}

// podResourceOps raises pod-level resources (spec.resources, Kubernetes
// >= 1.32, on by default since 1.34) by the sidecar's, so the patched pod
// stays valid: the API server requires pod-level requests >= the
// aggregate of the containers' requests, sidecars included, and each
// container's limit <= the pod-level limit
// (kubernetes v1.34 pkg/apis/core/validation/validation.go,
// validatePodResourceConsistency). Only resources the pod sets at pod
// level are raised; a request the sidecar leaves out is its limit, as
// the API server defaults it.
func podResourceOps(pod *corev1.Pod, sidecar corev1.ResourceRequirements) []patchOp {
	pr := pod.Spec.Resources
	if pr == nil {
		return nil
	}
	var ops []patchOp
	raise := func(list corev1.ResourceList, path string, by func(corev1.ResourceName) (resource.Quantity, bool)) {
		for _, name := range sortedResourceNames(list) {
			add, ok := by(name)
			if !ok {
				continue
			}
			q := list[name].DeepCopy()
			q.Add(add)
			ops = append(ops, patchOp{Op: "add", Path: path + "/" + escapePointer(string(name)), Value: q.String()})
		}
	}
	raise(pr.Requests, "/spec/resources/requests", func(n corev1.ResourceName) (resource.Quantity, bool) {
		if q, ok := sidecar.Requests[n]; ok {
			return q, true
		}
		q, ok := sidecar.Limits[n]
		return q, ok
	})
	raise(pr.Limits, "/spec/resources/limits", func(n corev1.ResourceName) (resource.Quantity, bool) {
		q, ok := sidecar.Limits[n]
		return q, ok
	})
	return ops
}

func sortedResourceNames(list corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(list))
	for n := range list {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	return names
}

// statusOp writes the status annotation, or nothing when it already holds
// exactly this value (so that a second pass is a no-op).
func statusOp(pod *corev1.Pod, st Status) []patchOp {
	v := st.encode()
	if old, ok := pod.Annotations[StatusAnnotation]; ok && old == v {
		return nil
	}
	if len(pod.Annotations) == 0 {
		return []patchOp{{Op: "add", Path: "/metadata/annotations", Value: map[string]string{StatusAnnotation: v}}}
	}
	return []patchOp{{Op: "add", Path: "/metadata/annotations/" + escapePointer(StatusAnnotation), Value: v}}
}

// appendAll adds values to the array at path: as a whole new array when the
// pod has none (or an empty one), else one "/-" append each.
func appendAll(ops []patchOp, path string, empty bool, values []any) []patchOp {
	if len(values) == 0 {
		return ops
	}
	if empty {
		return append(ops, patchOp{Op: "add", Path: path, Value: values})
	}
	for _, v := range values {
		ops = append(ops, patchOp{Op: "add", Path: path + "/-", Value: v})
	}
	return ops
}

// applyAndCheck applies ops to the pod's JSON as the API server will and
// checks that the result is a pod the API server accepts as far as our
// changes go. It returns the patch bytes.
func applyAndCheck(raw []byte, ops []patchOp) ([]byte, error) {
	patchJSON, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	patch, err := jsonpatch.DecodePatch(patchJSON)
	if err != nil {
		return nil, err
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		return nil, fmt.Errorf("the patch does not apply to this pod: %w", err)
	}
	if len(patched) > maxPodBytes && len(patched) > len(raw) {
		return nil, fmt.Errorf("the patched pod would be %d bytes of JSON, over the %d etcd stores by default", len(patched), maxPodBytes)
	}
	// Only the fields an injection can break are decoded: a full
	// corev1.Pod would cost a fifth of the review for nothing.
	var shape podShape
	if err := json.Unmarshal(patched, &shape); err != nil {
		return nil, fmt.Errorf("the patched pod does not decode: %w", err)
	}
	if err := shape.check(); err != nil {
		return nil, err
	}
	return patchJSON, nil
}

// podShape is the part of a pod that checkShape validates.
type podShape struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Resources *corev1.ResourceRequirements `json:"resources"`
		Volumes   []struct {
			Name string `json:"name"`
		} `json:"volumes"`
		InitContainers      []containerShape `json:"initContainers"`
		Containers          []containerShape `json:"containers"`
		EphemeralContainers []containerShape `json:"ephemeralContainers"`
	} `json:"spec"`
}

type containerShape struct {
	Name          string                         `json:"name"`
	RestartPolicy *corev1.ContainerRestartPolicy `json:"restartPolicy"`
	Resources     corev1.ResourceRequirements    `json:"resources"`
	VolumeMounts  []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

// maxPodBytes is etcd's default --max-request-bytes (1.5 MiB), which
// bounds what the API server can store. The pod's JSON is larger than the
// protobuf etcd stores, so the check errs on the side of admitting the
// pod unchanged.
const maxPodBytes = 3 << 19

// totalAnnotationBytes is the API server's bound on a pod's annotations,
// keys and values together (apimachinery
// pkg/api/validation/objectmeta.go, TotalAnnotationSizeLimitB).
const totalAnnotationBytes = 256 << 10

// check repeats the API server's validation rules an injection can break:
// the annotations' total size, unique container names (init, regular and
// ephemeral together), unique volume names, mounts of existing volumes at
// distinct paths, pod-level resources against the containers'.
func (p *podShape) check() error {
	size := 0
	for k, v := range p.Metadata.Annotations {
		size += len(k) + len(v)
	}
	if size > totalAnnotationBytes {
		return fmt.Errorf("the pod's annotations would total %d bytes, over the API server's limit of %d", size, totalAnnotationBytes)
	}
	if err := p.checkPodResources(); err != nil {
		return err
	}
	vols := map[string]bool{}
	for _, v := range p.Spec.Volumes {
		if vols[v.Name] {
			return fmt.Errorf("duplicate volume name %q", v.Name)
		}
		vols[v.Name] = true
	}
	names := map[string]bool{}
	for _, list := range [][]containerShape{p.Spec.InitContainers, p.Spec.Containers, p.Spec.EphemeralContainers} {
		for _, c := range list {
			if names[c.Name] {
				return fmt.Errorf("duplicate container name %q", c.Name)
			}
			names[c.Name] = true
			paths := map[string]bool{}
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					return fmt.Errorf("container %q mounts volume %q that the pod does not have", c.Name, m.Name)
				}
				if paths[m.MountPath] {
					return fmt.Errorf("container %q mounts two volumes at %s", c.Name, m.MountPath)
				}
				paths[m.MountPath] = true
			}
		}
	}
	return nil
}

// checkPodResources repeats validatePodResourceConsistency (kubernetes
// v1.34): pod-level requests at least the aggregate container requests
// (component-helpers resource.AggregateContainerRequests: regular
// containers and sidecars together, or the largest init container with
// the sidecars started before it), container limits at most pod-level
// limits.
func (p *podShape) checkPodResources() error {
	pr := p.Spec.Resources
	if pr == nil || (len(pr.Requests) == 0 && len(pr.Limits) == 0) {
		return nil
	}
	request := func(c containerShape, n corev1.ResourceName) resource.Quantity {
		if q, ok := c.Resources.Requests[n]; ok {
			return q
		}
		return c.Resources.Limits[n] // defaulted to the limit by the API server
	}
	for n, podReq := range pr.Requests {
		var sum, sidecars, initMax resource.Quantity
		for _, c := range p.Spec.Containers {
			sum.Add(request(c, n))
		}
		for _, c := range p.Spec.InitContainers {
			q := request(c, n)
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				sidecars.Add(q)
				q = sidecars.DeepCopy()
			} else {
				q.Add(sidecars)
			}
			if q.Cmp(initMax) > 0 {
				initMax = q
			}
		}
		sum.Add(sidecars)
		if initMax.Cmp(sum) > 0 {
			sum = initMax
		}
		if sum.Cmp(podReq) > 0 {
			return fmt.Errorf("spec.resources.requests[%s] %s is under the aggregate container requests %s", n, podReq.String(), sum.String())
		}
	}
	for _, c := range p.Spec.Containers {
		for n, lim := range c.Resources.Limits {
			if podLim, ok := pr.Limits[n]; ok && lim.Cmp(podLim) > 0 {
				return fmt.Errorf("container %q limit %s of %s is over spec.resources.limits[%s] %s", c.Name, lim.String(), n, n, podLim.String())
			}
		}
	}
	return nil
}

// namer hands out volume names the pod does not use yet.
type namer struct{ used map[string]bool }

func newNamer(pod *corev1.Pod) *namer {
	n := &namer{used: map[string]bool{}}
	for _, v := range pod.Spec.Volumes {
		n.used[v.Name] = true
	}
	return n
}

func (n *namer) volume(base string) string {
	name := base
	for i := 1; n.used[name]; i++ {
		name = base + "-" + strconv.Itoa(i)
	}
	n.used[name] = true
	return name
}

// coveringMount is the mount whose path is dir or its closest parent.
func coveringMount(mounts []corev1.VolumeMount, dir string) (corev1.VolumeMount, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range mounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (mp == dir || strings.HasPrefix(dir, mp+"/")) && (!found || len(mp) > len(strings.TrimSuffix(best.MountPath, "/"))) {
			best, found = m, true
		}
	}
	return best, found
}

func uniqueDirs(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		if d := logDir(p); !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// outermost drops directories nested in another of the list.
func outermost(dirs []string) []string {
	sort.Strings(dirs)
	var out []string
	for _, d := range dirs {
		if len(out) > 0 && strings.HasPrefix(d, out[len(out)-1]+"/") {
			continue
		}
		out = append(out, d)
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func toAny[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func ptrTo[T any](v T) *T { return &v }
