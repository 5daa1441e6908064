//! Servers under test, run as child processes that stop when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// A child process that is killed when dropped, with its output kept.
pub struct Service {
    pub name: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `command`, collecting its stdout and stderr lines.
    pub fn spawn(name: &str, mut command: Command) -> Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().expect("output lock").push(line);
                }
            });
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            output,
        })
    }

    /// Waits for an output line for which `found` returns something.
    pub fn wait_for_line<T>(
        &self,
        timeout: Duration,
        found: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = self
                .output
                .lock()
                .expect("output lock")
                .iter()
                .find_map(|l| found(l))
            {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "{} did not print what was expected; its output:\n{}",
                    self.name,
                    self.output.lock().expect("output lock").join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The process id, for reading its memory use.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text after `key` up to the next whitespace, in `line`.
pub fn field_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()
}

/// Resident memory of a process, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc status")
}

/// A loopback port nothing listens on right now, for servers that cannot
/// announce the port they bound.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `GET path` on `addr` until it answers 200 or `timeout` passes.
/// A plain socket keeps the polling itself out of the measurement.
pub fn wait_for_200(addr: &str, path: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if get_status(addr, path).is_ok_and(|status| status == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "http://{addr}{path} did not answer 200 within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The status code of one `GET path` over a fresh connection.
pub fn get_status(addr: &str, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let status = std::str::from_utf8(&head[9..12])?.parse()?;
    Ok(status)
}
