//! Servers under test, run as child processes that stop when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

/// A running server and the address it announced.
pub struct Service {
    pub name: String,
    pub addr: String,
    child: Child,
}

impl Service {
    /// Starts `command` and waits until a line of its output (stdout or
    /// stderr) yields an address through `ready`.
    pub fn start(
        name: &str,
        mut command: Command,
        ready: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let ready = std::sync::Arc::new(ready);
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let (tx, ready) = (tx.clone(), ready.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = ready(&line) {
                        let _ = tx.send(addr);
                    }
                }
            });
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| anyhow!("{name} did not become ready"))?;
        Ok(Self {
            name: name.to_owned(),
            addr,
            child,
        })
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
