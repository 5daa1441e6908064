//! The admin API's KV routes, what `verge kv` drives: list namespaces, and
//! read, write, list and delete keys as an operator, outside any worker.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /v1/kv | namespaces: those holding data and those workers bind |
//! | GET | /v1/kv/{id}/keys | a page of keys (`?prefix=&limit=&cursor=`) |
//! | GET | /v1/kv/{id}/values/{key} | the value; metadata and expiration in headers |
//! | PUT | /v1/kv/{id}/values/{key} | body is the value (`?expiration_ttl=&expiration=&metadata=`) |
//! | DELETE | /v1/kv/{id}/values/{key} | |
//! | PUT | /v1/kv/{id}/bulk | many writes, all or none: a JSON array as `wrangler kv bulk put` takes |
//! | POST | /v1/kv/{id}/bulk/delete | many deletes, all or none: a JSON array of keys |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::json_error;
use crate::clock::unix_now;
use crate::config::check_namespace_id;
use crate::platform::Platform;
use crate::storage::kv::bulk;
use crate::storage::kv::{KvLimits, KvNamespace, OwnedPut, checks};

type Shared = State<Arc<Platform>>;

pub(super) fn routes() -> axum::Router<Arc<Platform>> {
    axum::Router::new()
        .route("/v1/kv", get(namespaces))
        .route("/v1/kv/{id}/keys", get(keys))
        .route(
            "/v1/kv/{id}/values/{*key}",
            get(read).put(write).delete(remove),
        )
        .route("/v1/kv/{id}/bulk", put(bulk_write))
        .route("/v1/kv/{id}/bulk/delete", post(bulk_delete))
}

fn bad_request(why: String) -> Response {
    json_error(StatusCode::BAD_REQUEST, why).into_response()
}

fn failed(error: anyhow::Error) -> Response {
    tracing::error!("admin KV request failed: {error:#}");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}")).into_response()
}

/// Namespace `id`, opened (and created) if the id is valid.
async fn namespace(platform: &Platform, id: String) -> Result<KvNamespace, Response> {
    check_namespace_id(&id).map_err(bad_request)?;
    platform.kv().namespace(&id).await.map_err(failed)
}

async fn namespaces(State(platform): Shared) -> Result<Json<Value>, Response> {
    let stored = platform.kv().ids().await.map_err(failed)?;
    let mut listed: BTreeMap<String, Vec<Value>> =
        stored.into_iter().map(|id| (id, Vec::new())).collect();
    for (worker, binding, id) in platform.kv_bindings() {
        listed
            .entry(id)
            .or_default()
            .push(json!({ "worker": worker, "binding": binding }));
    }
    let namespaces: Vec<Value> = listed
        .into_iter()
        .map(|(id, bindings)| json!({ "id": id, "bindings": bindings }))
        .collect();
    Ok(Json(json!({ "namespaces": namespaces })))
}

#[derive(Deserialize)]
struct KeysQuery {
    prefix: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn keys(
    State(platform): Shared,
    Path(id): Path<String>,
    Query(query): Query<KeysQuery>,
) -> Result<Json<Value>, Response> {
    let limit = checks::list_limit(query.limit).map_err(bad_request)?;
    let namespace = namespace(&platform, id).await?;
    let prefix = query.prefix.unwrap_or_default();
    let listing = namespace
        .list(prefix, query.cursor, limit, unix_now())
        .await
        .map_err(failed)?
        .map_err(|e| bad_request(e.to_string()))?;
    Ok(Json(listing.into_json()))
}

async fn read(
    State(platform): Shared,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, Response> {
    KvLimits::operator().check_key(&key).map_err(bad_request)?;
    let namespace = namespace(&platform, id).await?;
    let entry = namespace.get(key, unix_now()).await.map_err(failed)?;
    let Some(entry) = entry else {
        return Err(json_error(StatusCode::NOT_FOUND, "no such key").into_response());
    };
    let mut response = entry.value.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-verge-kv-metadata", entry.metadata),
        (
            "x-verge-kv-expiration",
            entry.expiration.map(|at| at.to_string()),
        ),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
struct WriteQuery {
    expiration: Option<u64>,
    expiration_ttl: Option<u64>,
    metadata: Option<String>,
}

async fn write(
    State(platform): Shared,
    Path((id, key)): Path<(String, String)>,
    Query(query): Query<WriteQuery>,
    value: Bytes,
) -> Result<Json<Value>, Response> {
    let limits = KvLimits::operator();
    limits.check_key(&key).map_err(bad_request)?;
    limits.check_value(&value).map_err(bad_request)?;
    checks::check_metadata(query.metadata.as_deref()).map_err(bad_request)?;
    let now = unix_now();
    let expiration =
        checks::expiration(query.expiration, query.expiration_ttl, now).map_err(bad_request)?;
    let namespace = namespace(&platform, id).await?;
    let written = key.clone();
    let put = OwnedPut {
        key,
        value: value.into(),
        metadata: query.metadata,
        expiration,
    };
    namespace.put(vec![put], now).await.map_err(failed)?;
    Ok(Json(json!({ "written": written })))
}

async fn remove(
    State(platform): Shared,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>, Response> {
    KvLimits::operator().check_key(&key).map_err(bad_request)?;
    let namespace = namespace(&platform, id).await?;
    let deleted = key.clone();
    namespace.delete(vec![key]).await.map_err(failed)?;
    Ok(Json(json!({ "deleted": deleted })))
}

async fn bulk_write(
    State(platform): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Response> {
    let now = unix_now();
    let puts = bulk::puts(&body, KvLimits::operator(), now).map_err(bad_request)?;
    let namespace = namespace(&platform, id).await?;
    let written = puts.len();
    namespace.put(puts, now).await.map_err(failed)?;
    Ok(Json(json!({ "written": written })))
}

async fn bulk_delete(
    State(platform): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Response> {
    let keys = bulk::deletes(&body, KvLimits::operator()).map_err(bad_request)?;
    let namespace = namespace(&platform, id).await?;
    let deleted = keys.len();
    namespace.delete(keys).await.map_err(failed)?;
    Ok(Json(json!({ "deleted": deleted })))
}
