# OpenBao in Compose (platform-owned): the same server the native platform runs
# (infrastructure/native/platform_native/servers/openbao.py writes its own copy of this
# with loopback addresses). Raft storage in the volume, no TLS inside the platform
# network (the published port is bound to 127.0.0.1), no UI, and the file audit device
# OpenBao only accepts from its configuration. ./deploy-all.sh initialises and unseals
# it and runs the one bootstrap (infrastructure/platform_deploy/openbao.py).
storage "raft" {
  path    = "/openbao/file"
  node_id = "openbao-1"
  # Raft's timing at production speed (the default, 5, waits 5-10 s to elect a lone node).
  performance_multiplier = 1
}
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}
api_addr     = "http://openbao:8200"
cluster_addr = "http://openbao:8201"
ui           = false
log_level    = "info"
# No disable_mlock: OpenBao has no mlock (openbao#363) and warns of the unknown field.
audit "file" "file" {
  description = "every request and answer, secrets HMAC'd: who read which path"
  options {
    file_path = "/openbao/logs/audit.log"
    mode      = "0600"
  }
}
