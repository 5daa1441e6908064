//! Alarms: wake an object at a time, whether or not it is in memory then,
//! and even after a host restart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::__private::bindings::verge::platform::alarm as host;
use crate::{Result, Storage};

/// The name [`Storage::set_alarm`] and friends use: Cloudflare's one alarm
/// per object is the alarm named "".
const DEFAULT_ALARM: &str = "";

/// When an alarm fires: a [`SystemTime`], a [`Duration`] from now, or
/// milliseconds since the Unix epoch (as `Date.now()` gives in JavaScript).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledTime(i64);

impl ScheduledTime {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(&self) -> i64 {
        self.0
    }
}

impl From<SystemTime> for ScheduledTime {
    fn from(time: SystemTime) -> Self {
        Self(match time.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_millis() as i64,
            Err(before) => -(before.duration().as_millis() as i64),
        })
    }
}

impl From<Duration> for ScheduledTime {
    fn from(delay: Duration) -> Self {
        (SystemTime::now() + delay).into()
    }
}

impl From<i64> for ScheduledTime {
    fn from(millis: i64) -> Self {
        Self(millis)
    }
}

/// What an `alarm` handler is told.
///
/// ```no_run
/// use std::time::Duration;
/// use verge::{AlarmInfo, Env, Result, State};
///
/// pub struct Reminder { state: State }
///
/// #[verge::durable_object]
/// impl Reminder {
///     fn new(state: State, _env: Env) -> Self {
///         Self { state }
///     }
///
///     #[rpc]
///     fn remind_in(&mut self, seconds: u64) -> Result<()> {
///         self.state.storage().set_alarm(Duration::from_secs(seconds))
///     }
///
///     fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
///         verge::info!("alarm {:?} fired (attempt {})", info.name, info.retry_count + 1);
///         Ok(())
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmInfo {
    /// "" for the alarm of [`Storage::set_alarm`]; the name given to
    /// [`Storage::set_alarm_named`] otherwise.
    pub name: String,
    /// When it was scheduled, in milliseconds since the Unix epoch.
    pub scheduled: i64,
    /// Failed attempts before this one. A handler that returns `Err` is
    /// retried with exponential backoff (2 s, 4 s, ...), up to 6 times.
    pub retry_count: u32,
    /// Whether an attempt failed before this one.
    pub is_retry: bool,
}

impl Storage {
    /// Sets the object's alarm (moving it if it is set). The write belongs
    /// to the current event: if the event fails, the alarm is not set.
    /// Calling it inside `alarm` schedules the next one.
    pub fn set_alarm(&self, at: impl Into<ScheduledTime>) -> Result<()> {
        self.set_alarm_named(DEFAULT_ALARM, at)
    }

    /// When the object's alarm fires, in milliseconds since the Unix epoch.
    pub fn get_alarm(&self) -> Result<Option<i64>> {
        self.get_alarm_named(DEFAULT_ALARM)
    }

    /// Cancels the object's alarm; returns whether it was set.
    pub fn delete_alarm(&self) -> Result<bool> {
        self.delete_alarm_named(DEFAULT_ALARM)
    }

    /// Sets alarm `name`: an object may have any number, each firing
    /// `alarm` with its name in [`AlarmInfo::name`].
    pub fn set_alarm_named(&self, name: &str, at: impl Into<ScheduledTime>) -> Result<()> {
        Ok(host::set(name, at.into().0)?)
    }

    /// When alarm `name` fires.
    pub fn get_alarm_named(&self, name: &str) -> Result<Option<i64>> {
        Ok(host::get(name)?)
    }

    /// Cancels alarm `name`; returns whether it was set.
    pub fn delete_alarm_named(&self, name: &str) -> Result<bool> {
        Ok(host::delete(name)?)
    }

    /// Every alarm of the object and when it fires, soonest first.
    pub fn list_alarms(&self) -> Result<Vec<(String, i64)>> {
        Ok(host::list()?)
    }
}
