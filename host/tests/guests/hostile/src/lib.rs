//! A guest written to attack its host, for `host/tests/hostile*.rs`: it
//! loops, sleeps, hoards memory, forges log lines and HTTP framing, fetches
//! the host's own listeners and private addresses, bounces requests
//! between hosts, runs SQL that never ends or returns gigabytes, and names
//! R2 bodies it never handed off.
//!
//! The tests upload it under several names, each with routes of its own,
//! so the first segment of the path is ignored: `/<anything>/<action>`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;
use verge::{Env, Error, FetchError, Request, Response, Result, SqlValue, State, Stub};

/// The text a forged log line starts with.
const FORGED: &str = "2026-01-01T00:00:00Z  INFO forged: admin login";

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    let path = req.path().to_owned();
    let action: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    let number = |name: &str, default: u64| {
        req.query_param(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    match action.as_slice() {
        ["ok"] => Ok(Response::text("ok")),
        ["loop"] => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        ["sleep"] => {
            std::thread::sleep(Duration::from_millis(number("ms", 5000)));
            Ok(Response::text("slept"))
        }
        ["hold"] => hold(number("mb", 200), number("ms", 2000)),
        ["log"] => {
            // A newline meant to start a line of the host's own log.
            verge::info!("x\n{FORGED}");
            println!("y\n{FORGED} (stdout)");
            // One line of 40 MiB, without a copy in format!.
            let long = "L".repeat(40 << 20);
            verge::log::log(verge::log::Level::Info, &long);
            Ok(Response::text("logged"))
        }
        ["log-flood"] => {
            let line = "F".repeat(number("bytes", 1024) as usize);
            for _ in 0..number("lines", 10_000) {
                verge::log::log(verge::log::Level::Info, &line);
            }
            Ok(Response::text("flooded"))
        }
        ["panic"] => panic!("the hostile guest panics on purpose"),
        ["frame"] => frame(req.query_param("variant").as_deref()),
        ["fetch"] => fetch_for_client(&req),
        ["peer"] => bounce(&req, &env),
        ["obj", name, "sql"] => {
            // The object's report, or why the call failed (an event whose
            // write SQLite rolled back cannot commit), with the call's time.
            let query = req.text()?.to_owned();
            let started = Instant::now();
            let outcome = target(&env, name)?.typed::<Target>().sql(query);
            let call_ms = started.elapsed().as_millis() as u64;
            Response::json(&match outcome {
                Ok(report) => json!({ "report": report, "call_ms": call_ms }),
                Err(e) => json!({ "call_error": e.to_string(), "call_ms": call_ms }),
            })
        }
        ["obj", name, "runs"] => Response::json(&target(&env, name)?.typed::<Target>().runs()?),
        ["obj", name, "slow"] => target(&env, name)?.fetch(req),
        ["r2-forge"] => r2_forge(&req, &env),
        ["r2-hoard"] => {
            // Opens `?n=` bodies of `?key=` and keeps them all.
            let (bucket, key) = (
                env.r2("BUCKET")?,
                req.query_param("key").unwrap_or_default(),
            );
            let mut held = Vec::new();
            for _ in 0..number("n", 100) {
                match bucket.get(key.as_str()).execute() {
                    Ok(object) => held.push(object),
                    Err(e) => return Ok(Response::error(e.to_string(), 429)),
                }
            }
            Ok(Response::text(format!("holding {}", held.len())))
        }
        _ => Ok(Response::not_found()),
    }
}

/// Names `?token=` as the response's R2 body without having handed any
/// body off; with `?key=`, while holding that object's body from the
/// bucket bound as `BUCKET` (which it did not hand off either).
fn r2_forge(req: &Request, env: &Env) -> Result<Response> {
    let _held = match req.query_param("key") {
        Some(key) => env.r2("BUCKET")?.get(key).execute()?,
        None => None,
    };
    let token = req.query_param("token").unwrap_or_default();
    Response::text("forged").with_header("verge-r2-body", &token)
}

/// Takes `mb` MiB of memory at once, touches every page, holds it for `ms`.
fn hold(mb: u64, ms: u64) -> Result<Response> {
    let mut hoard = vec![0u8; (mb as usize) << 20];
    for i in (0..hoard.len()).step_by(4096) {
        hoard[i] = 1;
    }
    std::thread::sleep(Duration::from_millis(ms));
    let pages: u64 = hoard.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    Ok(Response::text(format!("held {pages} pages")))
}

/// A body holding a whole forged HTTP response, with framing headers that
/// would make a client on a kept-alive connection read it as the answer to
/// its next request.
fn frame(variant: Option<&str>) -> Result<Response> {
    let forged = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nFORGED";
    let response = match variant {
        Some("te") => Response::text(format!("0\r\n\r\n{forged}"))
            .with_header("transfer-encoding", "chunked")?,
        _ => {
            Response::text(format!("GENUINE\r\n\r\n{forged}")).with_header("content-length", "0")?
        }
    };
    response
        .with_header("connection", "keep-alive")?
        .with_header("x-frame", "genuine")
}

/// Fetches `?url=` (with credentials when `?creds=1`); a denied fetch is a
/// 403, any other failure a 502, both with the error as JSON.
fn fetch_for_client(req: &Request) -> Result<Response> {
    let Some(url) = req.query_param("url") else {
        return Err(Error::BadRequest("pass ?url=".into()));
    };
    let mut upstream = Request::get(&url).map_err(|e| Error::BadRequest(e.to_string()))?;
    if req.query_param("creds").as_deref() == Some("1") {
        upstream = upstream
            .with_header("authorization", "Bearer secret-token")?
            .with_header("cookie", "session=secret")?
            .with_header("x-custom", "kept")?;
    }
    match verge::fetch(upstream) {
        Ok(response) => {
            Ok(Response::bytes(response.body().to_vec()).with_status(response.status()))
        }
        Err(Error::Fetch(error)) => {
            let (status, kind) = match &error {
                FetchError::Denied(_) => (403, "denied"),
                FetchError::Timeout => (504, "timeout"),
                FetchError::TooManySubrequests(_) => (502, "too-many-subrequests"),
                _ => (502, "other"),
            };
            Ok(
                Response::json(&json!({ "error": error.to_string(), "kind": kind }))?
                    .with_status(status),
            )
        }
        Err(other) => Err(other),
    }
}

/// Fetches the `PEER` var's URL and answers with what came back, its
/// status included, after a line naming how many Verge hosts this request
/// had passed through: two hosts whose PEERs point at each other bounce a
/// request until the loop guard stops it.
fn bounce(req: &Request, env: &Env) -> Result<Response> {
    let hops = req
        .headers()
        .get_all("cdn-loop")
        .flat_map(|v| v.split(','))
        .filter(|entry| entry.split(';').next().map(str::trim) == Some("verge"))
        .count();
    let peer = env.var("PEER")?;
    match verge::fetch(Request::get(&peer)?) {
        Ok(upstream) => {
            let mut body = format!("hop {hops}\n").into_bytes();
            body.extend_from_slice(upstream.body());
            Ok(Response::bytes(body).with_status(upstream.status()))
        }
        Err(e) => Ok(Response::text(format!("hop {hops}\n{e}")).with_status(502)),
    }
}

fn target(env: &Env, name: &str) -> Result<Stub> {
    env.durable_object("TARGET")?.get_by_name(name)
}

/// An object that runs whatever SQL it is given, and a slow `fetch` that
/// counts how many times it ran.
pub struct Target {
    state: State,
}

#[verge::durable_object]
impl Target {
    fn new(state: State, _env: Env) -> Result<Self> {
        state
            .storage()
            .sql()
            .exec("CREATE TABLE IF NOT EXISTS runs (at INTEGER)", ())?;
        Ok(Self { state })
    }

    /// Runs `query`; answers with its outcome and how long the call took.
    #[rpc]
    fn sql(&self, query: String) -> Result<serde_json::Value> {
        let started = Instant::now();
        let outcome = self.state.storage().sql().exec(&query, ());
        let ms = started.elapsed().as_millis() as u64;
        Ok(match outcome {
            Ok(cursor) => {
                let first = cursor
                    .raw()
                    .first()
                    .and_then(|row| row.first())
                    .map(|v| match v {
                        SqlValue::Integer(n) => json!(n),
                        SqlValue::Text(t) => json!(t),
                        _ => json!(null),
                    });
                json!({ "ok": true, "rows": cursor.raw().len(), "first": first, "ms": ms })
            }
            Err(Error::Sql(e)) => json!({
                "ok": false, "kind": format!("{:?}", e.kind), "message": e.message, "ms": ms
            }),
            Err(other) => return Err(other),
        })
    }

    /// Spins `?ms=` (300 by default) of CPU, then counts the run.
    fn fetch(&mut self, req: Request) -> Result<Response> {
        let ms = req
            .query_param("ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let started = Instant::now();
        let mut x: u64 = 1;
        while started.elapsed() < Duration::from_millis(ms) {
            for i in 0..10_000u64 {
                x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
            }
        }
        let sql = self.state.storage().sql();
        sql.exec("INSERT INTO runs (at) VALUES (?)", (x as i64,))?;
        Ok(Response::text(format!(
            "ran, with {} bytes of body",
            req.bytes().len()
        )))
    }

    /// How many times `fetch` ran to the end.
    #[rpc]
    fn runs(&self) -> Result<i64> {
        let rows = self
            .state
            .storage()
            .sql()
            .exec("SELECT count(*) FROM runs", ())?;
        match rows.raw().first().and_then(|r| r.first()) {
            Some(SqlValue::Integer(n)) => Ok(*n),
            _ => Ok(0),
        }
    }
}
