//! A throwaway PostgreSQL for the cluster tests: a fresh database per test,
//! in a server of its own (initdb in a temporary directory, on a free
//! loopback port) or, with `VERGE_TEST_DATABASE_URL` set, in the server
//! that URL names.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections, or to come back.
const READY: Duration = Duration::from_secs(30);

/// A fresh, empty database for one test, gone again when this is dropped.
pub struct Postgres {
    url: String,
    kind: Kind,
}

enum Kind {
    /// A server of our own, in a temporary directory.
    Throwaway(Server),
    /// Database `name` in the server of `VERGE_TEST_DATABASE_URL`.
    Shared { admin_url: String, name: String },
}

impl Postgres {
    /// A fresh, empty database for one test. With `VERGE_TEST_DATABASE_URL`
    /// set: a new database with a random name created in that server
    /// (dropped again on Drop). Otherwise: a throwaway server — initdb in a
    /// temp dir, started on a free 127.0.0.1 port, stopped and deleted on
    /// Drop.
    pub fn start() -> Postgres {
        match std::env::var("VERGE_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => Self::shared(admin_url),
            _ => Self::throwaway(),
        }
    }

    fn shared(admin_url: String) -> Postgres {
        let name = format!("verge_test_{:016x}", random());
        psql(&admin_url, &format!("CREATE DATABASE \"{name}\""));
        Postgres {
            url: with_database(&admin_url, &name),
            kind: Kind::Shared { admin_url, name },
        }
    }

    fn throwaway() -> Postgres {
        let owner = owner();
        let dir = tempfile::Builder::new()
            .prefix("verge-pg-")
            .tempdir()
            .expect("creating a temporary directory for PostgreSQL");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("handing PostgreSQL's temporary directory to the postgres user");
        }
        let mut server = Server {
            dir,
            port: 0,
            owner,
            child: None,
        };
        // initdb does not sync (a throwaway cluster need not survive a
        // power cut), while the server keeps fsync on: the tests check
        // durability across restarts.
        let initdb = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args(["--auth=trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin("initdb").display()));
        assert!(
            initdb.status.success(),
            "initdb failed ({}):\n{}{}",
            initdb.status,
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        // The free port may be taken again before the server binds it (by
        // a server another test starts at the same moment): then another.
        for attempt in 1.. {
            server.port = free_port();
            match server.run() {
                Ok(()) => break,
                Err(PortTaken) if attempt < 10 => continue,
                Err(PortTaken) => panic!("PostgreSQL found every port taken:\n{}", server.log()),
            }
        }
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:{}/postgres", server.port),
            kind: Kind::Throwaway(server),
        }
    }

    /// `postgres://user@127.0.0.1:PORT/db`: the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql` (one or more statements) with psql against the test's
    /// database and returns what it printed: the rows of the last
    /// statement, one a line, fields separated by `|`, with no header and no
    /// command tags. A failure fails the test with psql's stderr.
    pub fn psql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }

    /// Everything the throwaway server logged so far (empty with
    /// `VERGE_TEST_DATABASE_URL`).
    pub fn log(&self) -> String {
        match &self.kind {
            Kind::Throwaway(server) => server.log(),
            Kind::Shared { .. } => String::new(),
        }
    }

    /// Stops the throwaway server (fast shutdown: sessions are cut off,
    /// committed work is checkpointed) and waits until it has exited. A
    /// server already stopped stays so.
    pub fn stop(&mut self) {
        let server = self.throwaway_server("stop");
        if let Some(child) = server.child.take()
            && !shut_down(child, READY)
        {
            panic!(
                "PostgreSQL did not stop within {READY:?} of a fast shutdown, and was killed:\n{}",
                server.log()
            );
        }
    }

