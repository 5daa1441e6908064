//! What an operator sees of a running host, through the real binary: one
//! log line per request (human or JSON), `verge tail`, Prometheus metrics
//! at `/metrics`, and guest panics that read as what they are.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use support::{TOKEN, TestHost, VergeProcess, guest};

/// `verge tail ARGS` against `host`, its stdout lines in a channel, once it
/// said it is tailing (the host subscribed it before answering).
struct Tail {
    child: Child,
    lines: Receiver<String>,
}

impl Tail {
    fn start(host: &VergeProcess, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_verge"))
            .arg("tail")
            .args(args)
            .args(["--host", &host.admin_url])
            .env("VERGE_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting verge tail");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        stderr.read_line(&mut said).unwrap();
        assert!(said.contains("tailing"), "verge tail said: {said}");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("verge tail printed nothing")
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-verge-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_streams_requests_made_after_it_started_with_their_logs_and_filters() {
    let data = tempfile::tempdir().unwrap();
    let host = VergeProcess::serve(data.path());
    let client = reqwest::Client::new();
    assert_eq!(host.deploy(&client, &guest("misbehave")).await, 201);

    let everything = Tail::start(&host, &["misbehave", "--format", "json"]);
    let errors = Tail::start(&host, &["--status", "error"]);

    let logged = client
        .get(format!("{}/log", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(logged.status(), 200);
    let event: serde_json::Value = serde_json::from_str(&everything.next()).unwrap();
    assert_eq!(event["request_id"], request_id(&logged), "{event}");
    assert_eq!(event["status"], 200);
    assert_eq!(event["method"], "GET");
    assert_eq!(event["worker"], "misbehave");
    assert_eq!(event["version"], 1);
    assert!(
        event["target"].as_str().unwrap().ends_with("/log"),
        "{event}"
    );
    let logs: Vec<&str> = event["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        logs,
        [
            "info line from the guest",
            "stdout line from the guest",
            "stderr line from the guest"
        ]
    );

    // Only the failure reaches the tail filtered on errors, with its
    // error id and the panic message among its lines.
    let panicked = client
        .get(format!("{}/panic", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(panicked.status(), 500);
    let error_id = panicked.headers()["x-verge-error-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let headline = errors.next();
    assert!(
        headline.contains("GET ") && headline.contains("/panic 500"),
        "{headline}"
    );
    assert!(headline.contains(&request_id(&panicked)), "{headline}");
    assert!(headline.contains(&error_id), "{headline}");
    // The SDK logs a panic as one line: where, and the message.
    let panic_line = errors.next();
    assert!(
        panic_line.contains("(error) panicked at misbehave/src/lib.rs")
            && panic_line.contains("deliberate panic for the tests"),
        "{panic_line}"
    );

    // A filter the host cannot understand is refused at once.
    let refused = Command::new(env!("CARGO_BIN_EXE_verge"))
        .args(["tail", "--status", "teapot", "--host", &host.admin_url])
        .env("VERGE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unknown status filter"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// The host's log once one of its lines passes `test`.
fn wait_for_line(host: &VergeProcess, test: impl Fn(&str) -> bool) -> String {
    for _ in 0..500 {
        let log = host.log();
        if log.lines().any(&test) {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no such line in the log:\n{}", host.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_log_line_human_or_json() {
    let client = reqwest::Client::new();

    let data = tempfile::tempdir().unwrap();
    let human = VergeProcess::serve(data.path());
    assert_eq!(human.deploy(&client, &guest("misbehave")).await, 201);
    let ok = client
        .get(format!("{}/ok", human.url))
        .send()
        .await
        .unwrap();
    let id = request_id(&ok);
    let log = wait_for_line(&human, |l| l.contains(&id) && l.contains("verge::request"));
    let line = log.lines().find(|l| l.contains(&id)).unwrap();
    for part in [
        "verge::request",
        "GET ",
        "/ok",
        "status=200",
        "worker=misbehave",
        "version=1",
        "duration_ms=",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }

    // A Durable Object's lines carry the id of the request that called it.
    let data = tempfile::tempdir().unwrap();
    let objects = VergeProcess::serve(data.path());
    assert_eq!(objects.deploy(&client, &guest("durable-test")).await, 201);
    let trapped = client
        .post(format!("{}/ledger/logs/trap", objects.url))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(trapped.status(), 500);
    let id = request_id(&trapped);
    wait_for_line(&objects, |l| {
        l.contains(" guest: ") && l.contains("panicked at") && l.contains(&id)
    });

    let data = tempfile::tempdir().unwrap();
    let json = VergeProcess::serve_with(data.path(), &["--log-format", "json"], &[]);
    assert_eq!(json.deploy(&client, &guest("misbehave")).await, 201);
    let logged = client
        .get(format!("{}/log", json.url))
        .send()
        .await
        .unwrap();
    let id = request_id(&logged);
    let log = wait_for_line(&json, |l| l.contains(&id) && l.contains("verge::request"));
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains(&id))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["target"] == "verge::request")
        .unwrap_or_else(|| panic!("no request line among {lines:?}"));
    assert_eq!(request["status"], 200);
    assert_eq!(request["worker"], "misbehave");
    assert!(request["message"].as_str().unwrap().starts_with("GET "));
    let guest_lines = lines.iter().filter(|l| l["target"] == "guest").count();
    assert_eq!(
        guest_lines, 3,
        "each guest line carries the request id: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let data = tempfile::tempdir().unwrap();
    let host = VergeProcess::serve(data.path());
    let client = reqwest::Client::new();
    assert_eq!(host.deploy(&client, &guest("misbehave")).await, 201);
    assert_eq!(host.deploy(&client, &guest("counter-rpc")).await, 201);
    let get = |path: &str| client.get(format!("{}{path}", host.url)).send();
    for _ in 0..3 {
        assert_eq!(get("/ok").await.unwrap().status(), 200);
    }
    assert_eq!(get("/loop").await.unwrap().status(), 503);
    let counted = client
        .post(format!("{}/counter/metrics", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.status(), 200, "{}", counted.text().await.unwrap());

    let metrics = format!("{}/metrics", host.admin_url);
    let unauthorized = client.get(&metrics).send().await.unwrap();
    assert_eq!(
        unauthorized.status(),
        401,
        "metrics are behind the admin token"
    );
    let text = client
        .get(&metrics)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    };
    let ok = [("worker", "misbehave"), ("status", "200")];
    assert_eq!(value("verge_requests_total", &ok), 3.0, "{text}");
    assert_eq!(
        value(
            "verge_requests_total",
            &[("worker", "misbehave"), ("status", "503")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "verge_limit_breaches_total",
            &[("worker", "misbehave"), ("kind", "cpu")]
        ),
        1.0,
        "{text}"
    );
    assert!(
        value(
            "verge_request_duration_seconds_count",
            &[("worker", "misbehave")]
        ) >= 4.0,
        "{text}"
    );
    assert!(
        value(
            "verge_instantiations_total",
            &[("worker", "misbehave"), ("kind", "request")]
        ) >= 4.0
    );
    assert!(
        value("verge_guest_cpu_seconds_total", &[("worker", "misbehave")]) > 0.04,
        "{text}"
    );
    assert!(
        value(
            "verge_instantiations_total",
            &[("worker", "counter-rpc"), ("kind", "object")]
        ) >= 1.0,
        "{text}"
    );
    assert!(value("verge_objects_active", &[]) >= 1.0, "{text}");
    assert!(
        value("verge_commit_batch_events_count", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        value("verge_commit_duration_seconds_count", &[]) >= 1.0,
        "{text}"
    );
    // Every metric the host exposes is documented, and the dashboard in
    // docs/ asks only for metrics that exist.
    let docs = std::fs::read_to_string(support::repo().join("docs/operations.md")).unwrap();
    let dashboard =
        std::fs::read_to_string(support::repo().join("docs/grafana/verge.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for family in &families {
        assert!(
            docs.contains(family),
            "docs/operations.md does not describe {family}"
        );
    }
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("verge_"));
            for name in names {
                assert!(
                    families.iter().any(|f| name.starts_with(f)),
                    "the dashboard's {expr:?} asks for {name}, which the host does not expose"
                );
            }
        }
    }
    for gauge in [
        "verge_websockets_open",
        "verge_websockets_hibernated",
        "verge_alarms_scheduled",
    ] {
        assert!(
            text.contains(&format!("# TYPE {gauge} gauge")),
            "{gauge} missing:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_panic_reads_as_its_message_and_the_guests_own_frames() {
    // Development: the message, where it was raised, and the guest's
    // frames by name (the test guests keep their symbols, as `verge dev`
    // builds do), without the panic machinery or any host frame.
    let dev = TestHost::start_with(true).await;
    assert_eq!(dev.deploy(&guest("misbehave")).await.status(), 201);
    let body = dev.get_text("/panic").await;
    assert!(
        body.contains("panicked at misbehave/src/lib.rs:35:21: deliberate panic for the tests"),
        "{body}"
    );
    assert!(
        body.contains("wasm `unreachable` instruction executed"),
        "{body}"
    );
    assert!(body.contains("misbehave.wasm!"), "{body}");
    assert!(
        body.contains("#handle"),
        "the export's frame is named: {body}"
    );
    for noise in ["::panicking::", "RUST_BACKTRACE", "verge_host", "tokio"] {
        assert!(!body.contains(noise), "{noise} in {body}");
    }
    assert!(body.len() < 4096, "{} bytes of error page", body.len());

    // Production: only the ids.
    let prod = TestHost::start().await;
    assert_eq!(prod.deploy(&guest("misbehave")).await.status(), 201);
    let body = prod.get_text("/panic").await;
    assert!(body.contains("error id"), "{body}");
    assert!(!body.contains("deliberate panic"), "{body}");
    assert!(!body.contains("wasm"), "{body}");
}
