{{/* Platform-owned: from the service template; `cruft update` merges template changes here. */}}

{{/* The chart's name, or nameOverride. */}}
{{- define "service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release's, unless it lacks the chart's name. */}}
{{- define "service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "service.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: event-service
app.kubernetes.io/part-of: event-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The most replicas worth running: together they run one consumer per partition at most. */}}
{{- define "service.maxReplicas" -}}
{{- $partitions := int .Values.kafka.partitions }}
{{- $workers := int .Values.kafka.consumerWorkers }}
{{- $max := int (.Values.autoscaling.maxReplicas | default (max 1 (div $partitions $workers))) }}
{{- if gt (mul $max $workers) $partitions }}
{{- fail (printf "autoscaling.maxReplicas (%d) x kafka.consumerWorkers (%d) is above kafka.partitions (%d): consumers beyond the partitions of %s would sit idle" $max $workers $partitions .Values.kafka.consumesTopic) }}
{{- end }}
{{- $max }}
{{- end }}

{{/* The topics the service declares: consumed, produced, dead letters. */}}
{{- define "service.topics" -}}
{{- $topics := list .Values.kafka.consumesTopic .Values.kafka.producesTopic .Values.kafka.deadLetterTopic }}
{{- without $topics .Values.topics.exclude | uniq | toJson }}
{{- end }}

{{/* A KafkaTopic's object name: the topic's own when it is a valid one, else made valid and unique. */}}
{{- define "service.topicObjectName" -}}
{{- if regexMatch "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$" . }}
{{- . }}
{{- else }}
{{- printf "%s-%s" (lower . | replace "_" "-" | trunc 200 | trimAll "-.") (sha256sum . | trunc 8) }}
{{- end }}
{{- end }}

{{- define "service.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "service.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Where the pod finds its DSN, as the file `url` (DATABASE_URL_FILE). */}}
{{- define "service.databaseDir" -}}
/etc/{{ include "service.name" . }}/database
{{- end }}

{{/* The CloudNativePG Cluster (CloudNativePG allows 50 characters). */}}
{{- define "service.databaseCluster" -}}
{{- printf "%s-db" (include "service.fullname" . | trunc 47 | trimSuffix "-") }}
{{- end }}

{{- define "service.databasePooler" -}}
{{- printf "%s-pooler" (include "service.databaseCluster" .) }}
{{- end }}

{{/* The service's role and database, named as on one host (billing-api: billing_api). */}}
{{- define "service.databaseName" -}}
{{- include "service.name" . | replace "-" "_" }}
{{- end }}

{{/* "true" when the service connects through the CloudNativePG Pooler. */}}
{{- define "service.behindPooler" -}}
{{- $cnpg := .Values.database.cloudnativepg }}
{{- if and .Values.database.enabled $cnpg.enabled $cnpg.pooler.enabled }}true{{ end }}
{{- end }}

{{/* The Secret with the DSN (or, behind the Pooler, the credentials it is made from). */}}
{{- define "service.databaseSecret" -}}
{{- if .Values.database.cloudnativepg.enabled }}
{{- printf "%s-app" (include "service.databaseCluster" .) }}
{{- else }}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "service.fullname" .)) }}
{{- end }}
{{- end }}

{{/* The SecretStore and the Secret the ExternalSecret writes (secrets.enabled). */}}
{{- define "service.secretStore" -}}
{{- printf "%s-openbao" (include "service.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "service.secretsSecret" -}}
{{- printf "%s-secrets" (include "service.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* Where the pod finds those secrets as files (SECRETS_DIR). */}}
{{- define "service.secretsDir" -}}
/etc/{{ include "service.name" . }}/secrets
{{- end }}
