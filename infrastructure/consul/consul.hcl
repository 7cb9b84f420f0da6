# Consul for the shared platform: one server that elects itself leader.
# Checked with `consul validate infrastructure/consul/`.
# In Docker this directory is mounted at /consul/config (see
# docker-compose.infrastructure.yml); command-line flags such as -data-dir
# take precedence over the values below. The native platform runs this same
# file with a second -config-file that sets only loopback addresses, free
# ports and a data directory (infrastructure/native/platform_native/configs.py).

datacenter           = "dc1"
data_dir             = "/consul/data"
server               = true
bootstrap_expect     = 1
disable_update_check = true
log_level            = "INFO"

# Listen on every interface inside the container; the compose file publishes
# the ports on 127.0.0.1 only.
client_addr = "0.0.0.0"

# Cluster traffic (Serf, server RPC) on the private address that has the
# default route: the container's one interface in Compose. Without it Consul
# refuses any host with several private addresses, as a Docker bridge adds
# ("Multiple private IPv4 addresses found").
bind_addr = "{{ GetPrivateIP }}"

# Raft timing for a server that has the machine to itself (Consul's advice for
# production); the default (5) is for slow shared machines and makes a single
# server wait ~10 s for its own election instead of ~2 s.
performance {
  raft_multiplier = 1
}

ports {
  http     = 8500
  dns      = 8600
  grpc     = 8502
  grpc_tls = -1
}

ui_config {
  enabled = true
}

dns_config {
  # <service>.service.consul answers with healthy instances only, so Kong
  # never routes to an instance whose check is failing.
  only_passing = true
  # Answers through Kong's SRV lookups stay small; truncate rather than drop.
  enable_truncate = true
}

# /v1/agent/metrics?format=prometheus needs a retention time to be enabled.
telemetry {
  prometheus_retention_time = "60s"
  disable_hostname          = true
}

# ACLs are off on the local development platform; secure/acl.hcl switches
# them on (default deny) and says how to make the tokens. Each client gets its
# token through the CONSUL_HTTP_TOKEN environment variable (an .env file that
# is never committed). No token belongs in this file.
