//! Runs the D1 SQL a test sends and answers with the result as JSON, or
//! the typed error as `{"error": kind, "message": ...}` with a 400:
//!
//! - `POST /query` `{"sql": "...", "params": [...]}`: `all()`;
//! - `POST /first` `{"sql": ..., "params": ..., "column": "c"?}`: `first`;
//! - `POST /raw` `{"sql": ..., "params": ...}`: `raw()`;
//! - `POST /batch` `[{"sql": ..., "params": ...}, ...]`;
//! - `POST /exec` with the script as the body;
//! - `?binding=NAME` picks another binding than `DB`.
//!
//! Only the path's last segment counts, so the probe answers under any
//! route (`/two/query` too).

use serde::Deserialize;
use serde_json::{Value, json};
use verge::{D1Database, D1Error, D1Result, Env, Error, Request, Response, Result, SqlValue};

#[derive(Deserialize)]
struct Query {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    column: Option<String>,
}

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    let db = env.d1(&req.query_param("binding").unwrap_or_else(|| "DB".into()))?;
    let action = req.path().rsplit('/').next().unwrap_or_default().to_owned();
    let answer = match action.as_str() {
        "query" => statement(&db, req.json()?)
            .and_then(|s| s.all())
            .map(result_json),
        "first" => {
            let query: Query = req.json()?;
            let column = query.column.clone();
            statement(&db, query)
                .and_then(|s| s.first::<Value>(column.as_deref()))
                .map(|row| json!({ "first": row }))
        }
        "raw" => statement(&db, req.json()?)
            .and_then(|s| s.raw::<Value>())
            .map(|rows| json!({ "raw": rows })),
        "batch" => {
            let queries: Vec<Query> = req.json()?;
            queries
                .into_iter()
                .map(|q| statement(&db, q))
                .collect::<Result<Vec<_>>>()
                .and_then(|statements| db.batch(statements))
                .map(|results| json!(results.into_iter().map(result_json).collect::<Vec<_>>()))
        }
        "exec" => db
            .exec(req.text()?)
            .map(|done| json!({ "count": done.count, "duration": done.duration })),
        _ => return Ok(Response::not_found()),
    };
    match answer {
        Ok(body) => Response::json(&body),
        Err(Error::D1(error)) => Ok(Response::json(&json!({
            "error": kind(&error),
            "message": error.to_string(),
        }))?
        .with_status(400)),
        Err(other) => Err(other),
    }
}

fn statement(db: &D1Database, query: Query) -> Result<verge::D1PreparedStatement> {
    let params: Vec<SqlValue> = query.params.into_iter().map(value).collect();
    db.prepare(query.sql).bind(params)
}

fn value(json: Value) -> SqlValue {
    match json {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => b.into(),
        Value::Number(n) => n.as_i64().map_or_else(
            || SqlValue::Real(n.as_f64().unwrap_or(0.0)),
            SqlValue::Integer,
        ),
        Value::String(s) => s.into(),
        other => other.to_string().into(),
    }
}

fn result_json(result: D1Result) -> Value {
    let meta = result.meta();
    json!({
        "success": result.success(),
        "results": result.results::<Value>().unwrap_or_default(),
        "meta": {
            "duration": meta.duration,
            "rows_read": meta.rows_read,
            "rows_written": meta.rows_written,
            "last_row_id": meta.last_row_id,
            "changes": meta.changes,
            "changed_db": meta.changed_db,
            "size_after": meta.size_after,
        },
    })
}

fn kind(error: &D1Error) -> &'static str {
    match error {
        D1Error::UnknownBinding(_) => "unknown-binding",
        D1Error::Syntax(_) => "syntax",
        D1Error::Constraint(_) => "constraint",
        D1Error::Denied(_) => "denied",
        D1Error::Full(_) => "full",
        D1Error::Mismatch(_) => "mismatch",
        D1Error::TooLarge(_) => "too-large",
        D1Error::Timeout(_) => "timeout",
        D1Error::Other(_) => "other",
    }
}
