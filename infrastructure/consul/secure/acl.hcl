# Consul ACLs: every request needs a token, a client gets only what its
# policy allows. Off by default on the local platform; switched on by
# docker-compose.secure.yml (Compose) or Consul(acl=True) (native), which both
# load this file after consul.hcl. It sits in a subdirectory so that
# `-config-dir=infrastructure/consul` does not load it.
#
# After the first start, make the management token once and keep it outside
# the repository:
#   docker compose exec consul consul acl bootstrap
# then give each client its own token (services: service:write on their own
# name; Prometheus: service:read and node:read) through CONSUL_HTTP_TOKEN.
# No token belongs in this file.

acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}
