//! Hostile guests against a real host: runaway and huge SQL, loops and
//! sleeps by the thousand, memory bombs, forged log lines, stale events and
//! poisoned imports (docs/security.md is the spec). Each test checks the
//! clear error the attack gets, that another worker's `/hello` keeps
//! answering within a second while it runs, and, where memory is involved,
//! that the host's RSS comes back near where it was.
//!
//! Connections, sockets, SSRF and framing are in `hostile_network.rs`. The
//! cases too big for CI are `#[ignore]`d here and run by `just hostile-big`.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    HelloWatch, TOKEN, TestHost, VergeProcess, assert_rss_returns, get_json, guest, keep_artifacts,
    rss_bytes, seed_artifacts, upload,
};
use verge_host::cli::raise_open_files_limit;

/// RSS the allocator may keep after an attack.
const RSS_SLACK: u64 = 64 << 20;

/// A query that never ends.
const RUNAWAY: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

/// The Durable Object part of every hostile worker's verge.toml.
const OBJECTS: &str = r#"
[[durable_objects.bindings]]
name = "TARGET"
class_name = "Target"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Target"]
"#;

/// verge.toml for the hostile guest uploaded as `name`, serving
/// `/<name>/*`, with `limits` under `[limits]`.
fn hostile_config(name: &str, limits: &str) -> String {
    format!("name = \"{name}\"\nroutes = [\"/{name}/*\"]\n\n[limits]\n{limits}\n{OBJECTS}")
}

/// An in-process host serving `hello` and the hostile guest as `name`.
async fn host_with(name: &str, limits: &str) -> TestHost {
    let host = TestHost::start().await;
    seed_artifacts(host.data.path());
    assert_eq!(host.deploy(&guest("hello")).await.status(), 201);
    let deployed = host
        .upload(name, guest("hostile").wasm, &hostile_config(name, limits))
        .await;
    assert_eq!(deployed.status(), 201, "{}", deployed.text().await.unwrap());
    keep_artifacts(host.data.path());
    host
}

/// A `verge serve` process with `flags`, serving `hello` and the hostile
/// guest as `name`.
async fn process_with(
    data: &tempfile::TempDir,
    flags: &[&str],
    name: &str,
    limits: &str,
) -> VergeProcess {
    seed_artifacts(data.path());
    let host = VergeProcess::serve_with(data.path(), flags, &[]);
    let client = reqwest::Client::new();
    assert_eq!(host.deploy(&client, &guest("hello")).await, 201);
    let deployed = upload(
        &client,
        &host.admin_url,
        name,
        guest("hostile").wasm,
        &hostile_config(name, limits),
    )
    .await;
    assert_eq!(deployed.status(), 201, "{}", deployed.text().await.unwrap());
    keep_artifacts(data.path());
    host
}

/// Runs `query` in object `object` through `{base}/{worker}/obj/...`:
/// the object's report (`ok`, `kind`, `message`, `ms`, `first`) under
/// `report`, or the failed call's error under `call_error`; `call_ms`
/// either way.
async fn sql(
    client: &reqwest::Client,
    base: &str,
    worker: &str,
    object: &str,
    query: &str,
) -> Value {
    let response = client
        .post(format!("{base}/{worker}/obj/{object}/sql"))
        .body(query.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{query}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The object's report of a statement that ran (or failed) in an event
/// that completed.
fn report<'a>(answer: &'a Value, what: &str) -> &'a Value {
    assert!(
        answer["report"].is_object(),
        "{what}: the call failed: {answer}"
    );
    &answer["report"]
}

/// The statement succeeded.
fn assert_ok(answer: &Value, what: &str) {
    assert_eq!(report(answer, what)["ok"], true, "{what}: {answer}");
}

