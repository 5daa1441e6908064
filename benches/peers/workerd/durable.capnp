# workerd serving durable.js with SQLite-backed Durable Objects on local
# disk. The harness overrides the socket address (--socket-addr) and the
# storage directory (--directory-path storage=DIR).
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .durable),
    (name = "storage", disk = (path = "/tmp/verge-bench-workerd-storage", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8080", http = (), service = "main") ],
);

const durable :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "durable.js") ],
  compatibilityDate = "2024-09-01",
  durableObjectNamespaces = [
    (className = "Inventory", uniqueKey = "verge-bench-inventory", enableSql = true),
    (className = "RateLimiter", uniqueKey = "verge-bench-ratelimiter", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "storage"),
  bindings = [
    (name = "INVENTORY", durableObjectNamespace = "Inventory"),
    (name = "RATE_LIMITER", durableObjectNamespace = "RateLimiter"),
  ],
);
