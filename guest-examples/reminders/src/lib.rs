//! Reminders: one object per user schedules messages with named alarms
//! and delivers each, when due, to every socket the user has open.
//!
//! - `POST /reminders/<user>` with `{"message": "...", "in_ms": 60000}`
//!   schedules one and answers `{"id": 1, "at": <ms since epoch>}`.
//! - `GET /reminders/<user>/pending` lists the scheduled ones.
//! - `DELETE /reminders/<user>/<id>` cancels one.
//! - `GET /reminders/<user>` (a WebSocket upgrade) receives
//!   `{"type": "reminder", ...}` as they fall due.
//! - `GET /reminders/<user>/delivered` lists the ones that fired.
//!
//! Alarms fire whether or not the object is in memory, and after a host
//! restart; one that fell due while the host was down fires on start.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use verge::{AlarmInfo, Env, Method, Request, Response, Result, Router, State, WebSocket};

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .get("/reminders/:user", forward)
        .post("/reminders/:user", forward)
        .get("/reminders/:user/:what", forward)
        .delete("/reminders/:user/:what", forward)
        .run(req, env)
}

fn forward(req: Request, ctx: verge::RouteContext) -> Result<Response> {
    let user = ctx.param("user").unwrap_or_default();
    env_stub(&ctx.env, user)?.fetch(req)
}

fn env_stub(env: &Env, user: &str) -> Result<verge::Stub> {
    env.durable_object("REMINDERS")?.get_by_name(user)
}

/// One user's reminders.
pub struct Reminders {
    state: State,
}

#[derive(Deserialize)]
struct NewReminder {
    message: String,
    in_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Reminder {
    id: i64,
    message: String,
    at: i64,
    delivered_at: Option<i64>,
}

#[verge::durable_object]
impl Reminders {
    fn new(state: State, _env: Env) -> Result<Self> {
        state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS reminders (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 message TEXT NOT NULL,
                 at INTEGER NOT NULL,
                 delivered_at INTEGER
             )",
            (),
        )?;
        Ok(Self { state })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        let what = req.path().split('/').nth(3).unwrap_or_default().to_owned();
        match (req.method(), what.as_str()) {
            (Method::Get, "") => {
                let ws = WebSocket::upgrade(&req)?;
                self.state.accept_websocket(&ws, &[])?;
                ws.send_json(&json!({ "type": "pending", "reminders": self.pending()? }))?;
                Ok(Response::websocket(&ws))
            }
            (Method::Post, "") => {
                let new: NewReminder = req.json()?;
                let storage = self.state.storage();
                let at = verge::ScheduledTime::from(Duration::from_millis(new.in_ms)).as_millis();
                let id = storage
                    .sql()
                    .exec(
                        "INSERT INTO reminders (message, at) VALUES (?, ?) RETURNING id",
                        (new.message.as_str(), at),
                    )?
                    .one::<Id>()?
                    .id;
                storage.set_alarm_named(&alarm_name(id), at)?;
                Response::json(&json!({ "id": id, "at": at }))
            }
            (Method::Get, "pending") => Response::json(&self.pending()?),
            (Method::Get, "delivered") => {
                Response::json(&self.reminders("delivered_at IS NOT NULL")?)
            }
            (Method::Delete, id) => {
                let id: i64 = id
                    .parse()
                    .map_err(|_| verge::Error::BadRequest("not a reminder id".into()))?;
                let cancelled = self.state.storage().delete_alarm_named(&alarm_name(id))?;
                if cancelled {
                    self.state
                        .storage()
                        .sql()
                        .exec("DELETE FROM reminders WHERE id = ?", (id,))?;
                }
                Response::json(&json!({ "cancelled": cancelled }))
            }
            _ => Ok(Response::not_found()),
        }
    }

    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let Some(id) = info
            .name
            .strip_prefix("reminder:")
            .and_then(|id| id.parse::<i64>().ok())
        else {
            return Ok(());
        };
        let now = verge::ScheduledTime::from(std::time::SystemTime::now()).as_millis();
        let sql = self.state.storage().sql();
        let Some(reminder) = sql
            .exec("UPDATE reminders SET delivered_at = ? WHERE id = ? RETURNING id, message, at, delivered_at", (now, id))?
            .to_array::<Reminder>()?
            .pop()
        else {
            return Ok(());
        };
        let out =
            json!({ "type": "reminder", "reminder": reminder, "late_ms": now - info.scheduled });
        for socket in self.state.get_websockets(None) {
            let _ = socket.send_json(&out);
        }
        Ok(())
    }

    fn pending(&self) -> Result<Vec<Reminder>> {
        self.reminders("delivered_at IS NULL")
    }

    fn reminders(&self, filter: &str) -> Result<Vec<Reminder>> {
        self.state
            .storage()
            .sql()
            .exec(
                &format!("SELECT id, message, at, delivered_at FROM reminders WHERE {filter} ORDER BY at, id"),
                (),
            )?
            .to_array()
    }
}

#[derive(Deserialize)]
struct Id {
    id: i64,
}

fn alarm_name(id: i64) -> String {
    format!("reminder:{id}")
}