/// The statement was stopped by the SQL budget (500 ms), promptly: the
/// object's report says so, or, when the event could not complete (SQLite
/// rolls back a batch whose write it interrupted), the failed call does.
fn assert_interrupted(answer: &Value, what: &str) {
    let (message, ms) = match answer["report"].as_object() {
        Some(report) => {
            assert_eq!(report["ok"], false, "{what} was not stopped: {answer}");
            (report["message"].as_str(), report["ms"].as_u64())
        }
        None => (answer["call_error"].as_str(), answer["call_ms"].as_u64()),
    };
    let (message, ms) = (message.unwrap_or_default(), ms.unwrap());
    assert!(
        message.contains("SQL time"),
        "{what}: the error does not say the SQL budget stopped it: {answer}"
    );
    assert!(
        (400..1000).contains(&ms),
        "{what} was stopped after {ms} ms; limits.sql_ms is 500: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_sql_is_interrupted_and_frees_its_thread() {
    let host = host_with("h", "sql_ms = 500").await;
    let client = host.client.clone();
    let url = host.url.clone();
    let watch = HelloWatch::start(&host.url);

    // Two runaways at once; a third object's events meanwhile.
    let runaways: Vec<_> = ["runaway-a", "runaway-b"]
        .into_iter()
        .map(|object| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { sql(&client, &url, "h", object, RUNAWAY).await })
        })
        .collect();
    let mut bystander_slowest = Duration::ZERO;
    let mut bystander_events = 0;
    while !runaways.iter().all(|r| r.is_finished()) {
        let started = Instant::now();
        let answer = sql(&client, &url, "h", "bystander", "SELECT 1").await;
        assert_ok(&answer, "a bystander's event");
        bystander_slowest = bystander_slowest.max(started.elapsed());
        bystander_events += 1;
    }
    for runaway in runaways {
        assert_interrupted(&runaway.await.unwrap(), "a runaway recursive query");
    }
    assert!(
        bystander_events >= 2,
        "only {bystander_events} bystander events overlapped"
    );
    assert!(
        bystander_slowest < Duration::from_secs(1),
        "another object's event took {bystander_slowest:?} while two runaways ran"
    );

    // The threads are free again: the runaways' objects answer their next
    // event (a fresh SQL budget), and more objects than the object runtime
    // has threads answer at once.
    for object in ["runaway-a", "runaway-b"] {
        let answer = sql(&client, &url, "h", object, "SELECT 1").await;
        assert_ok(&answer, "an object's next event after its runaway");
    }
    let started = Instant::now();
    let many = (0..16).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move { sql(&client, &url, "h", &format!("after-{i}"), "SELECT 1").await }
    });
    for answer in futures::future::join_all(many).await {
        assert_ok(&answer, "a fresh object's event");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "16 fresh objects took {:?} to answer a SELECT 1",
        started.elapsed()
    );

    // A trigger that never ends is stopped the same way, and its write
    // leaves nothing behind.
    let setup = sql(
        &client,
        &url,
        "h",
        "trigger",
        &format!(
            "CREATE TABLE t (x); CREATE TABLE sink (n); \
             CREATE TRIGGER forever AFTER INSERT ON t BEGIN INSERT INTO sink {RUNAWAY}; END"
        ),
    )
    .await;
    assert_ok(&setup, "creating the endless trigger");
    let write = sql(&client, &url, "h", "trigger", "INSERT INTO t VALUES (1)").await;
    eprintln!("an endless trigger's write: {write}");
    assert_interrupted(&write, "an INSERT whose trigger never ends");
    watch.assert_fair("runaway SQL").await;

    // The object answers its next event, and the write left nothing.
    let count = sql(&client, &url, "h", "trigger", "SELECT count(*) FROM t").await;
    assert_eq!(
        report(
            &count,
            "the object's next event, after its interrupted write"
        )["first"],
        0,
        "the interrupted write was kept: {count}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sql_result_is_refused_and_its_memory_returned() {
    let data = tempfile::tempdir().unwrap();
    let host = process_with(&data, &[], "h", "sql_ms = 20000").await;
    let client = reqwest::Client::new();
    // Warm up: the objects' runtime and an instance, before the baseline.
    let warm = sql(&client, &host.url, "h", "warm", "SELECT 1").await;
    assert_ok(&warm, "warming up");
    let baseline = rss_bytes(host.pid());
    let watch = HelloWatch::start(&host.url);

    // 4,000 rows of 1 MB each; four objects at once.
    let huge = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000) \
                SELECT zeroblob(1000000) FROM c";
    let queries = (0..4).map(|i| sql(&client, &host.url, "h", ["a", "b", "c", "d"][i], huge));
    for answer in futures::future::join_all(queries).await {
        let report = report(&answer, "a huge result");
        assert_eq!(report["ok"], false, "{answer}");
        let message = report["message"].as_str().unwrap_or_default();
        assert!(message.contains("larger than 32 MiB"), "{answer}");
    }
    // The objects go on.
    let after = sql(&client, &host.url, "h", "a", "SELECT 1").await;
    assert_ok(&after, "the next event");

    assert_rss_returns(host.pid(), baseline, RSS_SLACK, "huge SQL results").await;
    watch.assert_fair("huge SQL results").await;
}

