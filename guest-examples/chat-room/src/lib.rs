//! The seed article's chat room, on the hibernation API.
//!
//! - `GET /chat` is a page to pick a room and a name and chat.
//! - `GET /chat/<room>?name=<name>` (a WebSocket upgrade) joins a room: one
//!   `ChatRoom` object per room. The socket gets the last 50 messages at
//!   once, then every message sent in the room.
//! - `GET /chat/<room>/online` lists who is in the room.
//!
//! The object keeps nothing in memory: the messages are in SQL, each
//! socket's name is in its tag (`user:<name>`, for presence and direct
//! messages) and its attachment. So the object can be evicted between
//! messages while every socket stays connected; the next message wakes a
//! fresh instance that knows everything it needs.
//!
//! Clients send `{"message": "..."}`, optionally with `"to": "<name>"` for
//! a direct message, and receive `{"type": "history" | "message" | "join" |
//! "leave", ...}`. The text `ping` is answered `pong` by the host itself,
//! without waking the object.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use verge::{Env, Request, Response, Result, Router, State, WebSocket, WebSocketMessage};

const HISTORY: i64 = 50;
const MAX_NAME: usize = 32;
const MAX_MESSAGE: usize = 4096;

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .get("/chat", |_, _| Ok(Response::html(PAGE)))
        .get("/chat/:room", |req, ctx| {
            room(&ctx.env, ctx.param("room"))?.fetch(req)
        })
        .get("/chat/:room/online", |req, ctx| {
            room(&ctx.env, ctx.param("room"))?.fetch(req)
        })
        .run(req, env)
}

fn room(env: &Env, name: Option<&str>) -> Result<verge::Stub> {
    let name = name.unwrap_or_default();
    if name.is_empty() || name.len() > 64 {
        return Err(verge::Error::BadRequest(
            "a room name is 1 to 64 characters".into(),
        ));
    }
    env.durable_object("CHAT_ROOM")?.get_by_name(name)
}

/// One room.
pub struct ChatRoom {
    state: State,
}

/// A stored message, as history sends it.
#[derive(Serialize, Deserialize)]
struct Stored {
    sender: String,
    message: String,
    timestamp: i64,
}

/// What a client sends.
#[derive(Deserialize)]
struct Incoming {
    message: String,
    /// A direct message to this name only.
    to: Option<String>,
}

/// Kept with each socket across hibernation.
#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
    joined: i64,
}

#[verge::durable_object]
impl ChatRoom {
    fn new(state: State, _env: Env) -> Result<Self> {
        state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS messages (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 sender TEXT NOT NULL,
                 message TEXT NOT NULL,
                 timestamp INTEGER NOT NULL
             )",
            (),
        )?;
        Ok(Self { state })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        if req.path().ends_with("/online") {
            return Response::json(&json!({ "online": self.online()? }));
        }
        let ws = WebSocket::upgrade(&req)?;
        let name = req.query_param("name").unwrap_or_default();
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_NAME {
            return Ok(Response::error("pass ?name= (1 to 32 characters)", 400));
        }
        self.state
            .accept_websocket(&ws, &[&format!("user:{name}")])?;
        ws.serialize_attachment(&Member {
            name: name.to_owned(),
            joined: now_ms(),
        })?;
        self.state.set_websocket_auto_response("ping", "pong");

        let mut history: Vec<Stored> = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT sender, message, timestamp FROM messages ORDER BY id DESC LIMIT ?",
                (HISTORY,),
            )?
            .to_array()?;
        history.reverse();
        ws.send_json(&json!({ "type": "history", "data": history }))?;
        self.broadcast(&json!({ "type": "join", "name": name, "online": self.online()? }))?;
        Ok(Response::websocket(&ws))
    }

    fn websocket_message(&mut self, ws: WebSocket, message: WebSocketMessage) -> Result<()> {
        let WebSocketMessage::Text(text) = message else {
            return ws.close(4000, "send text");
        };
        let Ok(incoming) = serde_json::from_str::<Incoming>(&text) else {
            return ws
                .send_json(&json!({ "type": "error", "error": "send {\"message\": \"...\"}" }));
        };
        if incoming.message.len() > MAX_MESSAGE {
            return ws.send_json(&json!({ "type": "error", "error": "message too long" }));
        }
        let sender = self.member(&ws)?.name;
        let timestamp = now_ms();
        let out = json!({
            "type": "message",
            "sender": sender,
            "message": incoming.message,
            "timestamp": timestamp,
            "direct": incoming.to.is_some(),
        });
        match incoming.to {
            // Tags find the recipient's sockets without a lookup table.
            Some(to) => {
                let tag = format!("user:{to}");
                for socket in self.state.get_websockets(Some(&tag)) {
                    socket.send_json(&out)?;
                }
                ws.send_json(&out)?;
            }
            None => {
                self.state.storage().sql().exec(
                    "INSERT INTO messages (sender, message, timestamp) VALUES (?, ?, ?)",
                    (sender.as_str(), incoming.message.as_str(), timestamp),
                )?;
                self.broadcast(&out)?;
            }
        }
        Ok(())
    }

    fn websocket_close(
        &mut self,
        ws: WebSocket,
        _code: u16,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        let member = self.member(&ws)?;
        self.broadcast(&json!({ "type": "leave", "name": member.name, "online": self.online()? }))
    }

    fn member(&self, ws: &WebSocket) -> Result<Member> {
        ws.deserialize_attachment()?
            .ok_or_else(|| verge::Error::msg("a socket without its member attachment"))
    }

    /// Sends `value` to every socket in the room.
    fn broadcast(&self, value: &serde_json::Value) -> Result<()> {
        let text = value.to_string();
        for socket in self.state.get_websockets(None) {
            // A socket closing meanwhile is no reason to fail the rest.
            let _ = socket.send_text(&text);
        }
        Ok(())
    }

    /// Who is here, from the sockets' tags.
    fn online(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for socket in self.state.get_websockets(None) {
            for tag in self.state.get_tags(&socket)? {
                if let Some(name) = tag.strip_prefix("user:") {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const PAGE: &str = include_str!("page.html");
