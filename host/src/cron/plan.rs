//! When each cron trigger runs next: the scheduler's bookkeeping, without
//! the clock, the database or the guests, so it can be tested alone.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::config::CronSchedule;

/// One cron expression of one worker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Trigger {
    pub(super) worker: String,
    pub(super) cron: String,
}

/// What the scheduler does after looking at the triggers at one moment.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Step {
    /// Run these, each for its latest matching time (Unix ms).
    pub(super) runs: Vec<(Trigger, i64)>,
    /// New triggers: nothing is due yet, but record from when they count.
    pub(super) baselines: Vec<(Trigger, i64)>,
    /// Triggers no worker has any more.
    pub(super) forgotten: Vec<Trigger>,
    /// The next moment something may be due.
    pub(super) wake: Option<DateTime<Utc>>,
}

/// For each trigger, the latest time a run was started for (Unix ms).
#[derive(Debug, Default)]
pub(super) struct Plan {
    last: BTreeMap<Trigger, i64>,
}

impl Plan {
    /// A plan that continues from the recorded runs.
    pub(super) fn resume(records: impl IntoIterator<Item = (Trigger, i64)>) -> Self {
        Self {
            last: records.into_iter().collect(),
        }
    }

    /// Decides what `triggers`, the ones deployed now, need at `now`.
    ///
    /// A trigger runs once for its latest matching time if that is later
    /// than its last run, however many matches were missed in between: a
    /// host that was down for an hour makes up an every-minute trigger
    /// once, not sixty times. A trigger seen for the first time has
    /// missed nothing.
    pub(super) fn step<'a>(
        &mut self,
        triggers: impl IntoIterator<Item = (&'a Trigger, &'a CronSchedule)>,
        now: DateTime<Utc>,
    ) -> Step {
        let mut step = Step::default();
        let now_ms = now.timestamp_millis();
        let mut deployed = BTreeSet::new();
        for (trigger, schedule) in triggers {
            deployed.insert(trigger);
            match (self.last.get(trigger), schedule.latest(now)) {
                (None, _) => {
                    step.baselines.push((trigger.clone(), now_ms));
                    self.last.insert(trigger.clone(), now_ms);
                }
                (Some(&last), Some(latest)) if latest.timestamp_millis() > last => {
                    let at = latest.timestamp_millis();
                    step.runs.push((trigger.clone(), at));
                    self.last.insert(trigger.clone(), at);
                }
                _ => {}
            }
            if let Some(next) = schedule.next(now) {
                step.wake = Some(step.wake.map_or(next, |wake| wake.min(next)));
            }
        }
        step.forgotten = self
            .last
            .keys()
            .filter(|t| !deployed.contains(t))
            .cloned()
            .collect();
        for trigger in &step.forgotten {
            self.last.remove(trigger);
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn ms(text: &str) -> i64 {
        at(text).timestamp_millis()
    }

    fn trigger(cron: &str) -> Trigger {
        Trigger {
            worker: "report".into(),
            cron: cron.into(),
        }
    }

    #[test]
    fn a_new_trigger_waits_for_its_first_match() {
        let every_five: CronSchedule = "*/5 * * * *".parse().unwrap();
        let mut plan = Plan::default();
        let triggers = [(trigger("*/5 * * * *"), &every_five)];
        let step = plan.step(
            triggers.iter().map(|(t, s)| (t, *s)),
            at("2026-12-06T10:07:00Z"),
        );
        assert_eq!(step.runs, []);
        assert_eq!(
            step.baselines,
            [(trigger("*/5 * * * *"), ms("2026-12-06T10:07:00Z"))]
        );
        assert_eq!(step.wake, Some(at("2026-12-06T10:10:00Z")));

        let step = plan.step(
            triggers.iter().map(|(t, s)| (t, *s)),
            at("2026-12-06T10:09:59Z"),
        );
        assert_eq!(step.runs, []);
        let step = plan.step(
            triggers.iter().map(|(t, s)| (t, *s)),
            at("2026-12-06T10:10:00.002Z"),
        );
        assert_eq!(
            step.runs,
            [(trigger("*/5 * * * *"), ms("2026-12-06T10:10:00Z"))]
        );
        // The same match never runs twice.
        let step = plan.step(
            triggers.iter().map(|(t, s)| (t, *s)),
            at("2026-12-06T10:10:00.500Z"),
        );
        assert_eq!(step.runs, []);
        assert!(step.baselines.is_empty());
    }

    #[test]
    fn missed_matches_are_made_up_once_with_the_latest_time() {
        let every_minute: CronSchedule = "* * * * *".parse().unwrap();
        let records = [(trigger("* * * * *"), ms("2026-12-06T09:00:00Z"))];
        let mut plan = Plan::resume(records);
        let triggers = [(trigger("* * * * *"), &every_minute)];
        let step = plan.step(
            triggers.iter().map(|(t, s)| (t, *s)),
            at("2026-12-06T10:07:30Z"),
        );
        assert_eq!(
            step.runs,
            [(trigger("* * * * *"), ms("2026-12-06T10:07:00Z"))]
        );
        assert_eq!(step.wake, Some(at("2026-12-06T10:08:00Z")));
    }

    #[test]
    fn triggers_no_worker_has_are_forgotten() {
        let hourly: CronSchedule = "0 * * * *".parse().unwrap();
        let records = [
            (trigger("0 * * * *"), ms("2026-12-06T09:00:00Z")),
            (trigger("*/5 * * * *"), ms("2026-12-06T09:05:00Z")),
        ];
        let mut plan = Plan::resume(records);
        let hourly_trigger = trigger("0 * * * *");
        let step = plan.step([(&hourly_trigger, &hourly)], at("2026-12-06T09:30:00Z"));
        assert_eq!(step.forgotten, [trigger("*/5 * * * *")]);
        assert_eq!(step.runs, []);
    }
}
