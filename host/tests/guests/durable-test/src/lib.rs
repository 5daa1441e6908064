//! Durable Objects for the host's tests: a ledger that appends rows (and
//! can trap mid-write, run arbitrary SQL, or fill its database), and
//! pingers that call each other along a path (to make cycles), and alarms
//! that record each firing and fail on demand (to see retries). A ledger
//! also takes WebSockets: it echoes, broadcasts and filters by tag, each
//! answer prefixed with the VERSION var (to see a deploy take over).

use serde_json::json;
use verge::{
    AlarmInfo, Env, Error, Request, Response, Result, RouteContext, Router, SqlValue, State,
    WebSocket, WebSocketMessage,
};

/// Rows appended one per event.
pub struct Ledger {
    state: State,
    env: Env,
}

#[verge::durable_object]
impl Ledger {
    fn new(state: State, env: Env) -> Result<Self> {
        state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, value TEXT NOT NULL)",
            (),
        )?;
        Ok(Self { state, env })
    }

    /// Appends `value`; returns how many entries there are now.
    #[rpc]
    fn append(&mut self, value: String) -> Result<i64> {
        let sql = self.state.storage().sql();
        sql.exec("INSERT INTO entries (value) VALUES (?)", (value,))?;
        Ok(sql
            .exec("SELECT COUNT(*) AS n FROM entries", ())?
            .one::<Count>()?
            .n)
    }

    /// Every value, in order.
    #[rpc]
    fn entries(&self) -> Result<Vec<String>> {
        let rows = self
            .state
            .storage()
            .sql()
            .exec("SELECT value FROM entries ORDER BY seq", ())?;
        Ok(rows
            .raw()
            .iter()
            .filter_map(|row| match &row[0] {
                SqlValue::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect())
    }

    /// Accepts a WebSocket with the tags in `?tags=a,b`.
    fn fetch(&mut self, req: Request) -> Result<Response> {
        let ws = WebSocket::upgrade(&req)?;
        let tags = req.query_param("tags").unwrap_or_default();
        let tags: Vec<&str> = tags.split(',').filter(|t| !t.is_empty()).collect();
        self.state.accept_websocket(&ws, &tags)?;
        if let Some(note) = req.query_param("note") {
            ws.serialize_attachment(&note)?;
        }
        self.state.set_websocket_auto_response("ping", "pong");
        Ok(Response::websocket(&ws))
    }

    /// `all:<text>` goes to every socket, `tag:<tag>:<text>` to those
    /// tagged, `note` answers the socket's attachment, `count` the number
    /// of sockets, `close` closes with 4001, `send-then-fail` sends and
    /// fails, `flood` sends 1 MiB messages until the host refuses and
    /// `flooded` says how many it took; anything else is echoed.
    fn websocket_message(&mut self, ws: WebSocket, message: WebSocketMessage) -> Result<()> {
        let WebSocketMessage::Text(text) = message else {
            return ws.send_binary(b"binary");
        };
        let version = self.env.var("VERSION")?;
        if let Some(rest) = text.strip_prefix("all:") {
            for socket in self.state.get_websockets(None) {
                socket.send_text(&format!("{version}:{rest}"))?;
            }
        } else if let Some(rest) = text.strip_prefix("tag:") {
            let (tag, rest) = rest.split_once(':').unwrap_or((rest, ""));
            for socket in self.state.get_websockets(Some(tag)) {
                socket.send_text(&format!("{version}:{rest}"))?;
            }
        } else if text == "note" {
            let note: Option<String> = ws.deserialize_attachment()?;
            ws.send_text(&format!("{version}:note={}", note.unwrap_or_default()))?;
        } else if text == "count" {
            let count = self.state.get_websockets(None).len();
            ws.send_text(&format!("{version}:count={count}"))?;
        } else if text == "close" {
            ws.close(4001, "asked to")?;
        } else if text == "flood" {
            let chunk = "x".repeat(1 << 20);
            let mut sent = 0;
            while ws.send_text(&chunk).is_ok() {
                sent += 1;
            }
            self.state.storage().put("flooded", &sent)?;
        } else if text == "flooded" {
            let sent: u32 = self.state.storage().get("flooded")?.unwrap_or(0);
            ws.send_text(&format!("{version}:flooded={sent}"))?;
        } else if text == "send-then-fail" {
            ws.send_text(&format!("{version}:sent by a failed event"))?;
            return Err(Error::msg("failing after a send"));
        } else {
            ws.send_text(&format!("{version}:{text}"))?;
        }
        Ok(())
    }

    /// Records closes, for the test to read through `fired`.
    fn websocket_close(
        &mut self,
        _ws: WebSocket,
        code: u16,
        reason: String,
        clean: bool,
    ) -> Result<()> {
        self.state.storage().put(
            &format!("closed:{}", now_ms()),
            &json!({ "code": code, "reason": reason, "clean": clean }),
        )
    }

    /// Records errors (an oversized message).
    fn websocket_error(&mut self, _ws: WebSocket, error: String) -> Result<()> {
        self.state
            .storage()
            .put(&format!("error:{}", now_ms()), &error)
    }

    /// What websocket_close and websocket_error recorded.
    #[rpc]
    fn socket_log(&self) -> Result<Vec<serde_json::Value>> {
        let storage = self.state.storage();
        let mut log = Vec::new();
        for prefix in ["closed:", "error:"] {
            log.extend(
                storage
                    .list::<serde_json::Value>(verge::ListOptions {
                        prefix: Some(prefix.into()),
                        ..Default::default()
                    })?
                    .into_iter()
                    .map(|(_, v)| v),
            );
        }
        Ok(log)
    }

    /// Sets alarm `name` (or the default alarm, for "") to fire in
    /// `in_ms`; its handler fails its first `fail_times` attempts, and sets
    /// it again (50 ms on) `repeat` times.
    #[rpc]
    fn schedule(&mut self, name: String, in_ms: i64, fail_times: u32, repeat: u32) -> Result<()> {
        let storage = self.state.storage();
        storage.put(&format!("fail:{name}"), &fail_times)?;
        storage.put(&format!("repeat:{name}"), &repeat)?;
        let at = now_ms() + in_ms;
        if name.is_empty() {
            storage.set_alarm(at)
        } else {
            storage.set_alarm_named(&name, at)
        }
    }

    /// Cancels alarm `name`.
    #[rpc]
    fn cancel(&mut self, name: String) -> Result<bool> {
        if name.is_empty() {
            self.state.storage().delete_alarm()
        } else {
            self.state.storage().delete_alarm_named(&name)
        }
    }

    /// The scheduled alarms.
    #[rpc]
    fn alarms(&self) -> Result<Vec<(String, i64)>> {
        self.state.storage().list_alarms()
    }

    /// Every attempt of every alarm: name, retry count, is-retry, when.
    #[rpc]
    fn fired(&self) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .state
            .storage()
            .list::<serde_json::Value>(verge::ListOptions {
                prefix: Some("fired:".into()),
                ..Default::default()
            })?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let storage = self.state.storage();
        let attempts = storage
            .list::<serde_json::Value>(verge::ListOptions {
                prefix: Some("fired:".into()),
                ..Default::default()
            })?
            .len();
        // A failing attempt's writes roll back, so only the attempt that
        // succeeds is recorded; its retry count tells how many failed.
        let fail_times: u32 = storage.get(&format!("fail:{}", info.name))?.unwrap_or(0);
        if info.retry_count < fail_times {
            verge::warn!(
                "alarm {:?} failing on purpose (attempt {})",
                info.name,
                info.retry_count + 1
            );
            return Err(Error::msg("failing on purpose"));
        }
        storage.put(
            &format!("fired:{attempts:04}"),
            &json!({
                "name": info.name,
                "retry_count": info.retry_count,
                "is_retry": info.is_retry,
                "scheduled": info.scheduled,
                "at": now_ms(),
            }),
        )?;
        let repeat_key = format!("repeat:{}", info.name);
        let repeat: u32 = storage.get(&repeat_key)?.unwrap_or(0);
        if repeat > 0 {
            storage.put(&repeat_key, &(repeat - 1))?;
            storage.set_alarm_named(&info.name, now_ms() + 50)?;
        }
        Ok(())
    }

    /// Writes, then panics: the write must not survive.
    #[rpc]
    fn append_then_trap(&mut self, value: String) -> Result<i64> {
        self.state
            .storage()
            .sql()
            .exec("INSERT INTO entries (value) VALUES (?)", (value,))?;
        panic!("trapping after a write");
    }

    /// Writes, then returns an error: the write must not survive either.
    #[rpc]
    fn append_then_fail(&mut self, value: String) -> Result<i64> {
        self.state
            .storage()
            .sql()
            .exec("INSERT INTO entries (value) VALUES (?)", (value,))?;
        Err(Error::msg("failing after a write"))
    }

    /// Runs guest SQL; answers with the error's kind and message, if any.
    #[rpc]
    fn sql(&self, query: String) -> Result<serde_json::Value> {
        Ok(match self.state.storage().sql().exec(&query, ()) {
            Ok(cursor) => json!({ "ok": true, "rows": cursor.raw().len() }),
            Err(Error::Sql(e)) => {
                json!({ "ok": false, "kind": format!("{:?}", e.kind), "message": e.message })
            }
            Err(other) => return Err(other),
        })
    }

    /// Writes blobs until the database is full; answers with the error.
    #[rpc]
    fn fill(&mut self) -> Result<String> {
        let sql = self.state.storage().sql();
        for _ in 0..64 {
            if let Err(e) = sql.exec(
                "INSERT INTO entries (value) VALUES (hex(zeroblob(100000)))",
                (),
            ) {
                return Ok(e.to_string());
            }
        }
        Ok("never filled".into())
    }

    /// Identity, KV and transaction behavior in one answer.
    #[rpc]
    fn describe(&mut self) -> Result<serde_json::Value> {
        let storage = self.state.storage();
        storage.put("kv-key", &json!({ "nested": [1, 2, 3] }))?;
        let kept = storage.transaction_sync(|| storage.put("kept", &true));
        let discarded: Result<()> = storage.transaction_sync(|| {
            storage.put("discarded", &true)?;
            Err(Error::msg("roll back"))
        });
        Ok(json!({
            "id": self.state.id(),
            "name": self.state.name(),
            "version": self.env.var("VERSION")?,
            "kv": storage.get::<serde_json::Value>("kv-key")?,
            "kept": kept.is_ok() && storage.get::<bool>("kept")?.is_some(),
            "discarded_rolled_back": discarded.is_err() && storage.get::<bool>("discarded")?.is_none(),
            "keys": storage.list::<serde_json::Value>(verge::ListOptions::default())?.len(),
        }))
    }
}

