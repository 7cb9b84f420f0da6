{{/* Platform-owned: from the service template; `cruft update` merges template changes here. */}}

{{/* What the Ingress or HTTPRoute tells Kong about the route, as in the Kong snippet. */}}
{{- define "service.kongRouteAnnotations" -}}
konghq.com/plugins: {{ include "service.fullname" . }}-rate-limiting
konghq.com/strip-path: {{ .Values.route.stripPath | quote }}
konghq.com/preserve-host: {{ .Values.route.preserveHost | quote }}
{{- end }}
