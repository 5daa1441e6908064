//! The admin API: upload versions, list, activate, roll back, delete,
//! manage secrets and objects, and report the host's status. JSON in and
//! out; every route requires the admin token.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /v1/health | liveness |
//! | GET | /v1/stats | artifact cache counters |
//! | GET | /v1/status | build, uptime, workers, objects, WebSockets, alarms |
//! | GET | /v1/tail | live request events, one JSON object per line (`?worker=&status=&method=&search=&sampling_rate=`) |
//! | GET | /metrics | Prometheus metrics (OpenMetrics text) |
//! | GET | /v1/workers | every worker and its active version |
//! | GET | /v1/workers/{name} | one worker with all its versions and its rollback target |
//! | DELETE | /v1/workers/{name} | delete the worker, its versions, secrets and objects' data |
//! | POST | /v1/workers/{name}/versions | upload (multipart: `component`, `config`); `?activate=false` to only upload |
//! | POST | /v1/workers/{name}/activate | `{"version": N}`; the active version again changes nothing |
//! | POST | /v1/workers/{name}/rollback | back one step in the deployment history |
//! | GET | /v1/workers/{name}/secrets | secret names |
//! | PUT | /v1/workers/{name}/secrets/{key} | body is the value |
//! | DELETE | /v1/workers/{name}/secrets/{key} | |
//! | GET | /v1/workers/{name}/objects/{class} | objects with data: id, name, size, last active |
//! | GET | /v1/workers/{name}/objects/{class}/id?name=N | the id of the object named N |
//! | GET | /v1/workers/{name}/objects/{class}/{id}/export | the object's database, as a SQLite file |
//! | PUT | /v1/workers/{name}/objects/{class}/{id}/import | replace it with a SQLite file (the body) |
//! | DELETE | /v1/workers/{name}/objects/{class}/{id} | delete the object and its data |
//! | * | /v1/d1/... | D1 databases: see `admin_d1.rs` |
//! | * | /v1/kv/... | KV namespaces: see `admin_kv.rs` |
//!
//! R2 buckets and objects: `/v1/r2/...`, see `admin_r2.rs`.

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router, middleware};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::AdminOptions;
use super::admin_kv;
use super::auth::{AdminGate, check};
use super::drain::drained_if_refused;
use super::errors::json_error;
use super::observe;
use crate::objects::{Namespace, ObjectError, ObjectId, ObjectKey};
use crate::platform::{DeployError, Platform};

/// Uploads larger than this are refused before they are read.
const MAX_UPLOAD_BYTES: usize = 256 << 20;

type Shared = State<Arc<Platform>>;

pub(super) fn router(platform: Arc<Platform>, options: AdminOptions) -> Router {
    let gate = AdminGate::new(&options.token, &options.hosts);
    Router::new()
        .route("/v1/health", get(|| async { Json(json!({ "ok": true })) }))
        .route("/v1/stats", get(stats))
        .route("/v1/status", get(status))
        .route("/v1/cluster", get(cluster_status))
        .route("/v1/tail", get(observe::tail))
        .route("/metrics", get(observe::metrics))
        .route("/v1/workers", get(list_workers))
        .route("/v1/workers/{name}", get(show_worker).delete(delete_worker))
        .route("/v1/workers/{name}/versions", post(upload_version))
        .route("/v1/workers/{name}/activate", post(activate))
        .route("/v1/workers/{name}/rollback", post(rollback))
        .route("/v1/workers/{name}/secrets", get(list_secrets))
        .route(
            "/v1/workers/{name}/secrets/{key}",
            put(put_secret).delete(delete_secret),
        )
        .route("/v1/workers/{name}/objects/{class}", get(list_objects))
        .route("/v1/workers/{name}/objects/{class}/id", get(object_id))
        .route(
            "/v1/workers/{name}/objects/{class}/{id}",
            delete(delete_object),
        )
        .route(
            "/v1/workers/{name}/objects/{class}/{id}/export",
            get(export_object),
        )
        .route(
            "/v1/workers/{name}/objects/{class}/{id}/import",
            put(import_object),
        )
        .merge(admin_kv::routes())
        .merge(super::admin_d1::routes())
        .merge(super::admin_r2::routes())
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(middleware::from_fn_with_state(gate, check))
        .layer(middleware::map_request(drained_if_refused))
        .with_state(platform)
}

/// An admin failure as a JSON error with the right status.
pub(super) struct AdminError(pub(super) StatusCode, pub(super) String);

