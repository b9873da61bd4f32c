{{- define "voiceop.name" -}}voiceop{{- end -}}

{{- define "voiceop.fullname" -}}
{{- if contains "voiceop" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-voiceop" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "voiceop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "voiceop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "voiceop.labels" -}}
{{ include "voiceop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: voiceop
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "voiceop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "voiceop.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "voiceop.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- /* The SIP edge's pods: a name of their own, so no selector of the operator's matches them. */}}
{{- define "voiceop.edgeSelectorLabels" -}}
app.kubernetes.io/name: voiceop-edge
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "voiceop.edgeLabels" -}}
{{ include "voiceop.labels" . | replace "app.kubernetes.io/component: operator" "app.kubernetes.io/component: edge" }}
{{- end -}}

{{- define "voiceop.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