/// 1,000 requests at once to `path`, on a host that gives one worker 50
/// instances: what came back, as (status, retry-after present, body).
async fn thousand_at_once(url: &str) -> Vec<(u16, bool, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let requests = (0..1000).map(|_| {
        let client = client.clone();
        async move {
            match client.get(url).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry = response.headers().contains_key("retry-after");
                    (status, retry, response.text().await.unwrap_or_default())
                }
                Err(e) => (0, false, format!("no answer: {e}")),
            }
        }
    });
    futures::future::join_all(requests).await
}

/// Flags for the thousand-request tests: 50 instances per worker, and
/// enough connections from one address for the thousand.
const FIFTY_PER_WORKER: &[&str] = &[
    "--max-instances-per-worker",
    "50",
    "--max-connections-per-ip",
    "5000",
];

/// The answers that are the worker's share running out: 503, `retry-after`,
/// saying so.
fn busy(outcomes: &[(u16, bool, String)]) -> usize {
    outcomes
        .iter()
        .filter(|(status, retry, body)| {
            *status == 503 && *retry && body.contains("already runs 50 requests")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_spinning_requests_get_their_workers_share_and_no_more() {
    raise_open_files_limit();
    let data = tempfile::tempdir().unwrap();
    let host = process_with(&data, FIFTY_PER_WORKER, "spin", "cpu_ms = 50").await;
    let watch = HelloWatch::start(&host.url);
    let outcomes = thousand_at_once(&format!("{}/spin/loop", host.url)).await;
    let busy = busy(&outcomes);
    let cpu = outcomes
        .iter()
        .filter(|(status, _, body)| *status == 503 && body.contains("CPU time limit of 50 ms"))
        .count();
    let other: Vec<_> = outcomes
        .iter()
        .filter(|(status, retry, body)| {
            !(*status == 503
                && ((*retry && body.contains("already runs 50 requests"))
                    || body.contains("CPU time limit of 50 ms")))
        })
        .take(5)
        .collect();
    eprintln!("1,000 spinners: {cpu} stopped by the CPU limit, {busy} refused as busy");
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(cpu >= 50, "only {cpu} spinners ran");
    assert!(
        busy >= 500,
        "only {busy} of 1,000 spinners were refused as busy"
    );
    watch.assert_fair("1,000 spinning requests").await;
    // The worker's share is given back.
    let ok = reqwest::get(format!("{}/spin/ok", host.url)).await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sleeping_requests_get_their_workers_share_and_no_more() {
    raise_open_files_limit();
    let data = tempfile::tempdir().unwrap();
    let host = process_with(&data, FIFTY_PER_WORKER, "nap", "wall_ms = 10000").await;
    let watch = HelloWatch::start(&host.url);
    let outcomes = thousand_at_once(&format!("{}/nap/sleep?ms=4000", host.url)).await;
    let slept = outcomes
        .iter()
        .filter(|(status, _, body)| *status == 200 && body == "slept")
        .count();
    let busy = busy(&outcomes);
    eprintln!("1,000 sleepers: {slept} slept, {busy} refused as busy");
    let other: Vec<_> = outcomes
        .iter()
        .filter(|(status, retry, body)| {
            !((*status == 200 && body == "slept")
                || (*status == 503 && *retry && body.contains("already runs 50 requests")))
        })
        .take(5)
        .collect();
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(
        (1..=100).contains(&slept),
        "{slept} sleepers ran: 50 at a time may"
    );
    assert_eq!(slept + busy, 1000);
    watch.assert_fair("1,000 sleeping requests").await;
    let ok = reqwest::get(format!("{}/nap/ok", host.url)).await.unwrap();
    assert_eq!(ok.status(), 200);
}

/// `count` requests at once, each taking `mb` MiB and holding it 2 s, on a
/// host started with `flags`: checks that those past the memory budget
/// are refused with a 503 saying so, that the hoards were really resident,
/// and that the memory comes back.
async fn memory_bombs(flags: &[&str], memory_mb: u64, mb: u64, count: usize) {
    let data = tempfile::tempdir().unwrap();
    let limits = format!("memory_mb = {memory_mb}\nwall_ms = 20000\ncpu_ms = 20000");
    let host = process_with(&data, flags, "bomb", &limits).await;
    let client = reqwest::Client::new();
    let warm = client
        .get(format!("{}/bomb/ok", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let baseline = rss_bytes(host.pid());
    let watch = HelloWatch::start(&host.url);

    let url = format!("{}/bomb/hold?mb={mb}&ms=2000", host.url);
    let bombs = futures::future::join_all((0..count).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let response = client.get(&url).send().await.unwrap();
            let status = response.status().as_u16();
            let retry = response.headers().contains_key("retry-after");
            (status, retry, response.text().await.unwrap())
        })
    }));
    let pid = host.pid();
    let sampler = async {
        let mut peak = 0;
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            peak = peak.max(rss_bytes(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    };
    let (outcomes, peak) = tokio::join!(bombs, sampler);
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    let held = outcomes
        .iter()
        .filter(|(status, _, body)| *status == 200 && body.starts_with("held"))
        .count();
    let refused = outcomes
        .iter()
        .filter(|(status, retry, body)| *status == 503 && *retry && body.contains("memory budget"))
        .count();
    eprintln!(
        "{count} bombs of {mb} MiB: {held} held, {refused} refused; RSS peaked at {} MiB over a {} MiB baseline",
        peak >> 20,
        baseline >> 20
    );
    assert_eq!(held + refused, count, "unexpected answers: {outcomes:?}");
    assert!(held >= 1, "no bomb was let through: {outcomes:?}");
    assert!(refused >= 1, "the budget refused nothing: {outcomes:?}");
    assert!(
        peak >= baseline + ((mb << 20) * 3 / 4),
        "RSS peaked at only {} MiB (baseline {} MiB): the hoard was not resident, the test proves nothing",
        peak >> 20,
        baseline >> 20
    );
    assert_rss_returns(host.pid(), baseline, RSS_SLACK, "memory bombs").await;
    watch.assert_fair("memory bombs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_past_the_hosts_budget_are_refused_and_their_memory_returned() {
    memory_bombs(&["--memory-budget-mb", "400"], 256, 200, 8).await;
}

/// Eight requests growing to 900 MiB each: more than CI machines have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs about 4 GiB of free memory: run with `just hostile-big`"]
async fn big_eight_900_mib_memory_bombs_are_held_to_the_budget() {
    memory_bombs(
        &["--max-memory-mb", "1024", "--memory-budget-mb", "4096"],
        1000,
        900,
        8,
    )
    .await;
}

/// The lines of `log` that carry `request_id`.
fn lines_of<'a>(log: &'a str, request_id: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(request_id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_logs_cannot_forge_lines_flood_the_log_or_leak_host_backtraces() {
    let data = tempfile::tempdir().unwrap();
    let host = process_with(&data, &[], "logger", "memory_mb = 128").await;
    let client = reqwest::Client::new();
    let watch = HelloWatch::start(&host.url);
    let forged = "2026-01-01T00:00:00Z  INFO forged: admin login";

    let logged = client
        .get(format!("{}/logger/log", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(logged.status(), 200);
    let request_id = logged.headers()["x-verge-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let log = host.wait_for_log("more bytes)");
    let ours = lines_of(&log, &request_id);
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "a guest forged a line of the host's log:\n{}",
        ours.join("\n")
    );
    assert!(
        log.contains(&format!("x\\n{forged}")),
        "the newline was not escaped:\n{}",
        ours.join("\n")
    );
    // Written to stdout, the newline ends a guest line; the next one is
    // still the guest's, under the host's own prefix.
    let stdout_line = log
        .lines()
        .find(|l| l.contains(&format!("{forged} (stdout)")))
        .expect("the stdout line was logged");
    assert!(!stdout_line.starts_with(forged), "{stdout_line}");
    assert!(stdout_line.contains(&request_id), "{stdout_line}");
    let cut = ours
        .iter()
        .find(|l| l.contains("LLLL"))
        .expect("the 40 MiB line was logged, cut");
    assert!(
        cut.len() < 16 << 10,
        "the long line kept {} bytes",
        cut.len()
    );
    let rest = (40 << 20) - (8 << 10);
    assert!(
        cut.contains(&format!("… ({rest} more bytes)")),
        "{}",
        &cut[cut.len().saturating_sub(200)..]
    );
    let total: usize = ours.iter().map(|l| l.len() + 1).sum();
    assert!(total < 1 << 20, "one request logged {total} bytes");

    // A guest logging in a loop is cut off at 256 KiB.
    let flood = client
        .get(format!(
            "{}/logger/log-flood?lines=10000&bytes=1024",
            host.url
        ))
        .send()
        .await
        .unwrap();
    let flood_id = flood.headers()["x-verge-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(flood.status(), 200, "{}", flood.text().await.unwrap());
    let log = host.wait_for_log("log budget");
    let flooded: usize = lines_of(&log, &flood_id).iter().map(|l| l.len() + 1).sum();
    assert!(
        flooded < 320 << 10,
        "a request that logged 10 MiB left {flooded} bytes in the host's log"
    );

    // A trap: one line, with its error id and the guest's message, and
    // none of the host's Rust backtrace.
    let trapped = client
        .get(format!("{}/logger/panic", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(trapped.status(), 500);
    let error_id = trapped.headers()["x-verge-error-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let trap_request = trapped.headers()["x-verge-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let log = host.wait_for_log(&error_id);
    // The request's own log line names the error id too.
    let trap_lines: Vec<&str> = lines_of(&log, &error_id)
        .into_iter()
        .filter(|line| !line.contains("verge::request"))
        .collect();
    assert_eq!(trap_lines.len(), 1, "{trap_lines:?}");
    for host_frame in ["rust_begin_unwind", "std::panicking"] {
        assert!(
            !log.contains(host_frame),
            "the log shows the host's backtrace ({host_frame}):\n{}",
            trap_lines[0]
        );
    }
    assert!(
        !trap_lines[0].contains("verge_host::runtime"),
        "the trap line shows host frames: {}",
        trap_lines[0]
    );
    let continued: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(char::is_whitespace))
        .take(5)
        .collect();
    assert!(continued.is_empty(), "multi-line records: {continued:?}");
    watch.assert_fair("log forgery").await;
    // docs/security.md: the trap's line has "its own panic message".
    assert!(
        trap_lines[0].contains("panics on purpose"),
        "the trap's line (error id {error_id}) lacks the guest's panic message; \
         the request's lines are:\n{}",
        lines_of(&log, &trap_request).join("\n")
    );
}

/// The resident memory of process `pid` once it stops falling (the
/// allocator gives back what a burst freed a little later), waiting up to
/// 10 s.
async fn settled_rss(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = rss_bytes(pid);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_bytes(pid);
        if now + (1 << 20) >= last {
            return now.min(last);
        }
        last = now;
    }
    last
}

/// How long an impatient client waits after sending. The object takes
/// twice as long over each event, so whatever queues behind one has lost
/// its caller by the time the object could run it. (Not 100 ms: in a debug
/// build an 8 MiB body takes some 200 ms of copying to reach an object,
/// and a client leaving before that tests only the front door.)
const PATIENCE: Duration = Duration::from_millis(500);

/// What an impatient client saw.
#[derive(Debug, PartialEq)]
enum Impatient {
    /// A 503 with `retry-after` in time: the object is overloaded.
    Overloaded,
    /// Another answer in time.
    Answered(String),
    /// Nothing in time: it left.
    GaveUp,
}

/// POSTs `body` to `path` on a raw connection, waits [`PATIENCE`] after
/// the last byte for an answer, then closes the connection.
async fn impatient_post(addr: std::net::SocketAddr, path: &str, body: bytes::Bytes) -> Impatient {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = vec![0u8; 4096];
    match tokio::time::timeout(PATIENCE, stream.read(&mut answer)).await {
        Ok(Ok(n)) if n > 0 => {
            let text = String::from_utf8_lossy(&answer[..n]).to_lowercase();
            if text.starts_with("http/1.1 503") && text.contains("retry-after") {
                Impatient::Overloaded
            } else {
                Impatient::Answered(text.lines().next().unwrap_or_default().to_owned())
            }
        }
        _ => Impatient::GaveUp,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_events_are_refused_or_dropped_not_run() {
    let data = tempfile::tempdir().unwrap();
    let limits = "cpu_ms = 5000\nmemory_mb = 256\nwall_ms = 30000";
    // 60 requests at once and /hello fit in the 64 instances
    // VergeProcess gives a host.
    let host = process_with(&data, &[], "stale", limits).await;
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let slow = "/stale/obj/slow/slow?ms=1000";
    let runs_url = format!("{}/stale/obj/slow/runs", host.url);
    let body = bytes::Bytes::from(vec![b'x'; 8 << 20]);
    // The baseline is a host that has served the same traffic from patient
    // clients, once its memory has settled: 60 bodies of 8 MiB at once
    // (each instance slot used keeps 2 MiB resident, by design), and one
    // event to the object, which runs to the end and is counted.
    let warm_up = (0..60).map(|_| {
        patient
            .post(format!("{}/stale/ok", host.url))
            .body(body.clone())
            .send()
    });
    for response in futures::future::join_all(warm_up).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let control = patient
        .post(format!("{}{slow}", host.url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(control.status(), 200, "{}", control.text().await.unwrap());
    let baseline = settled_rss(host.pid()).await;
    let watch = HelloWatch::start(&host.url);

    // Three waves of 60 events of 8 MiB, to an object that takes 300 ms
    // over each, from clients that leave half a second after sending.
    let addr: std::net::SocketAddr = host.url.trim_start_matches("http://").parse().unwrap();
    let mut outcomes = Vec::new();
    for _wave in 0..3 {
        let wave = (0..60).map(|_| impatient_post(addr, slow, body.clone()));
        outcomes.extend(futures::future::join_all(wave).await);
    }
    let overloaded = outcomes
        .iter()
        .filter(|o| **o == Impatient::Overloaded)
        .count();
    let gave_up = outcomes.iter().filter(|o| **o == Impatient::GaveUp).count();
    let answered: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Impatient::Answered(_)))
        .collect();
    eprintln!(
        "180 impatient events: {overloaded} refused as overloaded, {gave_up} gave up, {} answered otherwise",
        answered.len()
    );
    assert!(answered.is_empty(), "unexpected answers: {answered:?}");
    // Queued behind whatever is left: an RPC to the same object.
    let runs: i64 = get_json(&patient, &runs_url).await;
    let stale_runs = runs - 1;
    eprintln!("the object ran {stale_runs} of the 180 impatient events");
    assert!(
        stale_runs >= 1,
        "no impatient event reached the object: the test proves nothing"
    );
    assert!(
        stale_runs <= 15,
        "the object ran {stale_runs} of 180 events, most of them after their callers had left"
    );
    assert_rss_returns(host.pid(), baseline, RSS_SLACK, "stale events").await;
    watch.assert_fair("stale events").await;
}

/// A SQLite file made by `setup`.
fn database(setup: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("import.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(setup).unwrap();
    drop(conn);
    std::fs::read(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_imports_are_refused_and_a_trigger_cannot_run_forever() {
    let host = host_with("h", "sql_ms = 500").await;
    let id = host.object_id("h", "Target", "imported").await;
    let import = |bytes: Vec<u8>| {
        host.client
            .put(format!(
                "{}/v1/workers/h/objects/Target/{id}/import",
                host.admin_url
            ))
            .bearer_auth(TOKEN)
            .body(bytes)
            .send()
    };
    let refused = |what: &'static str, needle: &'static str| {
        move |response: reqwest::Response| async move {
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, 400, "{what}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(needle), "{what}: {body}");
        }
    };

    let kv_trigger = database(
        "CREATE TABLE _verge_kv (key TEXT PRIMARY KEY, value BLOB);
         CREATE TABLE stolen (key TEXT);
         CREATE TRIGGER sneaky AFTER INSERT ON _verge_kv BEGIN INSERT INTO stolen VALUES (new.key); END;",
    );
    refused("a trigger on _verge_kv", "sneaky")(import(kv_trigger).await.unwrap()).await;
    let meta_view = database("CREATE VIEW _verge_meta AS SELECT 1 AS x;");
    refused("a view named _verge_meta", "_verge_meta")(import(meta_view).await.unwrap()).await;
    refused("garbage", "not a SQLite database")(
        import(b"this is not a database".to_vec()).await.unwrap(),
    )
    .await;
    let mut truncated = database("CREATE TABLE t (x); INSERT INTO t VALUES (zeroblob(100000));");
    truncated.truncate(truncated.len() / 2);
    truncated.extend(std::iter::repeat_n(0xa5, 4096));
    let response = import(truncated).await.unwrap();
    assert_eq!(
        response.status(),
        400,
        "a corrupt database: {}",
        response.text().await.unwrap()
    );

    let watch = HelloWatch::start(&host.url);
    let endless = database(&format!(
        "CREATE TABLE t (x); CREATE TABLE sink (n);
         CREATE TRIGGER forever AFTER INSERT ON t BEGIN INSERT INTO sink {RUNAWAY}; END;"
    ));
    let response = import(endless).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "a user table's trigger is the user's business: {}",
        response.text().await.unwrap()
    );
    let write = sql(
        &host.client,
        &host.url,
        "h",
        "imported",
        "INSERT INTO t VALUES (1)",
    )
    .await;
    eprintln!("an imported endless trigger's write: {write}");
    assert_interrupted(&write, "a write into the imported table");
    watch.assert_fair("an imported endless trigger").await;
    // The object answers its next event, and the write left nothing.
    let count = sql(
        &host.client,
        &host.url,
        "h",
        "imported",
        "SELECT count(*) FROM t",
    )
    .await;
    let next = "the object's next event, after its interrupted write";
    assert_eq!(report(&count, next)["first"], 0, "{count}");
    host.shutdown().await;
}
