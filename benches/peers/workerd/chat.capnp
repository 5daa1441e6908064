# workerd serving chat.js: the chat room on hibernatable WebSockets, its
# SQLite-backed objects on local disk. The harness overrides the socket
# address (--socket-addr) and the storage directory (--directory-path
# storage=DIR).
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .chat),
    (name = "storage", disk = (path = "/tmp/verge-bench-workerd-storage", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8080", http = (), service = "main") ],
);

const chat :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "chat.js") ],
  compatibilityDate = "2024-09-01",
  durableObjectNamespaces = [
    (className = "ChatRoom", uniqueKey = "verge-bench-chatroom", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "storage"),
  bindings = [ (name = "CHAT_ROOM", durableObjectNamespace = "ChatRoom") ],
);
