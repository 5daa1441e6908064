//! The seed article's rate limiter: a sliding window of 100 requests a
//! minute per client, one Durable Object per client, the window in SQL.
//!
//! Each limit has a key: the path segment after `/limited/` when there is
//! one (a limit per resource), else the `x-api-key` header, else the
//! client's address (`x-real-ip`, which the host sets).

use std::time::{SystemTime, UNIX_EPOCH};

use verge::{Env, Request, Response, Result, State};

const WINDOW_MS: i64 = 60_000;
const MAX_REQUESTS: i64 = 100;

/// One client's recent requests.
pub struct RateLimiter {
    state: State,
}

#[verge::durable_object]
impl RateLimiter {
    fn new(state: State, _env: Env) -> Result<Self> {
        state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS requests (timestamp INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS idx_requests_ts ON requests(timestamp);",
            (),
        )?;
        Ok(Self { state })
    }

    fn fetch(&mut self, _req: Request) -> Result<Response> {
        let sql = self.state.storage().sql();
        let now = now_ms();
        sql.exec(
            "DELETE FROM requests WHERE timestamp < ?",
            (now - WINDOW_MS,),
        )?;
        let count: i64 = sql
            .exec("SELECT COUNT(*) AS cnt FROM requests", ())?
            .one::<Count>()?
            .cnt;
        if count >= MAX_REQUESTS {
            return Response::error("Rate limit exceeded", 429)
                .with_header("x-ratelimit-remaining", "0");
        }
        sql.exec("INSERT INTO requests (timestamp) VALUES (?)", (now,))?;
        Response::text("OK").with_header(
            "x-ratelimit-remaining",
            &(MAX_REQUESTS - count - 1).to_string(),
        )
    }
}

#[derive(serde::Deserialize)]
struct Count {
    cnt: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    let key = req
        .path()
        .strip_prefix("/limited/")
        .filter(|k| !k.is_empty())
        .or_else(|| req.header("x-api-key"))
        .or_else(|| req.header("x-real-ip"))
        .unwrap_or("anonymous")
        .to_owned();
    env.durable_object("RATE_LIMITER")?
        .get_by_name(&key)?
        .fetch(req)
}