    /// Starts the stopped throwaway server again, on the same port and data
    /// directory, and waits until it accepts connections. A running server
    /// is left alone.
    pub fn resume(&mut self) {
        let server = self.throwaway_server("resume");
        if server.child.is_some() {
            return;
        }
        // While the server was down, a client's connection elsewhere may
        // have been given its port: wait for that to close.
        let deadline = Instant::now() + READY;
        while server.run().is_err() {
            assert!(
                Instant::now() < deadline,
                "port {} stayed taken for {READY:?}, so PostgreSQL could not come back:\n{}",
                server.port,
                server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the throwaway server (fast shutdown) and starts it again on
    /// the same port and data directory, waiting until it accepts
    /// connections: a Postgres restart in the middle of a test.
    pub fn restart(&mut self) {
        self.throwaway_server("restart");
        self.stop();
        self.resume();
    }

    fn throwaway_server(&mut self, what: &str) -> &mut Server {
        match &mut self.kind {
            Kind::Throwaway(server) => server,
            Kind::Shared { .. } => panic!(
                "Postgres::{what} needs a throwaway server, but VERGE_TEST_DATABASE_URL is set: \
                 unset it to run this test"
            ),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A throwaway server stops in Server's drop, before its directory
        // goes.
        if let Kind::Shared { admin_url, name } = &self.kind {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            if let Err(e) = try_psql(admin_url, &sql) {
                eprintln!("could not drop test database {name}: {e}");
            }
        }
    }
}

/// A PostgreSQL server of our own: its data directory (`data`), Unix
/// socket and log live in `dir`.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    /// The uid and gid the server runs as, when not as us.
    owner: Option<(u32, u32)>,
    /// The postmaster, while it runs.
    child: Option<Child>,
}

/// The server could not bind its port.
struct PortTaken;

impl Server {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// PostgreSQL program `name`, run as the server's owner, in `dir` (it
    /// may not be allowed into ours).
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(bin(name));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the postmaster on `port` and waits until it accepts
    /// connections.
    fn run(&mut self) -> Result<(), PortTaken> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening PostgreSQL's log");
        let logged_before = log.metadata().map_or(0, |m| m.len() as usize);
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "max_connections=200"])
            .args(["-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("opening PostgreSQL's log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin("postgres").display()));
        // Kept before waiting, so that a test failing here still stops it.
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        loop {
            let child = self.child.as_mut().unwrap();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = self.log();
                let this_run = log.get(logged_before..).unwrap_or(&log);
                if this_run.contains("could not create any TCP/IP sockets") {
                    return Err(PortTaken);
                }
                panic!("PostgreSQL exited ({status}) before accepting connections:\n{log}");
            }
            if self.ready() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections on port {} within {READY:?}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ready(&self) -> bool {
        Command::new(bin("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .args(["-t", "1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server that died on its own has nothing left to stop; the
        // directory goes after this, with the fields.
        if let Some(child) = self.child.take() {
            shut_down(child, Duration::from_secs(10));
        }
    }
}

/// Fast shutdown (SIGINT) of a postmaster, then, if it has not exited
/// within `patience`, immediate shutdown (SIGQUIT), then SIGKILL. Whether
/// the fast shutdown did it.
fn shut_down(mut child: Child, patience: Duration) -> bool {
    let pid = child.id() as libc::pid_t;
    for (signal, wait) in [
        (libc::SIGINT, patience),
        (libc::SIGQUIT, Duration::from_secs(5)),
    ] {
        // SAFETY: kill has no memory-safety preconditions; `pid` is our
        // unreaped child, so it cannot be another process.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                // Exited (or cannot be waited for, so nothing to do).
                _ => return signal == libc::SIGINT,
            }
        }
    }
    // Its backends notice that the postmaster is gone and exit too.
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Where PostgreSQL's programs are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off PATH), else
/// PATH (an empty path, so `bin` names them bare). When none is found and
/// we are root, Debian's `postgresql` is installed first (seconds, no
/// build), as the browser test installs Chromium.
fn bindir() -> &'static Path {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR.get_or_init(|| {
        let found = find_bindir();
        if found.as_os_str().is_empty() && owner().is_some() {
            eprintln!("installing PostgreSQL with apt-get for the cluster tests");
            let _ = Command::new("sh")
                .args([
                    "-c",
                    "apt-get install -y -qq postgresql || (apt-get update -qq && apt-get install -y -qq postgresql)",
                ])
                .status();
            return find_bindir();
        }
        found
    })
}

fn find_bindir() -> PathBuf {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        // libpq-dev's pg_config names a bindir without a server in it.
        if out.status.success() && has_initdb(&dir) {
            return dir;
        }
    }
    let version = |dir: &Path| -> Vec<u32> {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        name.split('.')
            .map_while(|part| part.parse().ok())
            .collect()
    };
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| has_initdb(&dir.join("bin")))
        .max_by_key(|dir| version(dir))
        .map(|dir| dir.join("bin"))
        .unwrap_or_default()
}

/// PostgreSQL program `name`.
fn bin(name: &str) -> PathBuf {
    bindir().join(name)
}

/// Who the server runs as: as root, the `postgres` user, since initdb and
/// postgres refuse to run as root; otherwise us (None).
fn owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("running id");
        assert!(
            out.status.success(),
            "PostgreSQL refuses to run as root, and there is no postgres user to run it as: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// A free loopback port, below the kernel's ephemeral range: a port in
/// that range could be handed to a client's connection while a test holds
/// the server down, keeping it from coming back on its port.
fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32768);
    for _ in 0..100 {
        let port = 10_000 + random() % ephemeral_low.saturating_sub(10_000).max(1);
        if let Ok(port) = u16::try_from(port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    // Some ephemeral port, then.
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().unwrap().port()
}

/// A random number, different on every call.
fn random() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority = base.find("://").map_or(0, |at| at + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |at| authority + at);
    format!("{}/{name}{query}", &base[..path])
}

/// Runs `sql` with psql against `url` and returns its stdout, failing the
/// test with its stderr.
fn psql(url: &str, sql: &str) -> String {
    try_psql(url, sql).unwrap_or_else(|e| panic!("{e}"))
}

fn try_psql(url: &str, sql: &str) -> Result<String, String> {
    // No ~/.psqlrc, stop at the first error, rows only, unaligned.
    let out = Command::new(bin("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", bin("psql").display()))?;
    if !out.status.success() {
        return Err(format!(
            "psql {sql:?} against {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
