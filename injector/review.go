package injector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Injector answers AdmissionReviews for pod creation.
type Injector struct {
	cfg       Config
	threshold float64     // bytes/s, from cfg.Threshold
	mode      SidecarMode // native or regular, auto already resolved
	metrics   *Metrics
	log       *slog.Logger
}

// New checks cfg and returns an Injector adding sidecars in mode (native or
// regular: resolve auto first with ResolveMode).
func New(cfg Config, mode SidecarMode, metrics *Metrics, log *slog.Logger) (*Injector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if mode != ModeNative && mode != ModeRegular {
		return nil, fmt.Errorf("injector: mode %q: want native or regular", mode)
	}
	threshold, _ := ParseRate(cfg.Threshold)
	return &Injector{cfg: cfg, threshold: threshold, mode: mode, metrics: metrics, log: log}, nil
}

// maxReviewBytes bounds a request body: a pod is at most ~1.5 MB in etcd.
const maxReviewBytes = 8 << 20

// ServeHTTP is the /inject endpoint: AdmissionReview v1 in, out.
func (inj *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { inj.metrics.latency.Observe(time.Since(start).Seconds()) }()
	if r.Method != http.MethodPost {
		inj.metrics.badRequests.WithLabelValues("method").Inc()
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		inj.badReview(w, "body", fmt.Sprintf("request body unreadable or over %d bytes", maxReviewBytes))
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		inj.badReview(w, "not_json", fmt.Sprintf("not an AdmissionReview: %v", err))
		return
	}
	if reason, msg := checkEnvelope(&review); reason != "" {
		inj.badReview(w, reason, msg)
		return
	}
	resp := inj.Review(r.Context(), review.Request)
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		inj.metrics.reviews.WithLabelValues("error").Inc()
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// checkEnvelope says what makes review something other than an
// AdmissionReview v1 request the injector can answer ("" when nothing).
// The API server sends the first of the webhook's admissionReviewVersions
// it speaks and needs the request's uid in the response
// (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request):
// a review of another version, or without a uid, would get an answer it
// cannot use, so it gets a 400 saying why.
func checkEnvelope(review *admissionv1.AdmissionReview) (reason, msg string) {
	switch {
	case review.APIVersion != admissionv1.SchemeGroupVersion.String():
		return "api_version", fmt.Sprintf("apiVersion %.64q: only admission.k8s.io/v1 AdmissionReview is answered (admissionReviewVersions: [v1])", review.APIVersion)
	case review.Kind != "AdmissionReview":
		return "kind", fmt.Sprintf("kind %.64q: want AdmissionReview", review.Kind)
	case review.Request == nil:
		return "no_request", "AdmissionReview without request"
	case review.Request.UID == "":
		return "no_uid", "request.uid is empty: the response must echo it"
	}
	return "", ""
}

// badReview answers a request that is no AdmissionReview v1 with 400.
func (inj *Injector) badReview(w http.ResponseWriter, reason, msg string) {
	inj.metrics.reviews.WithLabelValues("error").Inc()
	inj.metrics.badRequests.WithLabelValues(reason).Inc()
	http.Error(w, "meshtrail injector: "+msg, http.StatusBadRequest)
}

// Review decides one admission request. It never fails the request for
// its own sake: anything but a strict-mode denial is Allowed.
func (inj *Injector) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	result, reason := "allowed", ""
	defer func() {
		inj.metrics.reviews.WithLabelValues(result).Inc()
		inj.metrics.warnings.Add(float64(len(resp.Warnings)))
		if reason != "" {
			inj.metrics.skipped.WithLabelValues(reason).Inc()
		}
	}()
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create || req.SubResource != "" {
		reason = skipNotCreate
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		result = "error"
		inj.log.ErrorContext(ctx, "pod does not decode", "uid", req.UID, "err", err)
		resp.Warnings = []string{"meshtrail: not injected: the pod does not decode"}
		return resp
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	log := inj.log.With("namespace", ns, "pod", name, "uid", req.UID)

	skip, why := inj.selection(ns, &pod)
	switch skip {
	case skipSystemNamespace, skipOptedOut, skipAlreadyInjected:
		reason = skip
		log.DebugContext(ctx, "left alone", "reason", why)
		return resp
	}
	for _, k := range unknownAnnotations(pod.Annotations) {
		resp.Warnings = append(resp.Warnings, "meshtrail: unknown annotation "+k+" ignored")
	}

	var st Status
	var ops []patchOp
	unhonoured := func(err error) {
		reason = skipUnhonourable
		st = Status{Decision: DecisionNone, Reason: cutText(err.Error(), maxStatusReason)}
		resp.Warnings = append(resp.Warnings, "meshtrail: sidecar not injected: "+err.Error())
	}
	if skip == skipHostNetwork {
		reason, st = skip, Status{Decision: DecisionDaemonSet, Reason: why}
	} else if spec, err := inj.parseTailSpec(&pod); err != nil {
		unhonoured(err)
	} else {
		switch {
		case spec.rate == 0:
			reason = skipNoVolume
			st = Status{Decision: DecisionDaemonSet, Reason: "no " + LogVolumeAnnotation + " annotation"}
		case spec.rate < inj.threshold:
			reason = skipBelowThreshold
			st = Status{Decision: DecisionDaemonSet, Reason: fmt.Sprintf("log volume %s is under the sidecar threshold %s", formatRate(spec.rate), formatRate(inj.threshold))}
		case len(spec.paths) == 0:
			reason = skipNoPaths
			st = Status{Decision: DecisionDaemonSet, Reason: fmt.Sprintf("log volume %s is over the threshold but no %s: stdout is read by the node DaemonSet", formatRate(spec.rate), LogPathsAnnotation)}
			resp.Warnings = append(resp.Warnings, "meshtrail: "+st.Reason)
		default:
			in, err := inj.buildInjection(&pod, spec)
			if err != nil {
				unhonoured(err)
				break
			}
			in.status.Reason = fmt.Sprintf("log volume %s is at or over the sidecar threshold %s", formatRate(spec.rate), formatRate(inj.threshold))
			st, ops = in.status, in.ops
		}
	}
	if st.Decision == DecisionDaemonSet { // (an unhonoured pod's warning already says why)
		for _, k := range []string{SidecarModeAnnotation, CPUAnnotation, MemoryAnnotation, CPULimitAnnotation, MemoryLimitAnnotation} {
			if _, ok := pod.Annotations[k]; ok {
				resp.Warnings = append(resp.Warnings, "meshtrail: "+k+" ignored: no sidecar injected")
			}
		}
	}
	if reason == skipUnhonourable && inj.cfg.Strict {
		result = "denied"
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
			Message: "meshtrail injector (strict): " + cutText(st.Reason, maxStatusReason)}
		resp.Warnings = nil
		log.InfoContext(ctx, "denied", "reason", st.Reason)
		return resp
	}

	ops = append(ops, statusOp(&pod, st)...)
	if len(ops) == 0 {
		resp.Warnings = cleanWarnings(resp.Warnings)
		return resp
	}
	patch, err := applyAndCheck(req.Object.Raw, ops)
	if err != nil && st.Decision == DecisionSidecar {
		// The patched pod would break an API server limit (annotations
		// near 256 KiB) or, a bug of ours, a validation rule: admit the
		// pod without the sidecar rather than have the API server reject
		// it for our patch.
		log.WarnContext(ctx, "injection patch failed its own check; admitting without sidecar", "err", err)
		reason, result = skipUnhonourable, "error"
		st = Status{Decision: DecisionNone, Reason: cutText("internal: "+err.Error(), maxStatusReason)}
		resp.Warnings = append(resp.Warnings, "meshtrail: sidecar not injected: "+st.Reason)
		patch, err = applyAndCheck(req.Object.Raw, statusOp(&pod, st))
	}
	if err != nil {
		// The pod cannot even take the status annotation (its own
		// annotations are at the API server's limit): admitted as it
		// came, which the API server accepts.
		log.WarnContext(ctx, "status patch failed its own check; admitting unchanged", "err", err)
		result = "error"
		resp.Warnings = cleanWarnings(append(resp.Warnings, "meshtrail: pod admitted unchanged: "+err.Error()))
		return resp
	}
	resp.Warnings = cleanWarnings(resp.Warnings)
	resp.Patch = patch
	resp.PatchType = ptrTo(admissionv1.PatchTypeJSONPatch)
	if st.Decision == DecisionSidecar {
		inj.metrics.injected.WithLabelValues(string(st.Mode)).Inc()
		log.InfoContext(ctx, "injected", "mode", st.Mode, "mounts", strings.Join(st.Mounts, ","))
	} else {
		log.DebugContext(ctx, "not injected", "decision", st.Decision, "reason", st.Reason)
	}
	return resp
}

// maxWarning is where the API server may start truncating a warning.
const maxWarning = 256

// maxStatusReason bounds the reason written into the status annotation:
// an unhonoured annotation's value is quoted in it, and a pod that is valid
// with 200 KiB of annotations must stay valid once its status is added
// (the API server's 256 KiB bound on annotations, see checkAnnotations).
const maxStatusReason = 512

// cutText cuts s to at most n bytes on a UTF-8 boundary, marking the cut
// with "...".
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// cleanWarnings makes warnings quoting user input safe to return: no
// control characters (the API server drops such warnings) and at most
// maxWarning bytes each.
func cleanWarnings(ws []string) []string {
	for i, w := range ws {
		w = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, w)
		ws[i] = cutText(w, maxWarning)
	}
	return ws
}
