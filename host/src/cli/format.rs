//! How the CLI talks to people: tables with headers, times as
//! "3 min ago", sizes as "1.2 MiB", questions on the terminal. Every
//! listing goes through here, so they all read alike.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write as _};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::clock::unix_now;

/// Rows under column headers, each column as wide as its widest cell.
/// A dozen lines: a table crate would bring terminal handling (colours,
/// wrapping) that a listing meant for `grep` and `awk` is better without.
pub(super) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// The table as text, columns two spaces apart, no trailing blanks.
    pub(super) fn render(&self) -> String {
        let lines = || std::iter::once(&self.headers).chain(&self.rows);
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|column| {
                lines()
                    .map(|cells| cells[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for cells in lines() {
            let mut line = String::new();
            for (cell, width) in cells.iter().zip(&widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub(super) fn print(&self) {
        print!("{}", self.render());
    }
}

/// One line from stdin, without its line ending; `question` goes to
/// stderr first when stdin is a terminal (piped input needs no prompt).
pub(super) fn ask(question: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{question} ");
        std::io::stderr().flush()?;
    }
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("reading stdin")?;
    Ok(answer.trim_end_matches(['\r', '\n']).to_owned())
}

/// A Unix time as people say it: "just now", "3 min ago", "5 h ago",
/// "2 days ago", and past a week the date (UTC).
pub(super) fn ago(unix_secs: i64) -> String {
    ago_from(unix_secs, unix_now())
}

fn ago_from(unix_secs: i64, now: i64) -> String {
    let secs = now - unix_secs;
    match secs {
        ..60 => "just now".to_owned(),
        60..3_600 => format!("{} min ago", secs / 60),
        3_600..86_400 => format!("{} h ago", secs / 3_600),
        86_400..172_800 => "yesterday".to_owned(),
        172_800..604_800 => format!("{} days ago", secs / 86_400),
        _ => {
            let at = UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64);
            humantime::format_rfc3339_seconds(at).to_string()[..10].to_owned()
        }
    }
}

/// A Unix time from a host's JSON answer, as [`ago`] says it; `-` when
/// missing or 0 (the host never saw it).
pub(super) fn when(value: &serde_json::Value) -> String {
    match value.as_i64() {
        Some(secs) if secs > 0 => ago(secs),
        _ => "-".to_owned(),
    }
}

/// A time in ms since the Unix epoch from a host's JSON answer, as an
/// RFC 3339 time to the second (UTC), or `-` for none.
pub(super) fn timestamp_ms(value: &serde_json::Value) -> String {
    match value.as_i64() {
        Some(ms) if ms > 0 => {
            let at = UNIX_EPOCH + Duration::from_millis(ms as u64);
            humantime::format_rfc3339_seconds(at).to_string()
        }
        _ => "-".to_owned(),
    }
}

/// A version number from a host's JSON answer as `v3`, or `-` for none.
pub(super) fn version(value: &serde_json::Value) -> String {
    value.as_u64().map_or("-".to_owned(), |v| format!("v{v}"))
}

/// A duration as "2h 5m 3s", for uptimes.
pub(super) fn duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// A byte count in the largest binary unit that keeps it at least 1.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        let now = unix_now();
        assert_eq!(ago_from(now - 5, now), "just now");
        assert_eq!(ago_from(now - 180, now), "3 min ago");
        assert_eq!(ago_from(now - 5 * 3_600, now), "5 h ago");
        assert_eq!(ago_from(now - 30 * 3_600, now), "yesterday");
        assert_eq!(ago_from(now - 3 * 86_400, now), "3 days ago");
        assert_eq!(ago_from(1_700_000_000, now), "2023-11-14");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn tables_align_columns_under_headers() {
        let mut table = Table::new(&["name", "version"]);
        table.row(vec!["hello".into(), "3".into()]);
        table.row(vec!["counter-rpc".into(), "12".into()]);
        assert_eq!(
            table.render(),
            "NAME         VERSION\nhello        3\ncounter-rpc  12\n"
        );
    }
}
