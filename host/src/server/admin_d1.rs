//! The admin API's D1 routes, behind `verge d1`. The work is the D1
//! store's (`storage/d1/operator.rs`, shared with `verge d1 --local`),
//! which runs it on the blocking pool, or in a cluster on the host that
//! owns the database; these handlers frame the answers.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | /v1/d1 | every database: name, size |
//! | POST | /v1/d1/{name} | create the database (`created: false` when it existed) |
//! | POST | /v1/d1/{name}/execute | run the body (SQL text) in one transaction; the last statement's rows and meta |
//! | GET | /v1/d1/{name}/export | the database as SQL text (`?schema=false`, `?data=false`) |
//! | GET | /v1/d1/{name}/migrations?table=T | the migrations recorded in table T |
//! | POST | /v1/d1/{name}/migrations?table=T&name=N | apply the body as migration N and record it |

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::admin::{AdminError, AdminResult};
use crate::platform::Platform;
use crate::storage::d1::{DumpOptions, OperatorError};

type Shared = State<Arc<Platform>>;

pub(super) fn routes() -> Router<Arc<Platform>> {
    Router::new()
        .route("/v1/d1", get(list))
        .route("/v1/d1/{name}", post(create))
        .route("/v1/d1/{name}/execute", post(execute))
        .route("/v1/d1/{name}/export", get(export))
        .route("/v1/d1/{name}/migrations", get(applied).post(apply))
}

impl From<OperatorError> for AdminError {
    fn from(error: OperatorError) -> Self {
        let status = match &error {
            OperatorError::NotFound(_) => StatusCode::NOT_FOUND,
            OperatorError::Invalid(_) | OperatorError::Sql(_) => StatusCode::BAD_REQUEST,
            OperatorError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OperatorError::Internal(e) => {
                tracing::error!("D1 admin request failed: {e:#}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        AdminError(status, error.to_string())
    }
}

/// Serializes an answer.
fn json_of(value: impl serde::Serialize) -> AdminResult {
    Ok(Json(
        serde_json::to_value(value).map_err(anyhow::Error::from)?,
    ))
}

async fn list(State(platform): Shared) -> AdminResult {
    let databases = platform.d1().admin_list().await?;
    Ok(Json(json!({ "databases": databases })))
}

async fn create(State(platform): Shared, Path(name): Path<String>) -> AdminResult {
    let created = platform.d1().admin_create(&name).await?;
    Ok(Json(json!({ "created": created })))
}

async fn execute(State(platform): Shared, Path(name): Path<String>, sql: String) -> AdminResult {
    json_of(platform.d1().admin_execute(&name, sql).await?)
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default = "yes")]
    schema: bool,
    #[serde(default = "yes")]
    data: bool,
}

fn yes() -> bool {
    true
}

async fn export(
    State(platform): Shared,
    Path(name): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<String, AdminError> {
    let options = DumpOptions {
        schema: query.schema,
        data: query.data,
    };
    Ok(platform.d1().admin_export(&name, options).await?)
}

#[derive(Deserialize)]
struct MigrationQuery {
    table: String,
    name: Option<String>,
}

async fn applied(
    State(platform): Shared,
    Path(name): Path<String>,
    Query(query): Query<MigrationQuery>,
) -> AdminResult {
    let applied = platform.d1().admin_applied(&name, &query.table).await?;
    Ok(Json(json!({ "applied": applied })))
}

async fn apply(
    State(platform): Shared,
    Path(name): Path<String>,
    Query(query): Query<MigrationQuery>,
    sql: String,
) -> AdminResult {
    let migration = query
        .name
        .ok_or_else(|| AdminError(StatusCode::BAD_REQUEST, "?name= is missing".into()))?;
    json_of(
        platform
            .d1()
            .admin_apply(&name, &query.table, &migration, sql)
            .await?,
    )
}
