package injector

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookOptions says where the API server reaches the injector and how it
// treats failures.
type WebhookOptions struct {
	// Name of the MutatingWebhookConfiguration; default "meshtrail-injector".
	Name string
	// CABundle is the PEM CA the serving certificate chains to.
	CABundle []byte
	// Service the injector runs behind (in-cluster), or URL (outside it,
	// e.g. https://127.0.0.1:8443/inject in tests). Exactly one is used:
	// URL when set.
	ServiceNamespace, ServiceName string
	ServicePort                   int32
	URL                           string
	// FailurePolicy when the injector is down: Ignore (default: pods are
	// created without the sidecar) or Fail (pod creation waits for it).
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// SystemNamespaces never reach the webhook; default DefaultConfig's.
	SystemNamespaces []string
	// TimeoutSeconds per call; default 5 (the injector answers in well
	// under a millisecond).
	TimeoutSeconds int32
}

// WebhookConfiguration is the MutatingWebhookConfiguration that routes pod
// creations to the injector. Two webhooks, one path, like Istio's: the API
// server evaluates the selectors, so pods that are not ours never reach us.
//
//   - namespace.inject.meshtrail.io: namespaces labelled
//     meshtrail-injection=enabled, pods not labelled meshtrail.io/inject=false;
//   - object.inject.meshtrail.io: namespaces without that label, pods
//     labelled meshtrail.io/inject=true.
//
// A namespace labelled meshtrail-injection=disabled matches neither: the
// explicit "false" wins over a pod's "true". reinvocationPolicy IfNeeded has
// the API server call us again after other mutating webhooks (Istio's
// injector) changed the pod; the injector is idempotent, so the second call
// changes nothing when the sidecar is already there.
func WebhookConfiguration(o WebhookOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	if o.Name == "" {
		o.Name = "meshtrail-injector"
	}
	if o.FailurePolicy == "" {
		o.FailurePolicy = admissionregistrationv1.Ignore
	}
	if o.SystemNamespaces == nil {
		o.SystemNamespaces = DefaultConfig().SystemNamespaces
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = 5
	}
	client := admissionregistrationv1.WebhookClientConfig{CABundle: o.CABundle}
	if o.URL != "" {
		client.URL = &o.URL
	} else {
		port := o.ServicePort
		if port == 0 {
			port = 443
		}
		client.Service = &admissionregistrationv1.ServiceReference{
			Namespace: o.ServiceNamespace, Name: o.ServiceName, Path: ptrTo("/inject"), Port: &port,
		}
	}
	notSystem := metav1.LabelSelectorRequirement{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: o.SystemNamespaces,
	}
	hook := func(name string, ns, obj []metav1.LabelSelectorRequirement) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:         name,
			ClientConfig: client,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptrTo(admissionregistrationv1.NamespacedScope),
				},
			}},
			FailurePolicy:           ptrTo(o.FailurePolicy),
			MatchPolicy:             ptrTo(admissionregistrationv1.Equivalent),
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: append(ns, notSystem)},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: obj},
			SideEffects:             ptrTo(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptrTo(o.TimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptrTo(admissionregistrationv1.IfNeededReinvocationPolicy),
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: map[string]string{"app.kubernetes.io/name": "meshtrail-injector"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			hook("namespace.inject.meshtrail.io",
				[]metav1.LabelSelectorRequirement{{Key: NamespaceLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled"}}},
				[]metav1.LabelSelectorRequirement{{Key: InjectKey, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}}),
			hook("object.inject.meshtrail.io",
				[]metav1.LabelSelectorRequirement{{Key: NamespaceLabel, Operator: metav1.LabelSelectorOpDoesNotExist}},
				[]metav1.LabelSelectorRequirement{{Key: InjectKey, Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}}}),
		},
	}
}
