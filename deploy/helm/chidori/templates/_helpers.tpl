{{/* Names and labels shared by every template. */}}
{{- define "chidori.fullname" -}}
{{- if contains "chidori" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-chidori" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "chidori.selectorLabels" -}}
app.kubernetes.io/name: chidori
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chidori.labels" -}}
{{ include "chidori.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
chidori.io/installation: {{ include "chidori.installation" . }}
{{- end -}}

{{/* The value of label chidori.io/installation on everything Chidori creates. */}}
{{- define "chidori.installation" -}}
{{- .Values.kubernetes.installation | default .Release.Name -}}
{{- end -}}

{{/* Where executor pods go: the jobs' namespace. */}}
{{- define "chidori.jobsNamespace" -}}
{{- .Values.kubernetes.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "chidori.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{- define "chidori.serverAccount" -}}{{ include "chidori.fullname" . }}{{- end -}}
{{- define "chidori.driverAccount" -}}{{ include "chidori.fullname" . }}-driver{{- end -}}
{{- define "chidori.executorAccount" -}}{{ include "chidori.fullname" . }}-executor{{- end -}}

{{/* The Secret holding database URL, admin token, keys: the user's, or the chart's. */}}
{{- define "chidori.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "chidori.fullname" .)) -}}
{{- end -}}

{{- define "chidori.rabbitmqSecret" -}}
{{- .Values.rabbitmq.existingSecret | default (printf "%s-rabbitmq" (include "chidori.fullname" .)) -}}
{{- end -}}

{{/* One env entry from the secrets Secret: dict "ctx" $ "env" NAME "key" valuesKey "optional" bool */}}
{{- define "chidori.secretEnv" -}}
{{- $s := .ctx.Values.secrets -}}
{{- if or $s.existingSecret (hasKey $s.values .key) }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "chidori.secretName" .ctx }}
      key: {{ index $s.keys .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{/* The RBAC rules, generated from chidori/backends/kubernetes/rbac.py (files/rbac-rules.yaml). */}}
{{- define "chidori.rbacRules" -}}
{{- .Files.Get "files/rbac-rules.yaml" | fromYaml | toJson -}}
{{- end -}}
