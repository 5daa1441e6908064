//! Live logs for `verge tail`: every finished request (or Durable Object
//! event) becomes one [`TailEvent`] with the guest's log lines, broadcast
//! to whoever is watching. With no one watching nothing is collected.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events a slow watcher may fall behind by before it misses some (and is
/// told how many).
const BACKLOG: usize = 1024;

/// One guest log line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TailLog {
    pub level: String,
    pub message: String,
}

/// A finished request or object event, as `verge tail` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TailEvent {
    /// Milliseconds since the Unix epoch, when it finished.
    pub timestamp_ms: u64,
    pub request_id: String,
    /// `fetch` for requests through the front door; `object` for an event
    /// a Durable Object ran (`alarm`, a WebSocket message...); `scheduled`
    /// for a run of a cron trigger.
    pub kind: String,
    /// The worker that served it; none when no worker matched.
    pub worker: Option<String>,
    pub version: Option<u32>,
    pub method: Option<String>,
    /// `host/path` of a request; what ran, for an object event; the cron
    /// expression, for a scheduled run.
    pub target: String,
    /// The HTTP status; for an object event 200 when it succeeded, 500
    /// when it failed.
    pub status: u16,
    pub duration_ms: f64,
    /// The Durable Object involved: the first one a request called, or the
    /// one that ran the event.
    pub object: Option<String>,
    pub error_id: Option<String>,
    pub logs: Vec<TailLog>,
}

/// Fans finished events out to `verge tail` watchers.
pub struct TailHub {
    sender: broadcast::Sender<Arc<TailEvent>>,
    /// Watchers right now: read on every request, so an atomic rather
    /// than the channel's own count behind its lock.
    watchers: Arc<AtomicUsize>,
}

impl Default for TailHub {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
            watchers: Arc::default(),
        }
    }
}

/// A watcher's end of the hub; it stops counting as one when dropped.
pub struct TailSubscription {
    pub events: broadcast::Receiver<Arc<TailEvent>>,
    watchers: Arc<AtomicUsize>,
}

impl Drop for TailSubscription {
    fn drop(&mut self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TailHub {
    /// Whether anyone is watching: only then are guest lines collected
    /// and events made.
    pub fn is_watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Sends the event `make` makes, if anyone is watching.
    pub fn send(&self, make: impl FnOnce() -> TailEvent) {
        if self.is_watched() {
            let _ = self.sender.send(Arc::new(make()));
        }
    }

    pub fn subscribe(&self) -> TailSubscription {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        TailSubscription {
            events: self.sender.subscribe(),
            watchers: self.watchers.clone(),
        }
    }
}

/// Which events a watcher wants, as `verge tail` flags and `/v1/tail`
/// query parameters name them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TailFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// `ok` (below 400), `error` (400 and above), a status (`404`) or a
    /// class (`5xx`); comma-separated for several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Comma-separated methods (`GET,POST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Text that must appear in the target or a log line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// The fraction of requests to show, 0 to 1; a request is in or out
    /// with all its lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling_rate: Option<f64>,
}

impl TailFilter {
    /// Checks the filter's own syntax, so a typo fails at once rather than
    /// matching nothing.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(status) = &self.status {
            for part in status.split(',') {
                StatusSelector::parse(part.trim())?;
            }
        }
        match self.sampling_rate {
            Some(rate) if !(0.0..=1.0).contains(&rate) => {
                Err(format!("sampling_rate must be between 0 and 1, not {rate}"))
            }
            _ => Ok(()),
        }
    }

    pub fn matches(&self, event: &TailEvent) -> bool {
        if let Some(worker) = &self.worker
            && event.worker.as_deref() != Some(worker)
        {
            return false;
        }
        if let Some(status) = &self.status
            && !status.split(',').any(|part| {
                StatusSelector::parse(part.trim()).is_ok_and(|s| s.matches(event.status))
            })
        {
            return false;
        }
        if let Some(methods) = &self.method
            && !event.method.as_deref().is_some_and(|method| {
                methods
                    .split(',')
                    .any(|m| m.trim().eq_ignore_ascii_case(method))
            })
        {
            return false;
        }
        if let Some(search) = &self.search
            && !event.target.contains(search.as_str())
            && !event
                .logs
                .iter()
                .any(|l| l.message.contains(search.as_str()))
        {
            return false;
        }
        match self.sampling_rate {
            // The request id is random: its low bits sample fairly.
            Some(rate) => {
                let id = u64::from_str_radix(&event.request_id, 16).unwrap_or(0);
                (id % 10_000) as f64 / 10_000.0 < rate
            }
            None => true,
        }
    }
}

