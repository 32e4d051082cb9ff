{{- define "oidc-proxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "oidc-proxy.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "oidc-proxy.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "oidc-proxy.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "oidc-proxy.fullname" .) -}}
{{- end -}}

{{/* The proxy's configuration: the values' config, the secrets as files. */}}
{{- define "oidc-proxy.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $oidc := get $cfg "oidc" | default dict -}}
{{- $_ := set $oidc "client_secret_file" "/run/secrets/oidc-proxy/oidc-client-secret" -}}
{{- $_ := set $cfg "oidc" $oidc -}}
{{- $session := get $cfg "session" | default dict -}}
{{- $_ := set $session "secret_file" "/run/secrets/oidc-proxy/oidc-proxy-session" -}}
{{- $_ := set $cfg "session" $session -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "oidc-proxy.port" -}}
{{- $listen := .Values.config.listen | default ":4180" -}}
{{- last (splitList ":" $listen) -}}
{{- end -}}
