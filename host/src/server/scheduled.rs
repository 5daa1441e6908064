//! `/__scheduled` under `verge dev` and `verge up`: runs a worker's
//! scheduled handler now, as `wrangler dev`'s endpoint of the same name
//! does, so a cron job can be tried without waiting for its time.
//!
//! `?cron=` names the expression the handler sees (by default the
//! worker's first); `?worker=` picks the worker when the host serves
//! several.

use axum::response::Response;
use http::StatusCode;

use super::errors::{ERROR_ID_HEADER, text};
use crate::platform::Platform;

/// The path wrangler uses.
pub(super) const PATH: &str = "/__scheduled";

pub(super) async fn run_now(platform: &Platform, host: &str, query: Option<&str>) -> Response {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let worker = match param("worker") {
        Some(name) => platform.active(&name),
        None => platform.route(host, PATH).or_else(|| {
            let mut scheduled = platform.scheduled_workers();
            (scheduled.len() == 1).then(|| scheduled.remove(0))
        }),
    };
    let Some(worker) = worker else {
        return text(
            StatusCode::NOT_FOUND,
            "No worker to run: name one with ?worker=NAME\n".into(),
        );
    };
    let context = &worker.context;
    let cron = match param("cron") {
        Some(cron) => cron,
        None => match context.config.crons.first() {
            Some(schedule) => schedule.expression.clone(),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Worker {} has no [triggers] crons: pass the expression the handler should see as ?cron=\n",
                        context.name
                    ),
                );
            }
        },
    };
    let now = crate::clock::unix_now_ms();
    match crate::cron::run(platform, &worker, &cron, now).await {
        Ok(()) => text(
            StatusCode::OK,
            format!(
                "Ran the scheduled handler of {} for {cron:?}\n",
                context.name
            ),
        ),
        Err(failure) => {
            let mut response = text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "The scheduled handler of {} failed: {failure}\n",
                    context.name
                ),
            );
            let error_id =
                http::HeaderValue::from_str(&failure.error_id).expect("hex is a valid header");
            response.headers_mut().insert(ERROR_ID_HEADER, error_id);
            response
        }
    }
}
