//! The smallest useful worker: a JSON greeting, an echo, and a `[vars]` value.

use serde_json::json;
use verge::{Env, Method, Request, Response, Result};

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    match (req.method(), req.path()) {
        (Method::Get, "/hello") => Response::json(&json!({
            "message": env.var("GREETING")?,
            "path": req.path(),
        })),
        (_, "/hello/echo") => echo(&req),
        (Method::Get, "/hello/env") => Ok(Response::text(env.var("GREETING")?)),
        _ => Ok(Response::not_found()),
    }
}

/// Sends back what came in: method, query, headers and body.
fn echo(req: &Request) -> Result<Response> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .entries()
        .map(|(name, value)| (name.to_owned(), value.into()))
        .collect();
    Response::json(&json!({
        "method": req.method().as_str(),
        "query": req.url().query(),
        "headers": headers,
        "body": String::from_utf8_lossy(req.bytes()),
    }))
}
