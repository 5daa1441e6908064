//! The admin API's R2 routes, for `verge r2`: buckets and their objects.
//! Uploads and downloads stream between the client and the bucket; no
//! object is ever whole in the host's memory.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /v1/r2/buckets | every bucket: name, location, objects, bytes |
//! | PUT | /v1/r2/buckets/{bucket} | create the bucket (an existing one is no error) |
//! | GET | /v1/r2/buckets/{bucket}/objects | a page of keys (`?prefix=&delimiter=&cursor=&start_after=&limit=`) |
//! | PUT | /v1/r2/buckets/{bucket}/objects/{key} | store the body under the key (`content-type` kept) |
//! | GET | /v1/r2/buckets/{bucket}/objects/{key} | the object's body |
//! | DELETE | /v1/r2/buckets/{bucket}/objects/{key} | delete the key |

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use super::errors::json_error;
use crate::config::Limits;
use crate::platform::Platform;
use crate::storage::r2::{Bucket, HttpMetadata, ListOptions, R2Error, WriteMetadata};

type Shared = State<Arc<Platform>>;

pub(super) fn routes() -> Router<Arc<Platform>> {
    Router::new()
        .route("/v1/r2/buckets", get(list_buckets))
        .route("/v1/r2/buckets/{bucket}", axum::routing::put(create_bucket))
        .route("/v1/r2/buckets/{bucket}/objects", get(list_objects))
        .route(
            "/v1/r2/buckets/{bucket}/objects/{*key}",
            get(get_object).put(put_object).delete(delete_object),
        )
}

/// An R2 failure as a JSON error with the right status.
struct R2AdminError(StatusCode, String);

impl From<R2Error> for R2AdminError {
    fn from(error: R2Error) -> Self {
        let status = match &error {
            R2Error::InvalidKey(_) | R2Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            R2Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            R2Error::NoSuchUpload(_) => StatusCode::NOT_FOUND,
            R2Error::Storage(e) => {
                tracing::error!("admin R2 request failed: {e:#}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self(status, error.to_string())
    }
}

impl IntoResponse for R2AdminError {
    fn into_response(self) -> Response {
        json_error(self.0, self.1).into_response()
    }
}

type R2AdminResult<T = Json<serde_json::Value>> = Result<T, R2AdminError>;

/// Bucket `name` if it exists; a 404 otherwise (only `PUT
/// /v1/r2/buckets/{bucket}` and workers create buckets).
async fn existing(platform: &Platform, name: &str) -> R2AdminResult<Arc<Bucket>> {
    platform
        .r2()
        .existing(name)
        .await?
        .ok_or_else(|| R2AdminError(StatusCode::NOT_FOUND, format!("no bucket named {name}")))
}

async fn list_buckets(State(platform): Shared) -> R2AdminResult {
    Ok(Json(json!({ "buckets": platform.r2().list().await? })))
}

async fn create_bucket(State(platform): Shared, Path(bucket): Path<String>) -> R2AdminResult {
    platform.r2().create(&bucket).await?;
    Ok(Json(json!({ "created": bucket })))
}

async fn list_objects(
    State(platform): Shared,
    Path(bucket): Path<String>,
    Query(options): Query<ListOptions>,
) -> R2AdminResult {
    let page = existing(&platform, &bucket).await?.list(options).await?;
    Ok(Json(
        serde_json::to_value(page).map_err(|e| R2Error::Storage(e.into()))?,
    ))
}

async fn put_object(
    State(platform): Shared,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> R2AdminResult {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let metadata = WriteMetadata {
        http: HttpMetadata {
            content_type,
            ..HttpMetadata::default()
        },
        custom: Vec::new(),
    };
    let bucket = existing(&platform, &bucket).await?;
    let meta = bucket
        .put_stream(
            &key,
            body.into_data_stream(),
            metadata,
            Limits::default().r2_object_bytes(),
        )
        .await?;
    Ok(Json(
        json!({ "key": meta.key, "size": meta.size, "etag": meta.etag }),
    ))
}

async fn get_object(
    State(platform): Shared,
    Path((bucket, key)): Path<(String, String)>,
) -> R2AdminResult<Response> {
    let found = existing(&platform, &bucket)
        .await?
        .get(&key, None, None)
        .await?;
    let Some(found) = found else {
        return Err(R2AdminError(
            StatusCode::NOT_FOUND,
            format!("no object {key:?} in bucket {bucket}"),
        ));
    };
    let body = found.body.expect("a get without conditions has a body");
    let meta = found.meta;
    let content_type = meta
        .metadata
        .http
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let etag = HeaderValue::from_str(&format!("\"{}\"", meta.etag))
        .map_err(|e| R2Error::Storage(e.into()))?;
    Ok((
        [
            (header::CONTENT_LENGTH, HeaderValue::from(meta.size)),
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, etag),
        ],
        body.into_http_body(),
    )
        .into_response())
}

async fn delete_object(
    State(platform): Shared,
    Path((bucket, key)): Path<(String, String)>,
) -> R2AdminResult {
    existing(&platform, &bucket)
        .await?
        .delete(vec![key.clone()])
        .await?;
    Ok(Json(json!({ "deleted": key })))
}
