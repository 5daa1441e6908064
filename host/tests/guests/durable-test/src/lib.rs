//! Durable Objects for the host's tests: a ledger that appends rows (and
//! can trap mid-write, run arbitrary SQL, or fill its database), and
//! pingers that call each other along a path (to make cycles).

use serde_json::json;
use verge::{Env, Error, Request, Response, Result, RouteContext, Router, SqlValue, State};

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

    /// Calls the first pinger in `path` with the rest of it.
    #[rpc]
    fn hop(&mut self, path: Vec<String>) -> Result<String> {
        let Some((next, rest)) = path.split_first() else {
            return Ok("done".into());
        };
        let pinger = self
            .env
            .durable_object("PINGER")?
            .get_by_name(next)?
            .typed::<Pinger>();
        Ok(format!("{next}>{}", pinger.hop(rest.to_vec())?))
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
            let first = ctx
                .env
                .durable_object("PINGER")?
                .get_by_name(ctx.param("first").unwrap_or_default())?;
            answer(first.typed::<Pinger>().hop(path))
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