impl From<DeployError> for AdminError {
    fn from(error: DeployError) -> Self {
        let status = match &error {
            DeployError::Config(_)
            | DeployError::Component(_)
            | DeployError::Link(_)
            | DeployError::Classes(_) => StatusCode::BAD_REQUEST,
            DeployError::RouteConflict(_) | DeployError::NothingToRollBack(_) => {
                StatusCode::CONFLICT
            }
            DeployError::UnknownWorker(_) | DeployError::UnknownVersion { .. } => {
                StatusCode::NOT_FOUND
            }
            DeployError::Internal(e) => {
                tracing::error!("admin request failed: {e:#}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        AdminError(status, error.to_string())
    }
}

impl From<ObjectError> for AdminError {
    fn from(error: ObjectError) -> Self {
        if let ObjectError::Internal(why) = &error {
            tracing::error!("admin request failed: {why}");
        }
        AdminError(error.status(), error.to_string())
    }
}

impl From<anyhow::Error> for AdminError {
    fn from(error: anyhow::Error) -> Self {
        DeployError::Internal(error).into()
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        json_error(self.0, self.1).into_response()
    }
}

pub(super) type AdminResult<T = Json<serde_json::Value>> = Result<T, AdminError>;

async fn stats(State(platform): Shared) -> AdminResult {
    Ok(Json(json!({ "artifacts": platform.artifact_stats() })))
}

async fn status(State(platform): Shared) -> AdminResult {
    Ok(Json(
        serde_json::to_value(platform.status()?).map_err(anyhow::Error::from)?,
    ))
}

/// The cluster's hosts, their leases and the objects each owns.
async fn cluster_status(State(platform): Shared) -> AdminResult {
    let Some(cluster) = platform.cluster() else {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "this host runs alone: start it with `verge serve --cluster postgres://...` to make it part of a cluster".into(),
        ));
    };
    let hosts = cluster
        .hosts()
        .await
        .map_err(|e| AdminError(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))?;
    Ok(Json(json!({ "host": cluster.host_id(), "hosts": hosts })))
}

async fn list_workers(State(platform): Shared) -> AdminResult {
    let workers: Vec<_> = platform
        .workers()?
        .into_iter()
        .map(|w| {
            let routes = platform.active(&w.name).map(|a| {
                a.context
                    .config
                    .routes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            });
            json!({
                "name": w.name,
                "active_version": w.active_version,
                "routes": routes.unwrap_or_default(),
                "created_at": w.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "workers": workers })))
}

async fn show_worker(State(platform): Shared, Path(name): Path<String>) -> AdminResult {
    let worker = platform.worker(&name)?;
    let versions: Vec<_> = platform
        .versions(&name)?
        .into_iter()
        .map(|v| {
            json!({
                "version": v.version,
                "size_bytes": platform.component_size(&v.component_hash),
                "component_hash": v.component_hash,
                "created_at": v.created_at,
                "active": Some(v.version) == worker.active_version,
                "config": v.config,
            })
        })
        .collect();
    Ok(Json(json!({
        "name": worker.name,
        "active_version": worker.active_version,
        "rollback_to": platform.rollback_target(&name)?,
        "created_at": worker.created_at,
        "versions": versions,
    })))
}

async fn delete_worker(State(platform): Shared, Path(name): Path<String>) -> AdminResult {
    platform.delete(&name).await?;
    Ok(Json(json!({ "deleted": name })))
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default = "yes")]
    activate: bool,
}

fn yes() -> bool {
    true
}

async fn upload_version(
    State(platform): Shared,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    multipart: Result<Multipart, MultipartRejection>,
) -> AdminResult<(StatusCode, Json<serde_json::Value>)> {
    let bad_request = |message: String| AdminError(StatusCode::BAD_REQUEST, message);
    let mut multipart = multipart.map_err(|e| {
        AdminError(
            e.status(),
            format!(
                "expected a multipart/form-data upload with parts `component` and `config`: {e}"
            ),
        )
    })?;
    // An upload over the limit is a 413 saying so, wherever it is cut.
    let unreadable = |what: &str, e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        let why = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the upload is larger than {} MiB", MAX_UPLOAD_BYTES >> 20)
        } else {
            e.to_string()
        };
        AdminError(status, format!("reading {what}: {why}"))
    };
    let (mut component, mut config) = (None, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| unreadable("the upload", e))?
    {
        match field.name() {
            Some("component") => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| unreadable("`component`", e))?;
                component = Some(bytes.to_vec());
            }
            Some("config") => {
                config = Some(field.text().await.map_err(|e| unreadable("`config`", e))?);
            }
            other => return Err(bad_request(format!("unexpected multipart part {other:?}"))),
        }
    }
    let component = component
        .ok_or_else(|| bad_request("missing multipart part `component` (the .wasm file)".into()))?;
    let config = config.ok_or_else(|| {
        bad_request("missing multipart part `config` (the verge.toml text)".into())
    })?;
    let deployment = platform
        .deploy(&name, component, &config, query.activate)
        .await?;
    let status = if deployment.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(serde_json::to_value(deployment).map_err(anyhow::Error::from)?),
    ))
}

