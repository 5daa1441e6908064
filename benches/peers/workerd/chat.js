// The chat-room example (guest-examples/chat-room) as a Cloudflare Worker,
// for workerd: the same URLs and JSON, on the WebSocket Hibernation API.
//
// - `GET /chat/<room>?name=<name>` (a WebSocket upgrade) joins a room, one
//   ChatRoom object per room: the socket gets the last 50 messages, every
//   socket gets a join with who is online.
// - `GET /chat/<room>/online` lists who is in the room.
//
// The object keeps nothing in memory: messages are in SQL, each socket's
// name is in its tag and attachment, so workerd may evict it while the
// sockets stay open. `ping` is answered `pong` without waking it.
import { DurableObject } from "cloudflare:workers";

const HISTORY = 50;
const MAX_NAME = 32;
const MAX_MESSAGE = 4096;

export class ChatRoom extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS messages (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      sender TEXT NOT NULL,
      message TEXT NOT NULL,
      timestamp INTEGER NOT NULL
    )`);
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname.endsWith("/online")) {
      return Response.json({ online: this.online() });
    }
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("expected a WebSocket upgrade", { status: 426 });
    }
    const name = (url.searchParams.get("name") || "").trim();
    if (!name || name.length > MAX_NAME) {
      return new Response("pass ?name= (1 to 32 characters)", { status: 400 });
    }
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server, [`user:${name}`]);
    server.serializeAttachment({ name, joined: Date.now() });
    this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));

    const history = this.ctx.storage.sql
      .exec("SELECT sender, message, timestamp FROM messages ORDER BY id DESC LIMIT ?", HISTORY)
      .toArray()
      .reverse();
    server.send(JSON.stringify({ type: "history", data: history }));
    this.broadcast(JSON.stringify({ type: "join", name, online: this.online() }));
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    if (typeof message !== "string") {
      ws.close(4000, "send text");
      return;
    }
    let incoming;
    try {
      incoming = JSON.parse(message);
    } catch {
      incoming = null;
    }
    if (typeof incoming?.message !== "string") {
      ws.send(JSON.stringify({ type: "error", error: 'send {"message": "..."}' }));
      return;
    }
    if (incoming.message.length > MAX_MESSAGE) {
      ws.send(JSON.stringify({ type: "error", error: "message too long" }));
      return;
    }
    const sender = ws.deserializeAttachment().name;
    const timestamp = Date.now();
    const to = typeof incoming.to === "string" ? incoming.to : null;
    const out = JSON.stringify({
      type: "message",
      sender,
      message: incoming.message,
      timestamp,
      direct: to !== null,
    });
    if (to !== null) {
      // Tags find the recipient's sockets without a lookup table.
      for (const socket of this.ctx.getWebSockets(`user:${to}`)) {
        socket.send(out);
      }
      ws.send(out);
      return;
    }
    this.ctx.storage.sql.exec(
      "INSERT INTO messages (sender, message, timestamp) VALUES (?, ?, ?)",
      sender,
      incoming.message,
      timestamp,
    );
    this.broadcast(out);
  }

  async webSocketClose(ws) {
    const { name } = ws.deserializeAttachment();
    this.broadcast(JSON.stringify({ type: "leave", name, online: this.online() }));
  }

  // Sends `text` to every socket in the room.
  broadcast(text) {
    for (const socket of this.ctx.getWebSockets()) {
      // A socket closing meanwhile is no reason to fail the rest.
      try {
        socket.send(text);
      } catch {}
    }
  }

  // Who is here, from the sockets' tags.
  online() {
    const names = new Set();
    for (const socket of this.ctx.getWebSockets()) {
      for (const tag of this.ctx.getTags(socket)) {
        if (tag.startsWith("user:")) {
          names.add(tag.slice("user:".length));
        }
      }
    }
    return [...names].sort();
  }
}

export default {
  async fetch(request, env) {
    const parts = new URL(request.url).pathname.split("/").filter(Boolean);
    const known = parts.length === 2 || (parts.length === 3 && parts[2] === "online");
    if (parts[0] !== "chat" || !known) {
      return new Response("Not Found", { status: 404 });
    }
    const room = decodeURIComponent(parts[1]);
    if (!room || room.length > 64) {
      return new Response("a room name is 1 to 64 characters", { status: 400 });
    }
    return env.CHAT_ROOM.get(env.CHAT_ROOM.idFromName(room)).fetch(request);
  },
};
