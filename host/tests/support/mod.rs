//! Shared by the integration tests: guest components built once per test
//! process from guest-examples and tests/guests, in-process hosts on
//! ephemeral loopback ports, and the real `verge` binary for tests that
//! restart or kill the host.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod cluster;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use verge_host::objects::ObjectOptions;
use verge_host::platform::{Platform, PlatformOptions};
use verge_host::runtime::EngineOptions;
use verge_host::server::{AdminOptions, ConnectionLimits, Server, ServerOptions};
use verge_host::toolchain::{self, Symbols};

pub const TOKEN: &str = "test-admin-token";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A built guest: its component bytes and its verge.toml text.
#[derive(Clone)]
pub struct Guest {
    pub wasm: Vec<u8>,
    pub config: String,
    pub dir: PathBuf,
}

/// Builds the examples and the test guests (once per process; cargo's lock
/// makes concurrent test processes wait for one build) and returns the
/// guest whose library target is `name`.
pub fn guest(name: &str) -> Guest {
    static BUILT: OnceLock<Vec<toolchain::BuiltComponent>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        // Symbols kept, so a test can find the guest's function names in a
        // trap's backtrace.
        let build = |dir: &str| toolchain::build(&repo().join(dir), Symbols::Keep);
        let mut built = build("guest-examples").expect("building guest-examples");
        built.extend(build("host/tests/guests").expect("building test guests"));
        built
    });
    let component = built
        .iter()
        .find(|c| c.name == name.replace('-', "_"))
        .unwrap_or_else(|| panic!("no guest named {name}"));
    Guest {
        wasm: std::fs::read(&component.wasm).unwrap(),
        config: std::fs::read_to_string(component.package_dir.join("verge.toml")).unwrap(),
        dir: component.package_dir.clone(),
    }
}

/// A host running in this process on ephemeral loopback ports, with its
/// own data directory.
pub struct TestHost {
    pub platform: Arc<Platform>,
    pub url: String,
    pub admin_url: String,
    pub data: tempfile::TempDir,
    pub client: reqwest::Client,
    server: Option<Server>,
}

impl TestHost {
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// `dev` shows trap messages in error responses.
    pub async fn start_with(dev: bool) -> Self {
        Self::start_full(dev, ObjectOptions::default()).await
    }

    /// A host whose Durable Objects behave as `objects` says.
    pub async fn start_with_objects(objects: ObjectOptions) -> Self {
        Self::start_full(false, objects).await
    }

    async fn start_full(dev: bool, objects: ObjectOptions) -> Self {
        let data = tempfile::tempdir().unwrap();
        let platform = Platform::open(PlatformOptions {
            data_dir: data.path().to_path_buf(),
            engine: EngineOptions {
                max_instances: 64,
                max_objects: 64,
                max_memory_mb: 256,
                ..EngineOptions::default()
            },
            objects,
            dev,
            cluster: None,
        })
        .await
        .unwrap();
        let server = Server::start(
            platform.clone(),
            ServerOptions {
                listen: "127.0.0.1:0".parse().unwrap(),
                admin: Some(AdminOptions {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    token: TOKEN.into(),
                    hosts: Vec::new(),
                }),
                index: None,
                limits: ConnectionLimits::default(),
            },
        )
        .await
        .unwrap();
        Self {
            url: format!("http://{}", server.addr()),
            admin_url: format!("http://{}", server.admin_addr().unwrap()),
            platform,
            data,
            client: reqwest::Client::new(),
            server: Some(server),
        }
    }

    /// Deploys a guest through the admin API, as `verge deploy` does.
    pub async fn deploy(&self, guest: &Guest) -> reqwest::Response {
        let name = config_name(&guest.config);
        self.upload(&name, guest.wasm.clone(), &guest.config).await
    }

    /// Uploads raw bytes and config text as worker `name`.
    pub async fn upload(&self, name: &str, wasm: Vec<u8>, config: &str) -> reqwest::Response {
        upload(&self.client, &self.admin_url, name, wasm, config).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        json_body(self.get(path).await).await
    }

    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// The id of object `name` of `worker`'s `class`, asked of the admin API.
    pub async fn object_id(&self, worker: &str, class: &str, name: &str) -> String {
        let path = format!("/v1/workers/{worker}/objects/{class}/id?name={name}");
        self.admin_json(reqwest::Method::GET, &path).await["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id for {worker}/{class}/{name}"))
            .to_owned()
    }

    /// An admin API call without a body, answered with JSON.
    pub async fn admin_json(&self, method: reqwest::Method, path: &str) -> serde_json::Value {
        admin_json(&self.client, &self.admin_url, method, path).await
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.admin_url))
            .bearer_auth(TOKEN)
    }

    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}

