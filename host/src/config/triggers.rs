//! `[triggers]`: the cron expressions at which the host runs the worker's
//! scheduled handler.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

use super::ConfigError;

/// Cron triggers per worker, as Cloudflare's paid plan allows a few.
const MAX_CRONS: usize = 10;

/// `[triggers]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Triggers {
    /// Cron expressions, in UTC: five fields (minute, hour, day of month,
    /// month, day of week) as Cloudflare takes them, or six with seconds
    /// first.
    #[serde(default)]
    pub crons: Vec<String>,
}

/// A parsed cron expression and the text it was written as.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    pub expression: String,
    cron: Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl FromStr for CronSchedule {
    type Err = ConfigError;

    fn from_str(expression: &str) -> Result<Self, ConfigError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| ConfigError::new(format!("triggers.crons: {expression:?}: {e}")))?;
        Ok(Self {
            expression: expression.to_owned(),
            cron,
        })
    }
}

impl CronSchedule {
    /// The last time at or before `now` the expression matches.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&now, true).ok()
    }

    /// The first time after `now` the expression matches.
    pub fn next(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&now, false).ok()
    }
}

/// The expressions of `triggers`, each parsed and checked.
pub(super) fn parse(triggers: &Triggers) -> Result<Vec<CronSchedule>, ConfigError> {
    if triggers.crons.len() > MAX_CRONS {
        return Err(ConfigError::new(format!(
            "triggers.crons lists {} expressions; a worker may have at most {MAX_CRONS}",
            triggers.crons.len()
        )));
    }
    for (n, expression) in triggers.crons.iter().enumerate() {
        if triggers.crons[..n].contains(expression) {
            return Err(ConfigError::new(format!(
                "triggers.crons lists {expression:?} twice"
            )));
        }
    }
    triggers.crons.iter().map(|cron| cron.parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn five_fields_as_cloudflare_takes_them_or_six_with_seconds() {
        let every_five: CronSchedule = "*/5 * * * *".parse().unwrap();
        let now = at("2026-12-06T10:07:30Z");
        assert_eq!(every_five.latest(now), Some(at("2026-12-06T10:05:00Z")));
        assert_eq!(every_five.next(now), Some(at("2026-12-06T10:10:00Z")));
        let weekdays: CronSchedule = "0 9 * * MON-FRI".parse().unwrap();
        assert_eq!(weekdays.next(now), Some(at("2026-12-07T09:00:00Z")));
        let seconds: CronSchedule = "*/10 * * * * *".parse().unwrap();
        assert_eq!(seconds.next(now), Some(at("2026-12-06T10:07:40Z")));
    }

    #[test]
    fn bad_expressions_are_refused_with_the_expression() {
        for bad in ["* * *", "61 * * * *", "* * * * * * 2027", "every minute"] {
            let triggers = Triggers {
                crons: vec![bad.into()],
            };
            let error = parse(&triggers).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
        let twice = Triggers {
            crons: vec!["* * * * *".into(), "* * * * *".into()],
        };
        assert!(parse(&twice).unwrap_err().to_string().contains("twice"));
    }
}
