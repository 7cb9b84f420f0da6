#!/usr/bin/env bash
# The platform on the current kube context: ./deploy-all.sh --k8s up|down|status.
#
#   up      the infrastructure (helmfile.yaml), then every service under services/ (its chart)
#   status  each release's state and the pods of the services
#   down    the services, then the infrastructure (persistent volumes are kept)
#
# Needs kubectl, helm and helmfile on PATH, a reachable cluster, and the services' images
# in a registry the cluster pulls from: PLATFORM_IMAGE_REGISTRY=registry.example.com/team
# gives each service the image <registry>/<service>:<version>.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SERVICES_DIR="${PLATFORM_SERVICES_DIR:-$ROOT/services}"
NAMESPACE="${PLATFORM_SERVICES_NAMESPACE:-services}"
HELMFILE="$HERE/helmfile.yaml"

log() { printf '==> [%ss] %s\n' "$SECONDS" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_tools() {
  local missing=() tool needed="$*"
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) \
    || die "./deploy-all.sh --k8s needs ${needed// /, } on PATH (missing: ${missing[*]})"
}

require_cluster() {
  local context
  context="$(kubectl config current-context 2>/dev/null || echo none)"
  kubectl version --request-timeout=5s >/dev/null 2>&1 \
    || die "no reachable Kubernetes cluster (kube context: $context); set one with kubectl config use-context"
}

services() {
  local chart
  for chart in "$SERVICES_DIR"/*/chart/Chart.yaml; do
    [[ -f "$chart" ]] && basename "$(dirname "$(dirname "$chart")")"
  done
}

ensure_namespace() {
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

# Grafana's admin password: generated once, kept in a Secret, never in a file.
ensure_grafana_secret() {
  ensure_namespace monitoring
  kubectl -n monitoring get secret grafana-admin >/dev/null 2>&1 && return
  kubectl -n monitoring create secret generic grafana-admin --from-literal=admin-user=admin \
    --from-literal=admin-password="$(head -c 18 /dev/urandom | base64)" >/dev/null
  log "generated Grafana's admin password: kubectl -n monitoring get secret grafana-admin"
}

deploy_service() {
  local name="$1" args=()
  if [[ -n "${PLATFORM_IMAGE_REGISTRY:-}" ]]; then
    args+=(--set "image.repository=$PLATFORM_IMAGE_REGISTRY/$name")
  fi
  log "deploying $name"
  helm upgrade --install "$name" "$SERVICES_DIR/$name/chart" --namespace "$NAMESPACE" \
    --wait --timeout 10m "${args[@]}"
}

cmd_up() {
  ensure_namespace "$NAMESPACE"
  ensure_grafana_secret
  log "installing the infrastructure (helmfile apply: Strimzi + Kafka, Prometheus, KEDA, Consul, Kong, Jaeger, collector)"
  helmfile --file "$HELMFILE" apply --suppress-diff
  local name
  for name in $(services); do
    deploy_service "$name"
  done
  log "the platform is up"
  cat <<ADDRESSES
  Kong proxy:  kubectl -n kong port-forward svc/kong-gateway-proxy 8000:80
  Jaeger UI:   kubectl -n observability port-forward svc/jaeger 16686
  Grafana:     kubectl -n monitoring port-forward svc/monitoring-grafana 3000:80
  Prometheus:  kubectl -n monitoring port-forward svc/monitoring-kube-prometheus-prometheus 9090
  Consul UI:   kubectl -n consul port-forward svc/consul-ui 8500:80
ADDRESSES
}

cmd_status() {
  helmfile --file "$HELMFILE" status
  local name failed=0
  for name in $(services); do
    helm status "$name" --namespace "$NAMESPACE" >/dev/null 2>&1 \
      || { echo "$name: not installed"; failed=1; }
  done
  kubectl get pods --namespace "$NAMESPACE" -l app.kubernetes.io/part-of=event-platform
  return "$failed"
}

cmd_down() {
  local name
  for name in $(services); do
    helm uninstall "$name" --namespace "$NAMESPACE" --wait 2>/dev/null || true
  done
  helmfile --file "$HELMFILE" destroy
}

main() {
  local command="${1:-up}"
  case "$command" in
    up | status | down) ;;
    *) die "unknown command '$command' for --k8s (up, status or down)" ;;
  esac
  require_tools kubectl helm
  require_cluster
  require_tools kubectl helm helmfile
  "cmd_$command"
}

main "$@"
