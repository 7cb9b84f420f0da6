#!/usr/bin/env bash
# The whole platform: infrastructure plus every service under services/.
#
#   ./deploy-all.sh [--native | --docker] [up] [--no-contracts]   start everything (the default)
#   ./deploy-all.sh [--native | --docker] up --kafka-brokers 3   three Kafka brokers
#   ./deploy-all.sh [--native | --docker] down     stop everything this started
#   ./deploy-all.sh [--native | --docker] status   health, databases, the firing alerts
#   ./deploy-all.sh [--native | --docker] logs [service]
#   ./deploy-all.sh new <service-name> [key=value ...]
#   ./deploy-all.sh contracts [--graph]   can every consumer read its producers' events?
#   ./deploy-all.sh --k8s up|status|down   the same on the current kube context (Helm)
#
# With a Docker engine it uses Docker Compose; without one (or with --native) it
# runs the same servers as local processes, built once from the package registries
# and cached in ~/.cache/event-platform (PostgreSQL is Debian's postgresql-15).
# Kong cannot run natively: its configuration is merged and validated, not served.
# One Kafka broker by default; with three, topics get 3 replicas and min.insync.replicas=2.
# Every step prints a line with the elapsed time; long ones a sign of life every ~15 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${PLATFORM_STATE_DIR:-$ROOT/.platform}"
SERVICES_DIR="${PLATFORM_SERVICES_DIR:-$ROOT/services}"
PY="$ROOT/.venv/bin/python"
INFRA_COMPOSE="$ROOT/docker-compose.infrastructure.yml"
SERVICES_COMPOSE="$STATE_DIR/docker-compose.services.yml"
KONG_CONFIG="$ROOT/infrastructure/kong/kong.generated.yml"
KAFKA_CLUSTER_COMPOSE="$ROOT/docker-compose.kafka-cluster.yml"
# Present while Compose runs three brokers: later commands add the override too.
KAFKA_CLUSTER_MARK="$STATE_DIR/kafka-cluster"
KAFKA_BROKERS=1
DECK_IMAGE="kong/deck:v1.55.0"
MODE=""
CONTRACTS=1  # `up` checks the event contracts first (--no-contracts: not)

# "==> [2m05s] what happens now": SECONDS counts from the script's start.
log() { printf '==> [%s] %s\n' "$(elapsed "$SECONDS")" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"  # the comment at the top
}

elapsed() {
  local seconds="$1"
  if ((seconds < 60)); then
    printf '%ds' "$seconds"
  else
    printf '%dm%02ds' $((seconds / 60)) $((seconds % 60))
  fi
}

# Run a command; while it runs, print "<label> … <elapsed>" every 15 s.
with_heartbeat() {
  local label="$1"
  shift
  local started="$SECONDS"
  "$@" &
  local pid=$!
  while ! wait_up_to "${HEARTBEAT_SECONDS:-15}" "$pid"; do
    printf '    %s … %s\n' "$label" "$(elapsed $((SECONDS - started)))"
  done
  wait "$pid"
}

