{{/* Names, labels and the shared pieces of every pod. */}}

{{- define "meshtrail.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshtrail.receiver.name" -}}{{ include "meshtrail.fullname" . }}-als{{- end -}}
{{- define "meshtrail.injector.name" -}}{{ include "meshtrail.fullname" . }}-injector{{- end -}}
{{- define "meshtrail.nodeAgent.name" -}}{{ include "meshtrail.fullname" . }}-node{{- end -}}

{{- define "meshtrail.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: meshtrail
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* selector labels: include "meshtrail.selector" (list . "receiver") */}}
{{- define "meshtrail.selector" -}}
app.kubernetes.io/name: meshtrail
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "meshtrail.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The receiver's in-cluster DNS name. */}}
{{- define "meshtrail.receiver.host" -}}
{{ include "meshtrail.receiver.name" . }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end -}}

{{/* Where tail agents forward: the receiver's OTLP gRPC port. */}}
{{- define "meshtrail.forward" -}}
{{ include "meshtrail.receiver.host" . }}:{{ .Values.receiver.ports.otlpGrpc }}
{{- end -}}

{{- define "meshtrail.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{- define "meshtrail.injector.tlsSecret" -}}
{{- if eq .Values.injector.certificates.source "secret" -}}
{{ required "injector.certificates.secret.name: the Secret holding the webhook's serving certificate" .Values.injector.certificates.secret.name }}
{{- else -}}
{{ include "meshtrail.injector.name" . }}-tls
{{- end -}}
{{- end -}}
