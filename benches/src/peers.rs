//! The servers compared, each answering `GET /hello` with the same JSON:
//! Verge (the hello example), workerd (a JS worker), `wasmtime serve` (a
//! wasi:http component) and native axum. Plus the process-per-request
//! baselines: a native binary CGI-style, and a Node.js process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{Service, free_port, wait_for_200};
use crate::repo;
use crate::tools::Tool;

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A server answering `GET /hello`, and how long it took from process
/// start to its first 200.
pub struct Running {
    pub name: &'static str,
    pub addr: String,
    pub service: Service,
    pub start_to_first_200: Duration,
}

/// Spawns `command` (already told to listen on `addr`) and times it until
/// `GET ready_path` answers 200.
fn start(name: &'static str, command: Command, addr: String, ready_path: &str) -> Result<Running> {
    let started = Instant::now();
    let service = Service::spawn(name, command)?;
    wait_for_200(&addr, ready_path, START_TIMEOUT)
        .with_context(|| format!("{name} never served {ready_path}"))?;
    Ok(Running {
        name,
        addr,
        service,
        start_to_first_200: started.elapsed(),
    })
}

/// The binaries this workspace builds.
pub struct Bins {
    pub verge: PathBuf,
    pub native_hello: PathBuf,
}

/// The admin token every Verge the harness starts uses.
const ADMIN_TOKEN: &str = "verge-bench-admin-token";

/// `verge serve` on `data` and a fixed port, given `flags` besides those,
/// timed to its first 200 for `ready_path` (so a worker serving it must
/// already be deployed there).
pub fn verge(bins: &Bins, data: &Path, flags: &[&str], ready_path: &str) -> Result<Running> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut command = Command::new(&bins.verge);
    command
        .args(["serve", "--listen", &addr, "--admin-listen", "127.0.0.1:0"])
        .args(flags)
        .arg("--data")
        .arg(data)
        .env("VERGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn");
    start("verge", command, addr, ready_path)
}

/// A fresh `verge serve` with nothing deployed; returns it and its admin URL
/// once it is ready.
pub fn verge_empty(bins: &Bins, data: &Path) -> Result<(Service, String, String)> {
    verge_empty_with(bins, data, &[])
}

/// [`verge_empty`] with more flags (`--cluster ...`).
pub fn verge_empty_with(
    bins: &Bins,
    data: &Path,
    flags: &[&str],
) -> Result<(Service, String, String)> {
    let mut command = Command::new(&bins.verge);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(flags)
        .arg("--data")
        .arg(data)
        .env("VERGE_ADMIN_TOKEN", ADMIN_TOKEN)
        // Info for the ready line; without a line per request, as the peers
        // measured beside it log none either.
        .env("RUST_LOG", "info,verge::request=off");
    let service = Service::spawn("verge", command)?;
    let ready = service.wait_for_line(START_TIMEOUT, |line| {
        line.contains("verge serve is ready")
            .then(|| line.to_owned())
    })?;
    let field = |key: &str| crate::process::field_after(&ready, key).map(str::to_owned);
    let listen = field("listen=").context("no listen address")?;
    let admin = field("admin=").context("no admin address")?;
    Ok((service, listen, format!("http://{admin}")))
}

/// `POST` to `url`, failing unless it answers 2xx.
pub fn post(url: &str) -> Result<()> {
    let response = reqwest::blocking::Client::new().post(url).send()?;
    if !response.status().is_success() {
        bail!("POST {url} answered {}", response.status());
    }
    Ok(())
}

/// Uploads a component and its verge.toml through the admin API.
pub fn upload(admin_url: &str, name: &str, wasm: &[u8], config: &str) -> Result<()> {
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "component",
            reqwest::blocking::multipart::Part::bytes(wasm.to_vec()),
        )
        .text("config", config.to_owned());
    let response = reqwest::blocking::Client::new()
        .post(format!("{admin_url}/v1/workers/{name}/versions"))
        .bearer_auth(ADMIN_TOKEN)
        .multipart(form)
        .send()?;
    if !response.status().is_success() {
        bail!("upload refused: {}", response.text().unwrap_or_default());
    }
    Ok(())
}

/// workerd serving benches/peers/workerd/hello.js.
pub fn workerd(workerd: &Tool) -> Result<Running> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut command = workerd.command();
    command
        .current_dir(repo().join("benches/peers/workerd"))
        .args([
            "serve",
            "config.capnp",
            "--socket-addr",
            &format!("http={addr}"),
        ]);
    start("workerd", command, addr, "/hello")
}

/// workerd serving benches/peers/workerd/durable.js, its SQLite-backed
/// objects stored under `storage`.
pub fn workerd_durable(workerd: &Tool, storage: &Path) -> Result<Running> {
    workerd_with_storage(workerd, "durable.capnp", storage, "/inventory/ready")
}

/// workerd serving benches/peers/workerd/chat.js, the chat room on
/// hibernatable WebSockets, its SQLite-backed rooms stored under `storage`.
pub fn workerd_chat(workerd: &Tool, storage: &Path, ready_path: &str) -> Result<Running> {
    workerd_with_storage(workerd, "chat.capnp", storage, ready_path)
}

/// workerd serving `config` from benches/peers/workerd, with the config's
/// `storage` disk service at `storage`.
fn workerd_with_storage(
    workerd: &Tool,
    config: &str,
    storage: &Path,
    ready_path: &str,
) -> Result<Running> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut command = workerd.command();
    command
        .current_dir(repo().join("benches/peers/workerd"))
        .args(["serve", config, "--socket-addr", &format!("http={addr}")])
        .arg("--directory-path")
        .arg(format!("storage={}", storage.display()));
    start("workerd", command, addr, ready_path)
}

/// `wasmtime serve` running the wasi:http hello component.
pub fn wasmtime_serve(wasmtime: &Tool, component: &Path) -> Result<Running> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut command = wasmtime.command();
    command
        .args(["serve", "-Scli", "--addr", &addr])
        .arg(component);
    start("wasmtime serve", command, addr, "/hello")
}

/// The same JSON from a plain axum handler.
pub fn native(bins: &Bins) -> Result<Running> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut command = Command::new(&bins.native_hello);
    command.arg(&addr);
    start("native axum", command, addr, "/hello")
}

/// How long `command` takes from spawn to exit: the cost of a process per
/// request. Fails if it exits unsuccessfully.
pub fn spawn_to_exit(mut command: Command) -> Result<Duration> {
    let started = Instant::now();
    let output = command.output().context("spawning")?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!("exited with {}", output.status);
    }
    Ok(elapsed)
}