# True once process $2 has exited (checked every second for up to $1 s).
wait_up_to() {
  local seconds="$1" pid="$2" i
  for ((i = 0; i < seconds; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  ! kill -0 "$pid" 2>/dev/null
}

# ------------------------------------------------------------------ helpers

detect_mode() {
  if [[ -n "$MODE" ]]; then
    return
  fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    MODE=docker
  else
    MODE=native
  fi
}

# The native servers: infrastructure/native/platform_native (standard library only).
native() {
  PYTHONPATH="$ROOT/infrastructure/native" "$PY" -m platform_native "$@"
}

# The other steps: infrastructure/platform_deploy (needs the .venv).
step() {
  PYTHONPATH="$ROOT/infrastructure:$ROOT/infrastructure/native" "$PY" -m platform_deploy \
    --services-dir "$SERVICES_DIR" "$@"
}

compose_infra() {
  docker compose --project-directory "$ROOT" -f "$INFRA_COMPOSE" "$@"
}

compose() {
  local files=(-f "$INFRA_COMPOSE")
  if [[ -f "$KAFKA_CLUSTER_MARK" ]]; then
    files+=(-f "$KAFKA_CLUSTER_COMPOSE")
  fi
  if [[ -f "$SERVICES_COMPOSE" ]]; then
    files+=(-f "$SERVICES_COMPOSE")
  fi
  docker compose --project-directory "$ROOT" "${files[@]}" "$@"
}

# One value of the native infrastructure's client environment (state.json).
native_env() {
  native env --state-dir "$STATE_DIR/infra" "$1"
}

kafka_bootstrap() {
  if [[ "$MODE" == native ]]; then
    native_env KAFKA_BOOTSTRAP_SERVERS
  else
    echo "127.0.0.1:${KAFKA_EXTERNAL_PORT:-9094}"
  fi
}

alertmanager_url() {
  if [[ "$MODE" == native ]]; then
    native_env ALERTMANAGER_URL
  else
    echo "http://127.0.0.1:9093"
  fi
}

consul_addr() {
  if [[ "$MODE" == native ]]; then
    native_env CONSUL_HTTP_ADDR
  else
    echo "127.0.0.1:8500"
  fi
}

# -------------------------------------------------------------------- steps

check_prerequisites() {
  command -v python3 >/dev/null 2>&1 || die "python3 (3.11 or newer) is not installed"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 is $(python3 -V 2>&1); 3.11 or newer is needed"
  command -v make >/dev/null 2>&1 || die "make is not installed (apt-get install make)"
  if [[ "$MODE" == docker ]]; then
    docker compose version >/dev/null 2>&1 || die "the Docker Compose plugin is missing"
    return
  fi
  local tool
  for tool in java mvn go; do
    command -v "$tool" >/dev/null 2>&1 \
      || die "$tool is needed once to build the native servers (Java 17, Maven, Go)"
  done
  # As root the build step installs it with apt-get; nobody else may.
  if [[ ! -x /usr/lib/postgresql/15/bin/postgres && "$(id -u)" != 0 ]]; then
    die "PostgreSQL 15 is needed: apt-get install postgresql-15 (as root)"
  fi
}

# Docker only: every image the infrastructure runs is here or can be pulled; if not,
# stop before anything starts and name the missing ones.
check_images() {
  log "checking the infrastructure's images (pulling missing ones)"
  local images image missing=()
  # Only the image names are read here, before .env exists: any password will do.
  images="$(GRAFANA_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-unused}" \
    POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-unused}" compose_infra config --images)"
  for image in $images "$DECK_IMAGE"; do
    docker image inspect "$image" >/dev/null 2>&1 && continue
    docker pull --quiet "$image" >/dev/null 2>&1 || missing+=("$image")
  done
  if ((${#missing[@]} > 0)); then
    die "images missing that cannot be pulled: ${missing[*]} (no registry reachable? ./deploy-all.sh --native needs no Docker)"
  fi
}

# The tools' virtualenv, and the chassis wheel the services here install (chassis/).
ensure_venv() {
  if [[ ! -f "$ROOT/.venv/.installed" ]]; then
    log "installing the Python packages into .venv"
  fi
  with_heartbeat "installing .venv and the chassis wheel" \
    make -s -C "$ROOT" --no-print-directory .venv/.installed wheels
}

build_servers() {
  log "building the native servers (cached after the first run)"
  native build
}

generated_password() {
  "$PY" -c 'import secrets; print(secrets.token_urlsafe(18))'
}

# Docker only: a .env (0600, never committed) with generated Grafana and PostgreSQL
# passwords. PostgreSQL reads its password when its volume is new only.
ensure_env_file() {
  local grafana postgres
  if [[ ! -f "$ROOT/.env" ]]; then
    grafana="$(generated_password)"
    postgres="$(generated_password)"
    (umask 077 && sed -e "s/^GRAFANA_ADMIN_PASSWORD=.*/GRAFANA_ADMIN_PASSWORD=$grafana/" \
      -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$postgres/" "$ROOT/.env.example" >"$ROOT/.env")
    log "wrote .env with generated Grafana admin and PostgreSQL passwords"
  elif ! grep -q '^POSTGRES_PASSWORD=.' "$ROOT/.env"; then
    # A .env from before PostgreSQL joined the platform.
    postgres="$(generated_password)"
    sed -i '/^POSTGRES_PASSWORD=/d' "$ROOT/.env"
    printf 'POSTGRES_PASSWORD=%s\n' "$postgres" >>"$ROOT/.env"
    log "added a generated PostgreSQL password to .env"
  fi
}

build_kong_config() {
  log "merging and validating the Kong snippets"
  if [[ "$MODE" == docker ]]; then
    step kong --out "$KONG_CONFIG" \
      --deck "docker run --rm -v $ROOT:$ROOT -w $ROOT $DECK_IMAGE"
  else
    step kong --out "$KONG_CONFIG"
  fi
}

start_infrastructure() {
  log "starting the infrastructure ($MODE)"
  if [[ "$MODE" == docker ]]; then
    mkdir -p "$STATE_DIR"
    if ((KAFKA_BROKERS == 3)); then
      touch "$KAFKA_CLUSTER_MARK"
    else
      rm -f "$KAFKA_CLUSTER_MARK"
    fi
    compose up --detach --wait
  else
    native up --state-dir "$STATE_DIR/infra" --kafka-brokers "$KAFKA_BROKERS"
  fi
}

# up's options: --kafka-brokers N (natively any N; Compose has 1 or 3).
parse_up_options() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --kafka-brokers)
        [[ $# -ge 2 ]] || die "--kafka-brokers needs a number"
        KAFKA_BROKERS="$2"
        shift 2
        ;;
      --no-contracts)
        CONTRACTS=0
        shift
        ;;
      *) die "unknown option for up: $1 (see --help)" ;;
    esac
  done
  [[ "$KAFKA_BROKERS" =~ ^[1-9][0-9]*$ ]] || die "--kafka-brokers: a number from 1, not '$KAFKA_BROKERS'"
  if [[ "$MODE" == docker ]] && ((KAFKA_BROKERS != 1 && KAFKA_BROKERS != 3)); then
    die "with Docker, --kafka-brokers is 1 or 3 (docker-compose.kafka-cluster.yml)"
  fi
}

load_kong_config() {
  if [[ "$MODE" == docker ]]; then
    step kong-load --admin http://127.0.0.1:8001 --config "$KONG_CONFIG"
  else
    log "Kong does not run natively: $KONG_CONFIG is merged and validated, not served"
  fi
}

create_topics() {
  log "creating the topics the services declare"
  step topics --bootstrap "$(kafka_bootstrap)"
}

# Each service that declares database = "postgres": its database, role and DSN file.
databases() {
  if [[ "$MODE" == docker ]]; then
    local command
    command="$(printf '%q ' docker compose --project-directory "$ROOT" -f "$INFRA_COMPOSE")"
    step databases --state-dir "$STATE_DIR" --compose "$command" "$@"
  else
    step databases --state-dir "$STATE_DIR" "$@"
  fi
}

create_databases() {
  log "creating the databases the services declare"
  databases
}

# Compose's OpenBao: initialised, unsealed and set up through its published port by the
# bootstrap the native platform runs too (natively `start` runs it before the services).
bootstrap_openbao() {
  [[ "$MODE" == docker ]] || return 0
  log "setting up OpenBao: a policy, an AppRole and a secret path per service"
  local password
  password="$(sed -n 's/^POSTGRES_PASSWORD=//p' "$ROOT/.env")"
  POSTGRES_PASSWORD="$password" step openbao --state-dir "$STATE_DIR" \
    --url "http://127.0.0.1:${OPENBAO_PORT:-8200}"
}

start_services() {
  log "starting the services"
  if [[ "$MODE" == docker ]]; then
    step compose --out "$SERVICES_COMPOSE"
    # The images install the chassis built here (.wheels), served to pip on loopback.
    step with-wheels -- docker compose --project-directory "$ROOT" \
      -f "$INFRA_COMPOSE" -f "$SERVICES_COMPOSE" build
    compose up --detach --wait
  else
    step start --state-dir "$STATE_DIR"
  fi
}

wait_for_services() {
  log "waiting until every service is passing in Consul"
  step wait --consul "$(consul_addr)" --timeout 180
}

print_access_points() {
  log "the platform is up"
  if [[ "$MODE" == docker ]]; then
    step addresses --state-dir "$STATE_DIR" --docker
  else
    step addresses --state-dir "$STATE_DIR" --kong-config "${KONG_CONFIG#"$ROOT"/}"
    echo "  Logs: ./deploy-all.sh logs [service]"
  fi
  step status --consul "$(consul_addr)"
}

# ----------------------------------------------------------------- commands

# The gate between the services' event contracts (platform_deploy/contracts.py).
check_contracts() {
  log "checking the services' event contracts"
  step contracts \
    || die "the event contracts do not hold (above): not starting; ./deploy-all.sh up --no-contracts starts anyway"
}

cmd_up() {
  parse_up_options "$@"
  check_prerequisites
  if [[ "$MODE" == docker ]]; then
    check_images
  fi
  ensure_venv
  if ((CONTRACTS)); then
    check_contracts
  fi
  if [[ "$MODE" == docker ]]; then
    ensure_env_file
  else
    build_servers
  fi
  build_kong_config
  start_infrastructure
  load_kong_config
  create_topics
  create_databases
  bootstrap_openbao
  start_services
  wait_for_services
  print_access_points
}

cmd_down() {
  if [[ "$MODE" == docker ]]; then
    compose down
    rm -f "$KAFKA_CLUSTER_MARK"
    return
  fi
  if [[ ! -x "$PY" ]]; then
    log "nothing to stop"
    return
  fi
  step stop --state-dir "$STATE_DIR"
  native down --state-dir "$STATE_DIR/infra"
}

cmd_status() {
  if [[ "$MODE" == docker ]]; then
    compose ps
  elif ! native status --state-dir "$STATE_DIR/infra"; then
    die "the native infrastructure is not (wholly) running or Kafka is not in sync (above): ./deploy-all.sh up"
  fi
  local healthy=0
  step status --consul "$(consul_addr)" || healthy=$?
  databases --report || healthy=$?
  step alerts --alertmanager "$(alertmanager_url)"
  return "$healthy"
}

cmd_logs() {
  local service="${1:-}"
  if [[ "$service" == openbao ]]; then  # its audit log: which service read which path
    if [[ "$MODE" == docker ]]; then
      compose exec -T openbao cat /openbao/logs/audit.log | step openbao-audit --file -
    else
      step openbao-audit --file "$STATE_DIR/infra/openbao/audit.log"
    fi
    return
  fi
  if [[ "$MODE" == docker ]]; then
    compose logs --tail 200 ${service:+"$service"}
    return
  fi
  local logs="$STATE_DIR/logs"
  [[ -d "$logs" ]] || die "no logs yet in $logs"
  if [[ -n "$service" ]]; then
    [[ -f "$logs/$service.log" ]] || die "no log for '$service' in $logs"
    tail -n 200 "$logs/$service.log"
  else
    tail -n 50 "$logs"/*.log
  fi
}

cmd_new() {
  [[ $# -ge 1 ]] || die "usage: ./deploy-all.sh new <service-name> [key=value ...]"
  local name="$1"
  shift
  ensure_venv
  step new "$name" "$@"
  log "$SERVICES_DIR/$name is ready; ./deploy-all.sh up starts it with the others"
}

cmd_contracts() {
  ensure_venv
  step contracts "$@"
}

main() {
  while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
      --native) MODE=native ;;
      --no-contracts) CONTRACTS=0 ;;
      --docker) MODE=docker ;;
      --k8s) shift; exec "$ROOT/infrastructure/kubernetes/deploy.sh" "$@" ;;
      --help) usage; return 0 ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
    shift
  done
  local command="${1:-up}"
  if [[ $# -gt 0 ]]; then
    shift
  fi
  detect_mode
  case "$command" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    new) cmd_new "$@" ;;
    contracts) cmd_contracts "$@" ;;
    help | -h) usage ;;
    *) usage >&2; die "unknown command '$command'" ;;
  esac
}

main "$@"
