-- prosody for the Parley comparison (bench/peers/start fills in PORT and DIR).
-- Loopback only, no TLS, logging off, the limits module's c2s rate removed (mod_limits not
-- loaded, and unlimited if it were). Clients log in with SASL ANONYMOUS (no accounts to create).
pidfile = "DIR/prosody.pid"
data_path = "DIR"
daemonize = false
log = { error = "DIR/prosody.err" }
c2s_ports = { PORT }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
network_backend = "epoll"
network_settings = { read_timeout = 3600, tcp_backlog = 4096 }
limits = { c2s = { rate = "1000mb/s", burst = "100s" } }
c2s_stanza_size_limit = 1048576
modules_enabled = { "saslauth", "disco", "ping" }
modules_disabled = { "s2s", "offline", "c2s_limits", "limits", "tls", "register", "bosh",
  "websocket", "roster", "saslauth_legacy", "carbons", "pep", "blocklist", "vcard", "csi_simple",
  "smacks", "mam" }
VirtualHost "bench.local"
  authentication = "anonymous"
  allow_anonymous_s2s = false
