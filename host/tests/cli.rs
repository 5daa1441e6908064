//! The `verge` command as a user runs it: `new` scaffolds a crate that
//! builds and serves as-is, `dev` rebuilds and hot-swaps on change,
//! `deploy` uploads to a running host.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use support::{TOKEN, VergeProcess, get_json, repo};

fn verge(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verge"));
    command
        .current_dir(dir)
        // Reuse the dependencies the example builds already compiled.
        .env("CARGO_TARGET_DIR", repo().join("guest-examples/target"));
    command
}

/// Streams a child's stderr lines into a channel.
fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one contains `needle`; returns it.
fn wait_for(lines: &Receiver<String>, needle: &str) -> String {
    let mut seen = String::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(240)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => panic!("never saw {needle:?}; output so far:\n{seen}"),
        }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_scaffold_serves_under_dev_and_hot_swaps_on_change() {
    let work = tempfile::tempdir().unwrap();
    let status = verge(work.path())
        .args(["new", "my-worker", "--sdk"])
        .arg(repo().join("sdk"))
        .status()
        .unwrap();
    assert!(status.success());
    let project = work.path().join("my-worker");
    for file in [
        "Cargo.toml",
        "verge.toml",
        "src/lib.rs",
        ".cargo/config.toml",
        ".gitignore",
    ] {
        assert!(project.join(file).exists(), "{file} scaffolded");
    }
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[patch.crates-io]\nverge-sdk = { path = "),
        "--sdk patches `verge-sdk` to the SDK given:\n{manifest}"
    );

    let mut child = verge(&project)
        .args(["dev", "--listen", "127.0.0.1:0"])
        .env("RUST_BACKTRACE", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let _dev = KillOnDrop(child);
    let ready = wait_for(&lines, "verge dev: serving");
    let url = ready
        .split("on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_end_matches('/')
        .to_owned();

    let client = reqwest::Client::new();
    let home: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(home["message"], "Hello from my-worker!");
    let greet = client.get(format!("{url}/hello/ada")).send().await.unwrap();
    assert_eq!(greet.text().await.unwrap(), "Hello, ada!");

    let source = project.join("src/lib.rs");
    let code = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, code.replace("Hello, {name}!", "Howdy, {name}!")).unwrap();
    wait_for(&lines, "now serving version 2");
    let greet = client.get(format!("{url}/hello/ada")).send().await.unwrap();
    assert_eq!(greet.text().await.unwrap(), "Howdy, ada!");

    std::fs::write(&source, "this is not rust").unwrap();
    wait_for(&lines, "still serving the previous version");
    let greet = client.get(format!("{url}/hello/ada")).send().await.unwrap();
    assert_eq!(greet.text().await.unwrap(), "Howdy, ada!");

    std::fs::write(project.join(".dev.vars"), "API_TOKEN=\"local\"\n").unwrap();
    std::fs::write(
        &source,
        code.replace("ctx.var(\"GREETING\")?", "ctx.secret(\"API_TOKEN\")?")
            .replace(
                ".run(req, env)",
                ".get(\"/boom\", |_, _| panic!(\"boom under verge dev\"))\n        .run(req, env)",
            ),
    )
    .unwrap();
    wait_for(&lines, "now serving version 3");
    let home: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(home["message"], "local", ".dev.vars provides secrets");

    // A panic reads as its message, where it was raised and the guest's
    // frames; never the host's backtrace, though RUST_BACKTRACE is set.
    let boom = client.get(format!("{url}/boom")).send().await.unwrap();
    assert_eq!(boom.status(), 500);
    let page = boom.text().await.unwrap();
    assert!(
        page.contains("panicked at src/lib.rs:") && page.contains("boom under verge dev"),
        "{page}"
    );
    assert!(page.contains("guest backtrace:\n"), "{page}");
    assert!(page.contains("my_worker.wasm!"), "{page}");
    for host in ["verge_host", "tokio::", "std::panicking"] {
        assert!(!page.contains(host), "{host} in the dev page:\n{page}");
    }
    assert!(page.len() < 8 << 10, "{} bytes:\n{page}", page.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_builds_and_uploads_to_a_running_host() {
    let data = tempfile::tempdir().unwrap();
    let host = VergeProcess::serve(data.path());
    let hello = repo().join("guest-examples/hello");

    let refused = verge(&hello)
        .args(["deploy", "--host", &host.admin_url])
        .env("VERGE_ADMIN_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");

    let deployed = verge(&hello)
        .args(["deploy", "--host", &host.admin_url])
        .env("VERGE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&deployed.stdout);
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    assert!(stdout.contains("deployed `hello` version 1"), "{stdout}");

    let res = reqwest::get(format!("{}/hello", host.url)).await.unwrap();
    assert_eq!(res.status(), 200);

    let listed = verge(&hello)
        .args(["workers", "--host", &host.admin_url])
        .env("VERGE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("hello"));
}

/// A wrong `--host` or token fails in one line that says what is wrong,
/// before the build: the project's build command would leave a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_checks_the_host_and_token_before_building() {
    let data = tempfile::tempdir().unwrap();
    let host = VergeProcess::serve(data.path());
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("verge.toml"),
        "name = \"never-built\"\n[build]\ncommand = \"touch built\"\ncomponent = \"never.wasm\"\n",
    )
    .unwrap();
    let admin_address = host.admin_url.trim_start_matches("http://").to_owned();
    for (target, token, says) in [
        (
            host.url.as_str(),
            TOKEN,
            "is not a Verge admin API: the public port?",
        ),
        (
            admin_address.as_str(),
            TOKEN,
            "needs a scheme: http://127.0.0.1:",
        ),
        (host.admin_url.as_str(), "wrong", "refused the token"),
    ] {
        let deployed = verge(project.path())
            .args(["deploy", "--host", target])
            .env("VERGE_ADMIN_TOKEN", token)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&deployed.stderr);
        assert!(!deployed.status.success(), "{target}: {stderr}");
        assert!(stderr.contains(says), "{target}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{target}: {stderr}");
    }
    assert!(
        !project.path().join("built").exists(),
        "deploy built before checking the host"
    );
}

/// `dev` on a taken port fails before it builds, naming `--listen`.
#[test]
fn dev_on_a_taken_port_fails_before_building() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("verge.toml"),
        "name = \"never-built\"\n[build]\ncommand = \"touch built\"\ncomponent = \"never.wasm\"\n",
    )
    .unwrap();
    let dev = verge(project.path())
        .args(["dev", "--listen", &address])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&dev.stderr);
    assert!(!dev.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{address} is already in use")) && stderr.contains("--listen"),
        "{stderr}"
    );
    assert!(!project.path().join("built").exists(), "dev built first");
}