#[derive(serde::Deserialize)]
struct Count {
    n: i64,
}

/// Calls the next pinger on its path, to build call chains.
pub struct Pinger {
    env: Env,
}

#[verge::durable_object]
impl Pinger {
    fn new(_state: State, env: Env) -> Self {
        Self { env }
    }

    /// Waits `wait_ms`, then calls the first pinger in `path` with the
    /// rest of it.
    #[rpc]
    fn hop(&mut self, path: Vec<String>, wait_ms: u64) -> Result<String> {
        let Some((next, rest)) = path.split_first() else {
            return Ok("done".into());
        };
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let pinger = self
            .env
            .durable_object("PINGER")?
            .get_by_name(next)?
            .typed::<Pinger>();
        Ok(format!("{next}>{}", pinger.hop(rest.to_vec(), wait_ms)?))
    }
}

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .post("/ledger/:name/append", |req, ctx| {
            answer(ledger(&ctx)?.append(value(&req)))
        })
        .get("/ledger/:name/entries", |_, ctx| {
            Response::json(&ledger(&ctx)?.entries()?)
        })
        .post("/ledger/:name/trap", |req, ctx| {
            answer(ledger(&ctx)?.append_then_trap(value(&req)))
        })
        .post("/ledger/:name/fail", |req, ctx| {
            answer(ledger(&ctx)?.append_then_fail(value(&req)))
        })
        .post("/ledger/:name/sql", |req, ctx| {
            Response::json(&ledger(&ctx)?.sql(req.text()?.to_owned())?)
        })
        .post("/ledger/:name/fill", |_, ctx| answer(ledger(&ctx)?.fill()))
        .post("/ledger/:name/schedule", |req, ctx| {
            let number = |name: &str| req.query_param(name).and_then(|v| v.parse().ok());
            let (in_ms, fail, repeat) = (
                number("in_ms").unwrap_or(0),
                number("fail").unwrap_or(0) as u32,
                number("repeat").unwrap_or(0) as u32,
            );
            answer(ledger(&ctx)?.schedule(value(&req), in_ms, fail, repeat))
        })
        .post("/ledger/:name/cancel", |req, ctx| {
            answer(ledger(&ctx)?.cancel(value(&req)))
        })
        .get("/ledger/:name/alarms", |_, ctx| {
            answer(ledger(&ctx)?.alarms())
        })
        .get("/ledger/:name/fired", |_, ctx| {
            answer(ledger(&ctx)?.fired())
        })
        .get("/ledger/:name/socket-log", |_, ctx| {
            answer(ledger(&ctx)?.socket_log())
        })
        .get("/ledger/:name/ws", |req, ctx| {
            let name = ctx.param("name").unwrap_or_default();
            ctx.env
                .durable_object("LEDGER")?
                .get_by_name(name)?
                .fetch(req)
        })
        .get("/ledger/:name/describe", |_, ctx| {
            answer(ledger(&ctx)?.describe())
        })
        .get("/ping/:first", |req, ctx| {
            let path: Vec<String> = req
                .query_param("then")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let wait_ms = req
                .query_param("wait")
                .and_then(|w| w.parse().ok())
                .unwrap_or(0);
            let first = ctx
                .env
                .durable_object("PINGER")?
                .get_by_name(ctx.param("first").unwrap_or_default())?;
            answer(first.typed::<Pinger>().hop(path, wait_ms))
        })
        .get("/id", |req, ctx| {
            let text = req.query_param("s").unwrap_or_default();
            answer(
                ctx.env
                    .durable_object("LEDGER")?
                    .id_from_string(&text)
                    .map(|id| id.to_string()),
            )
        })
        .run(req, env)
}

fn now_ms() -> i64 {
    verge::ScheduledTime::from(std::time::SystemTime::now()).as_millis()
}

fn ledger(ctx: &RouteContext) -> Result<LedgerClient> {
    let name = ctx.param("name").unwrap_or_default();
    Ok(ctx
        .env
        .durable_object("LEDGER")?
        .get_by_name(name)?
        .typed::<Ledger>())
}

fn value(req: &Request) -> String {
    req.query_param("value").unwrap_or_default()
}

/// A result as JSON: 200 with the value, or 500 with the error text.
fn answer<T: serde::Serialize>(result: Result<T>) -> Result<Response> {
    match result {
        Ok(value) => Response::json(&json!({ "ok": value })),
        Err(error) => Ok(Response::json(&json!({ "error": error.to_string() }))?.with_status(500)),
    }
}
