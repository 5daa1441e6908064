//! A feature-flag service on a KV namespace, the seed article's "KV for
//! configuration": each flag is one key holding its JSON, with who set it
//! and when in the key's metadata.
//!
//! - `PUT /flags/:name?by=WHO[&ttl=SECONDS]` with `{"enabled": true, "rollout": 25}`
//!   sets a flag; with `ttl` it is a temporary override that disappears
//!   on its own.
//! - `GET /flags/:name` reads it, `DELETE /flags/:name` removes it.
//! - `GET /flags/:name/check?user=ID` says whether the flag is on for that
//!   user: a stable hash of the user puts them in or out of the rollout.
//! - `GET /flags[?cursor=C]` lists flags, 100 at a time, with metadata.

use serde::{Deserialize, Serialize};
use verge::{Env, Error, KvError, KvStore, Request, Response, Result, RouteContext, Router};

const PREFIX: &str = "flag:";

#[derive(Debug, Serialize, Deserialize)]
struct Flag {
    enabled: bool,
    /// The percentage of users who get the flag, 0 to 100.
    #[serde(default = "everyone")]
    rollout: u8,
}

fn everyone() -> u8 {
    100
}

/// Who set a flag and when, kept beside it.
#[derive(Debug, Serialize, Deserialize)]
struct Changed {
    by: String,
    at: u64,
}

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .get("/flags", list)
        .get("/flags/:name", read)
        .put("/flags/:name", write)
        .delete("/flags/:name", remove)
        .get("/flags/:name/check", check)
        .run(req, env)
}

fn flags(ctx: &RouteContext) -> Result<KvStore> {
    ctx.env.kv("FLAGS")
}

fn key(ctx: &RouteContext) -> String {
    format!("{PREFIX}{}", ctx.param("name").unwrap_or_default())
}

fn read(_req: Request, ctx: RouteContext) -> Result<Response> {
    let (flag, changed) = flags(&ctx)?
        .get(&key(&ctx))
        .json_with_metadata::<Flag, Changed>()?;
    match flag {
        Some(flag) => Response::json(&serde_json::json!({ "flag": flag, "changed": changed })),
        None => Ok(Response::error("no such flag", 404)),
    }
}

fn write(req: Request, ctx: RouteContext) -> Result<Response> {
    let flag: Flag = req.json()?;
    if flag.rollout > 100 {
        return Err(Error::BadRequest(
            "rollout is a percentage, 0 to 100".into(),
        ));
    }
    let by = req.query_param("by").unwrap_or_else(|| "anonymous".into());
    let changed = Changed { by, at: now_secs() };
    let mut put = flags(&ctx)?
        .put_json(&key(&ctx), &flag)?
        .metadata(&changed)?;
    if let Some(ttl) = req.query_param("ttl") {
        let ttl = ttl
            .parse()
            .map_err(|_| Error::BadRequest(format!("ttl {ttl:?} is not a number of seconds")))?;
        put = put.expiration_ttl(ttl);
    }
    put.execute().map_err(refused_as_bad_request)?;
    Response::json(&serde_json::json!({ "flag": flag, "changed": changed }))
}

fn remove(_req: Request, ctx: RouteContext) -> Result<Response> {
    flags(&ctx)?
        .delete(&key(&ctx))
        .map_err(refused_as_bad_request)?;
    Ok(Response::empty().with_status(204))
}

fn check(req: Request, ctx: RouteContext) -> Result<Response> {
    let user = req
        .query_param("user")
        .ok_or_else(|| Error::BadRequest("give ?user=ID".into()))?;
    let flag = flags(&ctx)?.get(&key(&ctx)).json::<Flag>()?;
    let enabled = flag.is_some_and(|f| f.enabled && bucket(&user) < f.rollout);
    Response::json(&serde_json::json!({ "enabled": enabled }))
}

fn list(req: Request, ctx: RouteContext) -> Result<Response> {
    let mut listing = flags(&ctx)?.list().prefix(PREFIX).limit(100);
    if let Some(cursor) = req.query_param("cursor") {
        listing = listing.cursor(cursor);
    }
    let page = listing.execute().map_err(refused_as_bad_request)?;
    let names: Vec<_> = page
        .keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "name": &k.name[PREFIX.len()..],
                "changed": k.metadata,
                "expires": k.expiration,
            })
        })
        .collect();
    Response::json(&serde_json::json!({ "flags": names, "cursor": page.cursor }))
}

/// A key, value or cursor the namespace refused is the client's mistake.
fn refused_as_bad_request(error: Error) -> Error {
    match error {
        Error::Kv(KvError::Invalid(why)) => Error::BadRequest(why),
        other => other,
    }
}

/// The user's place in a rollout, 0 to 99: FNV-1a, stable across
/// requests and hosts.
fn bucket(user: &str) -> u8 {
    let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % 100) as u8
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
