//! Sessions in a Durable Object's SQLite, as in the seed article: a table
//! with indexes on user and expiry.
//!
//! - `POST /sessions` `{"user_id": "...", "data": {...}, "ttl_secs": 3600}`
//!   creates one;
//! - `GET /sessions/:id` reads one (404 once expired);
//! - `GET /sessions?user=U` lists a user's active sessions;
//! - `POST /sessions/expire` deletes every expired session.
//!
//! The worker forwards each request to the store with `stub.fetch`; the
//! store routes it with its own `Router`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use verge::{Env, Error, Request, Response, Result, Router, SqlStorage, State};

#[derive(Serialize, Deserialize)]
struct Session {
    id: String,
    user_id: String,
    data: Option<String>,
    expires_at: i64,
    created_at: i64,
}

#[derive(Deserialize)]
struct NewSession {
    user_id: String,
    #[serde(default)]
    data: serde_json::Value,
    ttl_secs: Option<i64>,
}

/// Every session, in one object's database.
pub struct SessionStore {
    sql: SqlStorage,
    env: Env,
}

#[verge::durable_object]
impl SessionStore {
    fn new(state: State, env: Env) -> Result<Self> {
        let sql = state.storage().sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS sessions (
               id TEXT PRIMARY KEY,
               user_id TEXT NOT NULL,
               data TEXT,
               expires_at INTEGER NOT NULL,
               created_at INTEGER NOT NULL DEFAULT (unixepoch())
             );
             CREATE INDEX IF NOT EXISTS idx_sessions_user ON sessions(user_id);
             CREATE INDEX IF NOT EXISTS idx_sessions_expires ON sessions(expires_at);",
            (),
        )?;
        Ok(Self { sql, env })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        let sql = self.sql;
        Router::with_data(sql)
            .post("/sessions", |req, ctx| create(&ctx.data, &req))
            .get("/sessions", |req, ctx| {
                let user = req
                    .query_param("user")
                    .ok_or_else(|| Error::BadRequest("pass ?user=ID".into()))?;
                let sessions: Vec<Session> = ctx
                    .data
                    .exec(
                        "SELECT * FROM sessions WHERE user_id = ? AND expires_at > ? ORDER BY created_at",
                        (user, now()),
                    )?
                    .to_array()?;
                Response::json(&json!({ "sessions": sessions }))
            })
            .post("/sessions/expire", |_, ctx| {
                let deleted = ctx.data.exec("DELETE FROM sessions WHERE expires_at <= ?", (now(),))?.rows_written();
                Response::json(&json!({ "deleted": deleted }))
            })
            .get("/sessions/:id", |_, ctx| {
                let id = ctx.param("id").unwrap_or_default();
                let found: Vec<Session> = ctx
                    .data
                    .exec("SELECT * FROM sessions WHERE id = ? AND expires_at > ?", (id, now()))?
                    .to_array()?;
                match found.first() {
                    Some(session) => Response::json(session),
                    None => Ok(Response::error("no such session", 404)),
                }
            })
            .run(req, self.env)
    }
}

fn create(sql: &SqlStorage, req: &Request) -> Result<Response> {
    let new: NewSession = req.json()?;
    if new.user_id.is_empty() {
        return Err(Error::BadRequest("user_id must not be empty".into()));
    }
    let expires_at = now() + new.ttl_secs.unwrap_or(3600);
    let data = (!new.data.is_null()).then(|| new.data.to_string());
    let session: Session = sql
        .exec(
            "INSERT INTO sessions (id, user_id, data, expires_at)
             VALUES (lower(hex(randomblob(16))), ?, ?, ?) RETURNING *",
            (new.user_id, data, expires_at),
        )?
        .one()?;
    Ok(Response::json(&session)?.with_status(201))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    env.durable_object("SESSIONS")?
        .get_by_name("default")?
        .fetch(req)
}