pub async fn upload(
    client: &reqwest::Client,
    admin_url: &str,
    name: &str,
    wasm: Vec<u8>,
    config: &str,
) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .part(
            "component",
            reqwest::multipart::Part::bytes(wasm).file_name("worker.wasm"),
        )
        .text("config", config.to_owned());
    client
        .post(format!("{admin_url}/v1/workers/{name}/versions"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Runs the real `verge` CLI in `dir` against the admin API at
/// `admin_url`: its stdout, or a panic with its stderr.
pub fn verge_cli(dir: &Path, admin_url: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_verge"))
        .current_dir(dir)
        .args(args)
        .env("VERGE_HOST", admin_url)
        .env("VERGE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "verge {args:?} against {admin_url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// An admin API call without a body, answered with JSON.
pub async fn admin_json(
    client: &reqwest::Client,
    admin_url: &str,
    method: reqwest::Method,
    path: &str,
) -> serde_json::Value {
    let res = client
        .request(method, format!("{admin_url}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    json_body(res).await
}

/// GETs `url` and parses the JSON answer.
pub async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> T {
    json_body(client.get(url).send().await.unwrap()).await
}

/// A response's body as JSON; a body that is not JSON fails the test with
/// the status and the body, which say what went wrong.
/// Polls `url` for up to 20 s until `done` holds for its JSON.
pub async fn poll(
    client: &reqwest::Client,
    url: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value: serde_json::Value = get_json(client, url).await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{url} stayed {value}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn json_body<T: serde::de::DeserializeOwned>(res: reqwest::Response) -> T {
    let (url, status) = (res.url().clone(), res.status());
    let body = res.text().await.unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| {
        panic!("{url} answered {status} with a body that is not JSON ({e}): {body}")
    })
}

/// The `name = "..."` of a verge.toml.
pub fn config_name(config: &str) -> String {
    let table: toml::Table = toml::from_str(config).unwrap();
    table["name"].as_str().unwrap().to_owned()
}

/// The real `verge` binary running `serve` on ephemeral ports, with its log
/// captured.
pub struct VergeProcess {
    child: Child,
    pub url: String,
    pub admin_url: String,
    log: Arc<Mutex<String>>,
}

impl VergeProcess {
    pub fn serve(data: &Path) -> Self {
        Self::serve_with(data, &[], &[])
    }

    /// `verge serve` with extra environment variables.
    pub fn serve_with_env(data: &Path, env: &[(&str, &str)]) -> Self {
        Self::serve_with(data, &[], env)
    }

    /// `verge serve` with extra flags (replacing the defaults of the same
    /// name) and environment variables.
    pub fn serve_with(data: &Path, flags: &[&str], env: &[(&str, &str)]) -> Self {
        let defaults = [("--max-instances", "64"), ("--max-objects", "256")];
        let kept = defaults
            .iter()
            .filter(|(flag, _)| !flags.contains(flag))
            .flat_map(|(flag, value)| [*flag, *value]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_verge"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(kept)
            .args(flags)
            .arg("--data")
            .arg(data)
            .env("VERGE_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting verge serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("verge serve is ready") {
                    let _ = ready_tx.send(line.clone());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("verge serve did not start; log:\n{}", log.lock().unwrap()));
        Self {
            url: format!("http://{}", field(&ready, "listen=")),
            admin_url: format!("http://{}", field(&ready, "admin=")),
            child,
            log,
        }
    }

    /// Everything the process logged so far.
    /// Deploys a guest through this host's admin API.
    pub async fn deploy(&self, client: &reqwest::Client, guest: &Guest) -> reqwest::StatusCode {
        let name = config_name(&guest.config);
        upload(
            client,
            &self.admin_url,
            &name,
            guest.wasm.clone(),
            &guest.config,
        )
        .await
        .status()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "log never contained {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id, to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for VergeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a log line, or `"key":"value"` from a JSON one.
fn field(line: &str, key: &str) -> SocketAddr {
    let json_key = format!("\"{}\":\"", key.trim_end_matches('='));
    let (start, end) = match line.find(key) {
        Some(at) => (at + key.len(), char::is_whitespace as fn(char) -> bool),
        None => (
            line.find(&json_key)
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                + json_key.len(),
            (|c| c == '"') as fn(char) -> bool,
        ),
    };
    let value: String = line[start..].chars().take_while(|c| !end(*c)).collect();
    value
        .parse()
        .unwrap_or_else(|_| panic!("bad address {value:?} in {line:?}"))
}

/// How long `/hello` may take to answer during an attack: generous, since
/// a debug build shares two cores with the attack and the tests beside it,
/// while a wedged host does not answer at all.
const FAIR_ANSWER: Duration = Duration::from_secs(8);

/// Polls another worker's `/hello` while an attack runs, one request at a
/// time on a fresh connection from 127.0.0.2 (so limits per client address
/// that the attack trips from 127.0.0.1 do not apply to it), recording how
/// long each answer took: the fairness check of the hostile-guest tests.
pub struct HelloWatch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<HelloStats>,
}

/// What a [`HelloWatch`] saw.
#[derive(Debug)]
pub struct HelloStats {
    pub polls: usize,
    pub slowest: Duration,
    /// Every answer that was not a 200, or did not come.
    pub failures: Vec<String>,
}

impl HelloWatch {
    /// Starts polling `{base}/hello` (the `hello` example must be deployed),
    /// from a thread and runtime of its own, so that the attack's clients
    /// in this process do not delay the measurement.
    pub fn start(base: &str) -> Self {
        let url = format!("{base}/hello");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(poll_hello(url, stopped))
        });
        Self { stop, thread }
    }

    /// Stops polling and checks that every answer was a 200 within
    /// [`FAIR_ANSWER`].
    pub async fn assert_fair(self, attack: &str) -> HelloStats {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let thread = self.thread;
        let stats = tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        eprintln!(
            "{attack}: /hello answered {} polls, the slowest in {:?}",
            stats.polls, stats.slowest
        );
        assert!(
            stats.failures.is_empty(),
            "during {attack}, /hello failed: {:?}",
            stats.failures
        );
        assert!(
            stats.slowest < FAIR_ANSWER,
            "during {attack}, /hello took {:?} to answer (the bound is {FAIR_ANSWER:?})",
            stats.slowest
        );
        stats
    }
}

/// Polls `url` one request at a time, on a fresh connection from
/// 127.0.0.2, until `stopped` (at least once).
async fn poll_hello(url: String, stopped: Arc<std::sync::atomic::AtomicBool>) -> HelloStats {
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut stats = HelloStats {
        polls: 0,
        slowest: Duration::ZERO,
        failures: Vec::new(),
    };
    loop {
        let started = Instant::now();
        let outcome = match client.get(&url).send().await {
            Ok(response) => {
                let status = response.status();
                match response.text().await {
                    Ok(_) if status == 200 => Ok(()),
                    Ok(body) => Err(format!("{status}: {body}")),
                    Err(e) => Err(format!("{status}, then the body failed: {e}")),
                }
            }
            Err(e) => Err(format!("no answer: {e}")),
        };
        let took = started.elapsed();
        stats.polls += 1;
        stats.slowest = stats.slowest.max(took);
        if let Err(why) = outcome {
            stats.failures.push(format!("after {took:?}: {why}"));
        }
        if stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The resident memory of process `pid`, in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib << 10
}

/// Waits (up to 10 s) for process `pid`'s resident memory to come back
/// within `slack` bytes of `baseline`.
pub async fn assert_rss_returns(pid: u32, baseline: u64, slack: u64, attack: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rss = rss_bytes(pid);
        if rss <= baseline + slack {
            eprintln!(
                "{attack}: RSS back to {} MiB (baseline {} MiB)",
                rss >> 20,
                baseline >> 20
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {attack}, the host's RSS stayed at {} MiB for 10 s (baseline {} MiB, slack {} MiB)",
            rss >> 20,
            baseline >> 20,
            slack >> 20
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where the hosts of one build share compiled components (under
/// `target/tmp`): a data directory seeded from it maps a component
/// compiled by an earlier host back in, as after a restart, instead of
/// compiling it again (seconds per component in a debug build).
fn artifact_store() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("verge-test-artifacts")
}

/// Seeds `data` (a host's data directory, before anything is deployed to
/// it) with the compiled components earlier hosts kept.
pub fn seed_artifacts(data: &Path) {
    let target = data.join("artifacts");
    std::fs::create_dir_all(&target).unwrap();
    let Ok(entries) = std::fs::read_dir(artifact_store()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".cwasm") && !target.join(&name).exists() {
            let _ = std::fs::copy(entry.path(), target.join(&name));
        }
    }
}

/// Keeps the components the host of `data` compiled, for later hosts.
pub fn keep_artifacts(data: &Path) {
    let store = artifact_store();
    std::fs::create_dir_all(&store).unwrap();
    let Ok(entries) = std::fs::read_dir(data.join("artifacts")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(".cwasm") || store.join(&name).exists() {
            continue;
        }
        // Copied aside, then renamed: another test process may be reading.
        let partial = store.join(format!(
            "{}.{}.partial",
            name.to_string_lossy(),
            std::process::id()
        ));
        if std::fs::copy(entry.path(), &partial).is_ok() {
            let _ = std::fs::rename(&partial, store.join(&name));
        }
    }
}
