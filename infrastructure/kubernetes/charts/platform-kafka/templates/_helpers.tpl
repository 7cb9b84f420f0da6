{{- define "kafka.labels" -}}
app.kubernetes.io/part-of: event-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* One node pool: its role, size and persistent volume. */}}
{{- define "kafka.pool" -}}
{{- $pool := index .root.Values .values }}
apiVersion: kafka.strimzi.io/v1
kind: KafkaNodePool
metadata:
  name: {{ .role }}s
  labels:
    {{- include "kafka.labels" .root | nindent 4 }}
    strimzi.io/cluster: {{ .root.Values.name }}
spec:
  replicas: {{ $pool.replicas }}
  roles: [{{ .role }}]
  storage:
    type: jbod
    volumes:
      - id: 0
        type: persistent-claim
        size: {{ $pool.storage }}
        {{- with .root.Values.storageClass }}
        class: {{ . }}
        {{- end }}
        kraftMetadata: shared
        deleteClaim: false
  {{- with $pool.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