/// Needs `cargo component`, which takes minutes to build: `.ci/run`
/// installs it; without it the test says how and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_component_build_runs_on_the_host() {
    let installed = Command::new("cargo")
        .args(["component", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!(
            "SKIPPED cargo_component_build_runs_on_the_host: cargo-component is not installed; \
             `cargo install cargo-component --locked` (as .ci/run does) to run it"
        );
        return;
    }
    // The target cargo-component builds for; rustup adds it in seconds.
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip1"])
        .status();
    let hello = repo().join("guest-examples/hello");
    let status = Command::new("cargo")
        .args(["component", "build", "--release"])
        .current_dir(&hello)
        .env("CARGO_TARGET_DIR", repo().join("guest-examples/target"))
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "cargo component build failed");
    let wasm = std::fs::read(repo().join("guest-examples/target/wasm32-wasip1/release/hello.wasm"))
        .unwrap();

    let host = support::TestHost::start().await;
    let config = std::fs::read_to_string(hello.join("verge.toml")).unwrap();
    assert_eq!(host.upload("hello", wasm, &config).await.status(), 201);
    let body: serde_json::Value = host.get("/hello").await.json().await.unwrap();
    assert_eq!(body["message"], "Hello from Verge!");
}

/// The requests an index page offers: (method, path, body, needs network).
fn offered_requests(index: &str) -> Vec<(String, String, Option<String>, bool)> {
    let attribute = |button: &str, name: &str| {
        let start = button.find(&format!("{name}=\""))? + name.len() + 2;
        let value = &button[start..start + button[start..].find('"')?];
        Some(
            value
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    index
        .split("<button ")
        .skip(1)
        .map(|button| &button[..button.find('>').unwrap()])
        .map(|button| {
            (
                attribute(button, "data-method").unwrap(),
                attribute(button, "data-path").unwrap(),
                attribute(button, "data-body"),
                button.contains("data-network"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_builds_and_serves_every_example_with_an_index() {
    let data = tempfile::tempdir().unwrap();
    let mut child = verge(&repo())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let _up = KillOnDrop(child);
    let ready = wait_for(&lines, "Verge is up: ");
    let url = ready
        .split("Verge is up: ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_owned();

    let index = reqwest::get(format!("{url}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for example in ["hello", "router", "fetch-proxy"] {
        assert!(
            index.contains(&format!("<h2>{example}</h2>")),
            "{example} missing from the index"
        );
    }
    assert!(index.contains("href=\"/hello\""));
    // Every request the page offers works, sent as its button sends it
    // (the one that needs the internet aside).
    let client = reqwest::Client::new();
    let offered = offered_requests(&index);
    assert!(offered.len() >= 9, "{offered:?}");
    for (method, path, body, network) in offered {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method.clone(), format!("{url}{path}"));
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            network || status.is_success(),
            "the index offers {method} {path}, which answers {status}: {text}"
        );
    }
    let proxied = reqwest::get(format!("{url}/proxy?url={url}/hello"))
        .await
        .unwrap();
    assert_eq!(
        proxied.status(),
        403,
        "fetch-proxy is no way back into the host itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_commands_list_export_import_and_delete() {
    let data = tempfile::tempdir().unwrap();
    let host = VergeProcess::serve(data.path());
    let client = reqwest::Client::new();
    let counters = support::guest("counter-rpc");
    let deployed = support::upload(
        &client,
        &host.admin_url,
        "counter-rpc",
        counters.wasm,
        &counters.config,
    )
    .await;
    assert_eq!(deployed.status(), 201);
    client
        .post(format!("{}/counter/a?by=41", host.url))
        .send()
        .await
        .unwrap();

    let work = tempfile::tempdir().unwrap();
    let objects = |args: &[&str]| {
        let class = ["--worker", "counter-rpc", "--class", "Counter"];
        support::verge_cli(
            work.path(),
            &host.admin_url,
            &[&["objects"][..], args, &class].concat(),
        )
    };
    // An object's name is recorded before its first reply leaves.
    assert!(
        objects(&["list"]).contains(" a"),
        "the named object is listed"
    );

    let file = work.path().join("a.sqlite");
    objects(&["export", "--name", "a", "-o", file.to_str().unwrap()]);
    assert!(
        std::fs::read(&file)
            .unwrap()
            .starts_with(b"SQLite format 3\0")
    );
    objects(&["import", "--name", "b", "-i", file.to_str().unwrap()]);
    let b: serde_json::Value = get_json(&client, &format!("{}/counter/b", host.url)).await;
    assert_eq!(b["value"], 41, "the import carried the data over");

    objects(&["delete", "--name", "a"]);
    let a: serde_json::Value = get_json(&client, &format!("{}/counter/a", host.url)).await;
    assert_eq!(a["value"], 0);

    let listed = objects(&["list"]);
    let header = listed.lines().next().unwrap_or_default();
    for column in ["ID", "SIZE", "LAST ACTIVE", "NAME"] {
        assert!(header.contains(column), "{listed}");
    }

    let missing = verge(work.path())
        .args([
            "objects",
            "delete",
            "--name",
            "never-was",
            "--worker",
            "counter-rpc",
        ])
        .args(["--class", "Counter", "--host", &host.admin_url])
        .env("VERGE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{stderr}");
    assert!(
        stderr.contains("no object named never-was in class Counter of worker counter-rpc"),
        "{stderr}"
    );
}

/// Runs `verge` against `host` with the test token; returns whether it
/// succeeded, and its stdout and stderr.
fn run_against(host: &VergeProcess, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = verge(dir)
        .args(args)
        .args(["--host", &host.admin_url])
        .env("VERGE_ADMIN_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Like [`run_against`], for a command that must succeed; returns stdout.
fn succeed(host: &VergeProcess, dir: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_against(host, dir, args);
    assert!(ok, "verge {args:?} failed: {stderr}");
    stdout
}

/// Like [`run_against`], for a command that must fail; returns stderr.
fn fail(host: &VergeProcess, dir: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_against(host, dir, args);
    assert!(!ok, "verge {args:?} succeeded: {stdout}");
    stderr
}

/// The whole version lifecycle through the real binary: list versions,
/// activate one, roll back step by step through the history and to a
/// chosen version, upload without activating, see the host's status, and
/// delete the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_activate_rollback_status_and_delete() {
    let data = tempfile::tempdir().unwrap();
    let host = VergeProcess::serve(data.path());
    let client = reqwest::Client::new();
    let hello = support::guest("hello");
    let greetings = ["Hello from Verge!", "Version two", "Version three"];
    for greeting in greetings {
        let config = hello.config.replace("Hello from Verge!", greeting);
        let uploaded = support::upload(
            &client,
            &host.admin_url,
            "hello",
            hello.wasm.clone(),
            &config,
        )
        .await;
        assert_eq!(uploaded.status(), 201);
    }
    let serving = || {
        let client = client.clone();
        let url = format!("{}/hello/env", host.url);
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    let versions = succeed(&host, dir, &["versions", "hello"]);
    let lines: Vec<&str> = versions.lines().collect();
    for header in ["VERSION", "HASH", "SIZE", "UPLOADED", "ACTIVE"] {
        assert!(lines[0].contains(header), "{versions}");
    }
    assert!(
        lines[1].starts_with("v3") && lines[1].ends_with("* active"),
        "{versions}"
    );
    assert!(
        lines[2].starts_with("v2") && lines[2].ends_with("rollback target"),
        "{versions}"
    );
    assert!(
        lines[3].starts_with("v1") && lines[3].contains("just now"),
        "{versions}"
    );
    assert!(lines[3].contains("KiB"), "{versions}");
    let json: serde_json::Value =
        serde_json::from_str(&succeed(&host, dir, &["versions", "hello", "--json"])).unwrap();
    assert_eq!(json["active_version"], 3);

    let activated = succeed(&host, dir, &["activate", "hello", "1"]);
    assert!(activated.contains("now serving version 1"), "{activated}");
    assert_eq!(serving().await, greetings[0]);
    let again = succeed(&host, dir, &["activate", "hello", "1"]);
    assert!(again.contains("already serving version 1"), "{again}");

    // History: 1, 2, 3, then 1 activated. Rollback undoes one step at a
    // time: back to 3, then 2, then 1, then nothing is left.
    for (version, greeting) in [(3, greetings[2]), (2, greetings[1]), (1, greetings[0])] {
        let rolled = succeed(&host, dir, &["rollback", "hello"]);
        assert!(
            rolled.contains(&format!("now serving version {version}")),
            "{rolled}"
        );
        assert_eq!(serving().await, greeting);
    }
    let nothing = fail(&host, dir, &["rollback", "hello"]);
    assert!(
        nothing.contains("no earlier version to roll back to"),
        "{nothing}"
    );

    let to = succeed(&host, dir, &["rollback", "hello", "--to", "3"]);
    assert!(to.contains("now serving version 3"), "{to}");
    assert_eq!(serving().await, greetings[2]);
    let unknown = fail(&host, dir, &["rollback", "hello", "--to", "9"]);
    assert!(
        unknown.contains("worker `hello` has no version 9"),
        "{unknown}"
    );

    let deployed = succeed(&host, &hello.dir, &["deploy", "--no-activate"]);
    let command = format!("verge activate hello 4 --host {}", host.admin_url);
    assert!(deployed.contains(&command), "{deployed}");
    assert_eq!(
        serving().await,
        greetings[2],
        "--no-activate serves nothing new"
    );

    let status = succeed(&host, dir, &["status"]);
    for line in [
        "(healthy)",
        "workers     1",
        "objects     0 active",
        "websockets  0 open, 0 hibernated",
        "alarms      0 scheduled, 0 due",
    ] {
        assert!(
            status.contains(line),
            "{line:?} missing from:
{status}"
        );
    }
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("hello") && l.contains("v3") && l.ends_with("yes")),
        "{status}"
    );

    // No terminal to ask on, and no --yes: refused, nothing deleted.
    let refused = fail(&host, dir, &["delete", "hello"]);
    assert!(refused.contains("pass --yes"), "{refused}");
    assert_eq!(refused.lines().count(), 1, "{refused}");
    assert_eq!(serving().await, greetings[2]);

    let deleted = succeed(&host, dir, &["delete", "hello", "--yes"]);
    assert!(deleted.contains("deleted `hello`"), "{deleted}");
    let gone = reqwest::get(format!("{}/hello", host.url)).await.unwrap();
    assert_eq!(gone.status(), 404);
    let listing = fail(&host, dir, &["versions", "hello"]);
    assert!(listing.contains("no worker named `hello`"), "{listing}");
}

/// Started without VERGE_ADMIN_TOKEN, `verge serve` generates a token into
/// its data directory, readable by its owner alone; the CLI pointed at
/// that directory uses it, and nothing gets in without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_generates_a_private_admin_token_that_the_cli_finds() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("verge-data");
    let mut child = verge(work.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(&data)
        .env_remove("VERGE_ADMIN_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let _serve = KillOnDrop(child);
    let ready = wait_for(&lines, "verge serve is ready");
    let admin = ready
        .split("admin=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let token_file = data.join("admin-token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is private");

    let open = reqwest::get(format!("http://{admin}/v1/workers"))
        .await
        .unwrap();
    assert_eq!(open.status(), 401, "the admin API is never open");

    // Run from the directory holding verge-data/, the CLI finds the token.
    let listed = verge(work.path())
        .args(["workers", "--host", &format!("http://{admin}")])
        .env_remove("VERGE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}
