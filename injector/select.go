package injector

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Skip reasons: the values of the skipped_total metric's reason label and
// of Status.Reason's leading word. Pods skipped for the first three are not
// ours and are left untouched (no status annotation).
const (
	skipOptedOut        = "opted-out"
	skipSystemNamespace = "system-namespace"
	skipNotCreate       = "not-a-pod-create"
	skipHostNetwork     = "host-network"
	skipNoVolume        = "no-log-volume"
	skipBelowThreshold  = "below-threshold"
	skipNoPaths         = "no-log-paths"
	skipAlreadyInjected = "already-injected"
	skipUnhonourable    = "unhonourable"
)

// Decisions recorded in Status.Decision.
const (
	DecisionSidecar   = "sidecar"   // the tail sidecar was injected
	DecisionDaemonSet = "daemonset" // left to the node DaemonSet
	DecisionNone      = "none"      // annotations could not be honoured
)

// Status is the JSON in StatusAnnotation. It is deterministic (no time, no
// counters) so that a second pass over the same pod writes the same bytes.
type Status struct {
	Decision string      `json:"decision"`
	Reason   string      `json:"reason"`
	Mode     SidecarMode `json:"mode,omitempty"`
	// Container is the injected container's name.
	Container string `json:"container,omitempty"`
	// Volumes are the volumes the injector added to the pod.
	Volumes []string `json:"volumes,omitempty"`
	// Mounts are the volumes mounted into the sidecar, as name:mountPath.
	Mounts []string `json:"mounts,omitempty"`
}

func (s Status) encode() string {
	b, _ := json.Marshal(s)
	return string(b)
}

func readStatus(pod *corev1.Pod) (Status, bool) {
	v, ok := pod.Annotations[StatusAnnotation]
	if !ok {
		return Status{}, false
	}
	var s Status
	if json.Unmarshal([]byte(v), &s) != nil {
		return Status{}, false
	}
	return s, true
}

// optedOut is true for an explicit "false" as label or annotation: it wins
// over every selector, as with Istio's sidecar.istio.io/inject.
func optedOut(pod *corev1.Pod) bool {
	return pod.Labels[InjectKey] == "false" || pod.Annotations[InjectKey] == "false"
}

// injected reports whether a previous pass already added the sidecar: the
// status says so and the container is there. A copied status annotation
// without the container does not count.
func injected(pod *corev1.Pod) bool {
	st, ok := readStatus(pod)
	if !ok || st.Decision != DecisionSidecar {
		return false
	}
	return findContainer(pod, SidecarName) != ""
}

// findContainer returns "initContainers", "containers" or "" for where a
// container named name is.
func findContainer(pod *corev1.Pod, name string) string {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return "initContainers"
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return "containers"
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return "ephemeralContainers"
		}
	}
	return ""
}

// selection is the first cut: whether the pod is ours at all. The namespace
// label and the pod's opt-in label are enforced by the webhook's
// namespaceSelector/objectSelector (WebhookConfiguration), which the API
// server evaluates; this repeats the checks a selector cannot express.
func (inj *Injector) selection(namespace string, pod *corev1.Pod) (skip string, why string) {
	switch {
	case contains(inj.cfg.SystemNamespaces, namespace):
		return skipSystemNamespace, fmt.Sprintf("namespace %s is a system namespace", namespace)
	case optedOut(pod):
		return skipOptedOut, InjectKey + " is \"false\""
	case injected(pod):
		return skipAlreadyInjected, "the sidecar is already injected"
	case pod.Spec.HostNetwork:
		return skipHostNetwork, "hostNetwork pods are left to the node DaemonSet"
	}
	return "", ""
}
