//! Cron triggers: `[triggers] crons` in verge.toml. One task per host
//! watches the deployed workers' expressions and runs each worker's
//! scheduled handler, in a fresh instance as for a request, whenever one
//! matches (in UTC).
//!
//! The latest time each trigger ran for is kept in the control database,
//! so a host that was down when a trigger matched runs it once when it
//! starts (with the missed time), however many matches it missed.

mod plan;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use tokio::sync::Notify;

use crate::bindings::exports::verge::platform::scheduled::Controller;
use crate::config::CronSchedule;
use crate::platform::Platform;
use crate::runtime::{InvokeError, LoadedWorker, RequestId, invoke_scheduled};
use crate::telemetry::{ScheduledRecord, new_error_id};
use plan::{Plan, Trigger};

/// The longest the scheduler sleeps without looking again, in case the
/// wall clock jumped.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A scheduled run that failed: what the log line and the error id say.
#[derive(Debug, thiserror::Error)]
#[error("{error} (error id {error_id}, request id {request_id})")]
pub(crate) struct ScheduledFailure {
    pub error: InvokeError,
    pub error_id: String,
    pub request_id: RequestId,
}

/// Starts the scheduler of `platform`, which stops when the platform is
/// dropped.
pub(crate) fn start(platform: &Arc<Platform>) -> Result<()> {
    let records = platform.control().cron_runs()?;
    let plan = Plan::resume(
        records
            .into_iter()
            .map(|(worker, cron, at)| (Trigger { worker, cron }, at)),
    );
    let changed = platform.deployed_changed();
    tokio::spawn(schedule(Arc::downgrade(platform), changed, plan));
    Ok(())
}

async fn schedule(platform: Weak<Platform>, deployed_changed: Arc<Notify>, mut plan: Plan) {
    // What is due at the first look fell due while the host was down.
    let mut starting = true;
    loop {
        // Registered before looking, so a deploy made while this step
        // runs still wakes the sleep below.
        let changed = deployed_changed.notified();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let Some(platform) = platform.upgrade() else {
            return;
        };

        let workers = platform.scheduled_workers();
        let schedules: Vec<(Trigger, &CronSchedule, &Arc<LoadedWorker>)> = workers
            .iter()
            .flat_map(|worker| {
                worker.context.config.crons.iter().map(move |schedule| {
                    let trigger = Trigger {
                        worker: worker.context.name.to_string(),
                        cron: schedule.expression.clone(),
                    };
                    (trigger, schedule, worker)
                })
            })
            .collect();
        let now = Utc::now();
        let step = plan.step(schedules.iter().map(|(t, s, _)| (t, *s)), now);

        let control = platform.control();
        for trigger in &step.forgotten {
            if let Err(e) = control.forget_cron(&trigger.worker, &trigger.cron) {
                tracing::warn!(worker = trigger.worker, cron = trigger.cron, "{e:#}");
            }
        }
        for (trigger, at) in step.baselines.iter().chain(&step.runs) {
            if let Err(e) = control.record_cron_run(&trigger.worker, &trigger.cron, *at) {
                tracing::error!(
                    worker = trigger.worker,
                    cron = trigger.cron,
                    "recording a cron run: {e:#}"
                );
            }
        }
        for (trigger, at) in step.runs {
            let Some((_, _, worker)) = schedules.iter().find(|(t, _, _)| *t == trigger) else {
                continue;
            };
            if let Some(cluster) = platform.cluster() {
                // Each match runs on one host of the cluster: the one that
                // records it first.
                match cluster
                    .claim_cron_run(&trigger.worker, &trigger.cron, at)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(worker = trigger.worker, cron = trigger.cron, "{e:#}");
                        continue;
                    }
                }
            }
            if starting {
                tracing::info!(
                    worker = trigger.worker,
                    cron = trigger.cron,
                    scheduled_ms = at,
                    "making up a cron run missed while the host was down"
                );
            }
            let (worker, platform) = ((*worker).clone(), platform.clone());
            tokio::spawn(async move {
                // The failure is logged with its error id inside.
                let _ = run(&platform, &worker, &trigger.cron, at).await;
            });
        }

        starting = false;
        let sleep = step
            .wake
            .and_then(|wake| (wake - Utc::now()).to_std().ok())
            .map_or(MAX_SLEEP, |until| until.min(MAX_SLEEP));
        drop(schedules);
        drop(workers);
        drop(platform);
        tokio::select! {
            // A millisecond past the match, so the clock has reached it.
            () = tokio::time::sleep(sleep + Duration::from_millis(1)) => {}
            () = changed => {}
        }
    }
}

/// Runs the scheduled handler of `worker` for `cron` matching at
/// `scheduled_ms`: the log line, the metrics and the tail event, and on
/// failure an error line with an error id.
pub(crate) async fn run(
    platform: &Platform,
    worker: &LoadedWorker,
    cron: &str,
    scheduled_ms: i64,
) -> Result<(), ScheduledFailure> {
    let request_id = RequestId::random();
    let started = Instant::now();
    let controller = Controller {
        cron: cron.to_owned(),
        scheduled_time: scheduled_ms,
    };
    let invocation = invoke_scheduled(worker, &controller, request_id).await;
    let context = &worker.context;
    let failure = invocation.result.err().map(|error| {
        let error_id = new_error_id();
        tracing::error!(
            worker = %context.name,
            %request_id,
            error_id,
            cron,
            error = ?error.to_string(),
            "scheduled run failed"
        );
        ScheduledFailure {
            error,
            error_id,
            request_id,
        }
    });
    platform.telemetry().scheduled_finished(ScheduledRecord {
        request_id: request_id.to_string(),
        worker: &context.name,
        version: context.version,
        metrics: &context.metrics,
        cron,
        scheduled_ms,
        duration: started.elapsed(),
        error_id: failure.as_ref().map(|f| f.error_id.clone()),
        logs: invocation.logs,
    });
    failure.map_or(Ok(()), Err)
}
