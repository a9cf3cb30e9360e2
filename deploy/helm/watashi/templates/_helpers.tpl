{{- define "watashi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "watashi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "watashi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "watashi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "watashi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "watashi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "watashi.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "watashi.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "watashi.secretName" -}}
{{- default (include "watashi.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "watashi.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The configuration file: the operator's config with what the chart owns. */}}
{{- define "watashi.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if not $cfg.issuer -}}
{{- fail "config.issuer is required: the public https URL of this provider" -}}
{{- end -}}
{{- $_ := set $cfg "listen" "0.0.0.0:8080" -}}
{{- $_ := set $cfg "telemetry_listen" (printf "0.0.0.0:%d" (int .Values.service.telemetryPort)) -}}
{{- toYaml $cfg -}}
{{- end -}}
