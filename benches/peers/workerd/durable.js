// The Durable Object benches, for workerd: the inventory counter's reserve
// (one SQLite-backed object, a durable write per request) and the rate
// limiter (a new object per key).
import { DurableObject } from "cloudflare:workers";

export class Inventory extends DurableObject {
  async fetch(request) {
    const url = new URL(request.url);
    const storage = this.ctx.storage;
    if (url.pathname.endsWith("/restock")) {
      const quantity = Number(url.searchParams.get("quantity"));
      const stock = ((await storage.get("stock")) || 0) + quantity;
      await storage.put("stock", stock);
      return Response.json({ stock });
    }
    if (url.pathname.endsWith("/reserve")) {
      const stock = (await storage.get("stock")) || 0;
      if (stock <= 0) {
        return Response.json({ success: false, remaining: 0 }, { status: 409 });
      }
      await storage.put("stock", stock - 1);
      return Response.json({ success: true, remaining: stock - 1 });
    }
    return Response.json({ stock: (await storage.get("stock")) || 0 });
  }
}

export class RateLimiter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS requests (timestamp INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS idx_requests_ts ON requests(timestamp);
    `);
  }

  async fetch() {
    const sql = this.ctx.storage.sql;
    const now = Date.now();
    sql.exec("DELETE FROM requests WHERE timestamp < ?", now - 60000);
    const count = sql.exec("SELECT COUNT(*) AS cnt FROM requests").one().cnt;
    if (count >= 100) {
      return new Response("Rate limit exceeded", { status: 429, headers: { "x-ratelimit-remaining": "0" } });
    }
    sql.exec("INSERT INTO requests (timestamp) VALUES (?)", now);
    return new Response("OK", { headers: { "x-ratelimit-remaining": String(100 - count - 1) } });
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const parts = url.pathname.split("/").filter(Boolean);
    if (parts[0] === "inventory") {
      return env.INVENTORY.get(env.INVENTORY.idFromName(parts[1])).fetch(request);
    }
    if (parts[0] === "limited") {
      const key = parts[1] || request.headers.get("x-api-key") || "anonymous";
      return env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(key)).fetch(request);
    }
    return new Response("Not Found", { status: 404 });
  },
};
