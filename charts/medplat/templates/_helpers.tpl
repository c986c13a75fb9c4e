{{/*
Labels of every object. Call with (dict "context" . "component" "operator").
No object of the install carries app.kubernetes.io/managed-by=medplat: that label marks the
operator's children, and the operator's caches select on it.
*/}}
{{- define "medplat.labels" -}}
app.kubernetes.io/name: medplat
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: medplat
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .context.Chart.Name .context.Chart.Version }}
{{- end }}

{{/* The labels selecting the operator's pods (immutable once installed). */}}
{{- define "medplat.selectorLabels" -}}
app.kubernetes.io/name: medplat
app.kubernetes.io/component: operator
{{- end }}

{{- define "medplat.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* One medplat per cluster: its CRDs, the Platform and the node agent's objects are singletons. */}}
{{- define "medplat.checks" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection) }}
{{- fail "replicas > 1 needs leaderElection: true, or two operators would reconcile the same objects" }}
{{- end }}
{{- end }}