#[derive(Deserialize)]
struct ActivateBody {
    version: u32,
}

async fn activate(
    State(platform): Shared,
    Path(name): Path<String>,
    body: Result<Json<ActivateBody>, axum::extract::rejection::JsonRejection>,
) -> AdminResult {
    let Json(body) = body.map_err(|e| {
        AdminError(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"version\": N}}: {e}"),
        )
    })?;
    let deployment = platform.activate(&name, body.version).await?;
    Ok(Json(
        serde_json::to_value(deployment).map_err(anyhow::Error::from)?,
    ))
}

async fn rollback(State(platform): Shared, Path(name): Path<String>) -> AdminResult {
    let deployment = platform.rollback(&name).await?;
    Ok(Json(
        serde_json::to_value(deployment).map_err(anyhow::Error::from)?,
    ))
}

async fn list_secrets(State(platform): Shared, Path(name): Path<String>) -> AdminResult {
    Ok(Json(json!({ "secrets": platform.secret_names(&name)? })))
}

async fn put_secret(
    State(platform): Shared,
    Path((name, key)): Path<(String, String)>,
    value: String,
) -> AdminResult {
    platform.put_secret(&name, &key, &value).await?;
    Ok(Json(json!({ "set": key })))
}

async fn delete_secret(
    State(platform): Shared,
    Path((name, key)): Path<(String, String)>,
) -> AdminResult {
    if platform.delete_secret(&name, &key).await? {
        Ok(Json(json!({ "deleted": key })))
    } else {
        Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("worker `{name}` has no secret `{key}`"),
        ))
    }
}

/// The namespace of `class` in worker `name`, or a 404 naming what is
/// missing.
fn namespace(platform: &Platform, name: &str, class: &str) -> Result<Namespace, AdminError> {
    platform.worker(name)?;
    platform.objects().namespace(name, class).ok_or_else(|| {
        AdminError(
            StatusCode::NOT_FOUND,
            format!("worker `{name}` has no Durable Object class `{class}`"),
        )
    })
}

fn object_key(
    platform: &Platform,
    name: &str,
    class: &str,
    id: &str,
) -> Result<ObjectKey, AdminError> {
    Ok(ObjectKey {
        namespace: namespace(platform, name, class)?.id,
        id: ObjectId::parse(id).map_err(|e| AdminError(StatusCode::BAD_REQUEST, e))?,
    })
}

async fn list_objects(
    State(platform): Shared,
    Path((name, class)): Path<(String, String)>,
) -> AdminResult {
    let namespace = namespace(&platform, &name, &class)?;
    let objects = platform.objects().list(&namespace).await?;
    Ok(Json(json!({ "objects": objects })))
}

#[derive(Deserialize)]
struct NameQuery {
    name: String,
}

async fn object_id(
    State(platform): Shared,
    Path((name, class)): Path<(String, String)>,
    Query(query): Query<NameQuery>,
) -> AdminResult {
    let namespace = namespace(&platform, &name, &class)?;
    let id = platform.objects().id_from_name(&namespace, &query.name);
    Ok(Json(json!({ "id": id.to_string(), "name": query.name })))
}

async fn export_object(
    State(platform): Shared,
    Path((name, class, id)): Path<(String, String, String)>,
) -> Result<Response, AdminError> {
    let key = object_key(&platform, &name, &class, &id)?;
    let bytes = platform.objects().export(&key).await?;
    Ok((
        [(http::header::CONTENT_TYPE, "application/vnd.sqlite3")],
        bytes,
    )
        .into_response())
}

async fn import_object(
    State(platform): Shared,
    Path((name, class, id)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> AdminResult {
    let key = object_key(&platform, &name, &class, &id)?;
    platform.objects().import(&key, body.to_vec()).await?;
    Ok(Json(json!({ "imported": id })))
}

async fn delete_object(
    State(platform): Shared,
    Path((name, class, id)): Path<(String, String, String)>,
) -> AdminResult {
    let key = object_key(&platform, &name, &class, &id)?;
    match platform.objects().delete(&key).await {
        Err(ObjectError::NoData(_)) => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no object {id} in class `{class}` of worker `{name}`"),
        )),
        done => {
            done?;
            Ok(Json(json!({ "deleted": id })))
        }
    }
}
