//! The KV namespace API over HTTP, for the host's tests: each route is one
//! call with every option taken from the query string, and each refusal
//! comes back as a status and the SDK's error text.
//!
//! - `PUT /kv/*key?ttl=S&expiration=T&metadata=JSON` stores the body.
//! - `GET /kv/*key` answers the value, with `x-metadata` and
//!   `x-expiration` headers; 404 when there is none.
//! - `DELETE /kv/*key`.
//! - `GET /list?prefix=P&limit=N&cursor=C` answers the page as JSON.
//! - `GET /binding/:name` reads a key through another binding name.
//!
//! Its scheduled handler records each run as a key `cron:run:<time>`
//! holding the expression, and fails while the key `cron:fail` exists.

use verge::{
    Env, Error, KvError, KvStore, Request, Response, Result, RouteContext, Router, ScheduledEvent,
};

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    let answer = Router::new()
        .put("/kv/*key", put)
        .get("/kv/*key", get)
        .delete("/kv/*key", delete)
        .get("/list", list)
        .get("/binding/:name", other_binding)
        .run(req, env);
    Ok(answer.unwrap_or_else(refusal))
}

#[verge::scheduled]
fn scheduled(event: ScheduledEvent, env: Env) -> Result<()> {
    let kv = env.kv("CACHE")?;
    if kv.get("cron:fail").text()?.is_some() {
        return Err(Error::msg("cron:fail is set"));
    }
    let key = format!("cron:run:{:013}", event.scheduled_time());
    kv.put(&key, event.cron())?.execute()
}

fn cache(ctx: &RouteContext) -> Result<KvStore> {
    ctx.env.kv("CACHE")
}

fn key(ctx: &RouteContext) -> &str {
    ctx.param("key").unwrap_or_default()
}

fn number(req: &Request, name: &str) -> Result<Option<u64>> {
    req.query_param(name)
        .map(|v| {
            v.parse()
                .map_err(|_| Error::BadRequest(format!("{name} is not a number")))
        })
        .transpose()
}

fn put(req: Request, ctx: RouteContext) -> Result<Response> {
    let mut put = cache(&ctx)?.put(key(&ctx), req.bytes())?;
    if let Some(ttl) = number(&req, "ttl")? {
        put = put.expiration_ttl(ttl);
    }
    if let Some(at) = number(&req, "expiration")? {
        put = put.expiration(at);
    }
    if let Some(metadata) = req.query_param("metadata") {
        let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
        put = put.metadata(&metadata)?;
    }
    put.execute()?;
    Ok(Response::empty().with_status(204))
}

fn get(_req: Request, ctx: RouteContext) -> Result<Response> {
    let (value, metadata) = cache(&ctx)?
        .get(key(&ctx))
        .bytes_with_metadata::<serde_json::Value>()?;
    let Some(value) = value else {
        return Ok(Response::not_found());
    };
    let expiration = cache(&ctx)?
        .list()
        .prefix(key(&ctx))
        .limit(1)
        .execute()?
        .keys
        .into_iter()
        .find(|k| k.name == key(&ctx))
        .and_then(|k| k.expiration);
    Response::bytes(value)
        .with_header(
            "x-metadata",
            &metadata.map_or(String::new(), |m| m.to_string()),
        )?
        .with_header(
            "x-expiration",
            &expiration.map_or(String::new(), |e| e.to_string()),
        )
}

fn delete(_req: Request, ctx: RouteContext) -> Result<Response> {
    cache(&ctx)?.delete(key(&ctx))?;
    Ok(Response::empty().with_status(204))
}

fn list(req: Request, ctx: RouteContext) -> Result<Response> {
    let mut list = cache(&ctx)?.list();
    if let Some(prefix) = req.query_param("prefix") {
        list = list.prefix(prefix);
    }
    if let Some(limit) = number(&req, "limit")? {
        list = list.limit(limit as u32);
    }
    if let Some(cursor) = req.query_param("cursor") {
        list = list.cursor(cursor);
    }
    Response::json(&list.execute()?)
}

fn other_binding(_req: Request, ctx: RouteContext) -> Result<Response> {
    let name = ctx.param("name").unwrap_or_default();
    let value = ctx.env.kv(name)?.get("anything").text()?;
    Response::json(&value)
}

/// A refused call as a status the test can tell apart, with the SDK's text.
fn refusal(error: Error) -> Response {
    let status = match &error {
        Error::Kv(KvError::Invalid(_)) | Error::BadRequest(_) => 400,
        Error::Kv(KvError::UnknownBinding(_)) => 404,
        _ => 500,
    };
    Response::error(error.to_string(), status)
}