/// One status selector: `ok`, `error`, `404`, `4xx`.
#[derive(Debug, Clone, Copy)]
enum StatusSelector {
    Ok,
    Error,
    Class(u16),
    Code(u16),
}

impl StatusSelector {
    fn parse(selector: &str) -> Result<Self, String> {
        let lower = selector.to_ascii_lowercase();
        let number = |digits: &str| digits.parse::<u16>().map_err(|_| bad_status(selector));
        Ok(match lower.as_str() {
            "ok" => Self::Ok,
            "error" => Self::Error,
            class if class.len() == 3 && class.ends_with("xx") => Self::Class(number(&class[..1])?),
            code => Self::Code(number(code)?),
        })
    }

    fn matches(self, status: u16) -> bool {
        match self {
            Self::Ok => status < 400,
            Self::Error => status >= 400,
            Self::Class(hundreds) => status / 100 == hundreds,
            Self::Code(code) => status == code,
        }
    }
}

fn bad_status(selector: &str) -> String {
    format!(
        "unknown status filter {selector:?}: use ok, error, a status like 404, or a class like 5xx"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: u16, method: &str) -> TailEvent {
        TailEvent {
            timestamp_ms: 0,
            request_id: "00000000000004d2".into(),
            kind: "fetch".into(),
            worker: Some("hello".into()),
            version: Some(1),
            method: Some(method.into()),
            target: "localhost/hello".into(),
            status,
            duration_ms: 1.0,
            object: None,
            error_id: None,
            logs: vec![TailLog {
                level: "info".into(),
                message: "greeted someone".into(),
            }],
        }
    }

    fn filter(set: impl FnOnce(&mut TailFilter)) -> TailFilter {
        let mut filter = TailFilter::default();
        set(&mut filter);
        filter.validate().unwrap();
        filter
    }

    fn status(selector: &str) -> TailFilter {
        filter(|f| f.status = Some(selector.into()))
    }

    fn method(methods: &str) -> TailFilter {
        filter(|f| f.method = Some(methods.into()))
    }

    fn search(text: &str) -> TailFilter {
        filter(|f| f.search = Some(text.into()))
    }

    #[test]
    fn filters_select_by_status_method_worker_and_text() {
        assert!(status("ok").matches(&event(200, "GET")));
        assert!(!status("ok").matches(&event(500, "GET")));
        assert!(status("error").matches(&event(404, "GET")));
        assert!(status("5xx, 404").matches(&event(404, "GET")));
        assert!(!status("5xx").matches(&event(404, "GET")));
        assert!(method("get,post").matches(&event(200, "POST")));
        assert!(!method("PUT").matches(&event(200, "POST")));
        assert!(!filter(|f| f.worker = Some("other".into())).matches(&event(200, "GET")));
        assert!(search("greeted").matches(&event(200, "GET")));
        assert!(search("/hello").matches(&event(200, "GET")));
        assert!(!search("nobody").matches(&event(200, "GET")));
        assert!(filter(|f| f.sampling_rate = Some(1.0)).matches(&event(200, "GET")));
        assert!(!filter(|f| f.sampling_rate = Some(0.0)).matches(&event(200, "GET")));
    }

    #[test]
    fn a_bad_filter_says_what_is_accepted() {
        let bad = TailFilter {
            status: Some("teapot".into()),
            ..TailFilter::default()
        };
        assert!(bad.validate().unwrap_err().contains("use ok, error"));
        let rate = TailFilter {
            sampling_rate: Some(2.0),
            ..TailFilter::default()
        };
        assert!(rate.validate().is_err());
    }
}
