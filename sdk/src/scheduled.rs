//! Cron triggers: what a `#[verge::scheduled]` handler receives.

/// One run of a cron trigger.
///
/// ```no_run
/// use verge::{Env, Result, ScheduledEvent};
///
/// #[verge::scheduled]
/// fn scheduled(event: ScheduledEvent, env: Env) -> Result<()> {
///     verge::info!("{} fired for {}", event.cron(), event.scheduled_time());
///     env.kv("REPORTS")?.put("last-run", event.scheduled_time().to_string())?.execute()
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledEvent {
    cron: String,
    scheduled_time: i64,
}

impl ScheduledEvent {
    pub(crate) fn new(cron: String, scheduled_time: i64) -> Self {
        Self {
            cron,
            scheduled_time,
        }
    }

    /// The expression from `[triggers] crons` that matched, as written.
    pub fn cron(&self) -> &str {
        &self.cron
    }

    /// When it matched, in milliseconds since the Unix epoch. A run made up
    /// for one the host missed while it was down carries the missed time.
    pub fn scheduled_time(&self) -> i64 {
        self.scheduled_time
    }
}
