//! Cron triggers against a real host: the visit-report example on a
//! per-second schedule, `/__scheduled` under dev mode, failures with an
//! error id, and a run missed while the real binary was down, made up
//! once when it starts again.

mod support;

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};

use support::{Guest, TOKEN, TestHost, VergeProcess, guest, poll};

const WAIT: Duration = Duration::from_secs(20);

/// `guest` with its `[triggers]` crons replaced by `crons`.
fn with_crons(guest: &Guest, crons: &str) -> Guest {
    let config = guest
        .config
        .lines()
        .filter(|line| !line.starts_with("crons ") && *line != "[triggers]")
        .collect::<Vec<_>>()
        .join("\n");
    let config = config.replacen("\n[", &format!("\n[triggers]\ncrons = {crons}\n\n["), 1);
    Guest {
        config,
        ..guest.clone()
    }
}

async fn hit(host: &TestHost, page: &str) {
    let url = format!("{}/visits/hit?page={page}", host.url);
    let response = host.client.post(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn a_cron_trigger_compacts_and_publishes_on_schedule() {
    let host = TestHost::start().await;
    let report = with_crons(&guest("visit-report"), r#"["* * * * * *"]"#);
    assert_eq!(host.deploy(&report).await.status(), 201);
    for page in ["/home", "/home", "/pricing"] {
        hit(&host, page).await;
    }
    let url = format!("{}/visits/report", host.url);
    let published = poll(&host.client, &url, |answer| {
        answer["report"]["top"]
            == json!([{ "page": "/home", "hits": 2 }, { "page": "/pricing", "hits": 1 }])
    })
    .await;
    assert!(published["report"]["generated_for"].as_i64().unwrap() % 1000 == 0);
    // Compaction moved the rows without losing one.
    let live = host.get_json("/visits/live").await;
    assert_eq!(
        live,
        json!([{ "page": "/home", "hits": 2 }, { "page": "/pricing", "hits": 1 }])
    );

    let status = host.admin_json(reqwest::Method::GET, "/v1/status").await;
    let trigger = &status["triggers"][0];
    assert_eq!(trigger["worker"], "visit-report");
    assert_eq!(trigger["cron"], "* * * * * *");
    let (last, next) = (
        trigger["last_ms"].as_i64().unwrap(),
        trigger["next_ms"].as_i64().unwrap(),
    );
    assert!(next > last && next - last <= 2_000, "{trigger}");

    let metrics = host
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"verge_scheduled_runs_total{worker="visit-report",outcome="ok"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn dev_mode_runs_the_scheduled_handler_on_demand() {
    let host = TestHost::start_with(true).await;
    assert_eq!(host.deploy(&guest("visit-report")).await.status(), 201);
    assert_eq!(host.deploy(&guest("kv-test")).await.status(), 201);
    hit(&host, "/docs").await;

    let ran = host.get("/__scheduled?worker=visit-report").await;
    assert_eq!(ran.status(), 200);
    assert!(ran.text().await.unwrap().contains("\"* * * * *\""));
    let report = host.get_json("/visits/report").await;
    assert_eq!(
        report["report"]["top"],
        json!([{ "page": "/docs", "hits": 1 }])
    );

    // The expression the handler sees can be chosen.
    let ran = host
        .get("/__scheduled?worker=kv-test&cron=0+9+*+*+MON")
        .await;
    assert_eq!(ran.status(), 200, "{}", ran.text().await.unwrap());
    let runs = host.get_json("/list?prefix=cron:run:").await;
    assert_eq!(runs["keys"].as_array().unwrap().len(), 1);
    let key = runs["keys"][0]["name"].as_str().unwrap();
    assert_eq!(host.get_text(&format!("/kv/{key}")).await, "0 9 * * MON");

    // A failing handler answers 500 with the error id of its log line.
    let fail = host
        .client
        .put(format!("{}/kv/cron:fail", host.url))
        .body("yes");
    assert_eq!(fail.send().await.unwrap().status(), 204);
    let failed = host.get("/__scheduled?worker=kv-test&cron=*+*+*+*+*").await;
    assert_eq!(failed.status(), 500);
    let error_id = failed.headers()["x-verge-error-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = failed.text().await.unwrap();
    assert!(
        text.contains("cron:fail is set") && text.contains(&error_id),
        "{text}"
    );

    // A worker without a scheduled handler says so.
    assert_eq!(host.deploy(&guest("feature-flags")).await.status(), 201);
    let missing = host
        .get("/__scheduled?worker=feature-flags&cron=*+*+*+*+*")
        .await;
    assert_eq!(missing.status(), 500);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("no #[verge::scheduled] handler")
    );
    let none = host.get("/__scheduled?worker=nobody").await;
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn production_hosts_have_no_scheduled_endpoint() {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("visit-report")).await.status(), 201);
    assert_eq!(
        host.get("/__scheduled?worker=visit-report").await.status(),
        404
    );
}

#[tokio::test]
async fn a_failing_run_is_logged_and_tailed_with_its_error_id() {
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();
    let host = VergeProcess::serve(data.path());
    let mut tail = client
        .get(format!("{}/v1/tail?worker=kv-test", host.admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 200);
    let kv = with_crons(&guest("kv-test"), r#"["* * * * * *"]"#);
    let failing = client.put(format!("{}/kv/cron:fail", host.url)).body("yes");
    assert_eq!(host.deploy(&client, &kv).await, 201);
    assert_eq!(failing.send().await.unwrap().status(), 204);

    let line = host.wait_for_log("scheduled run failed");
    let line = line
        .lines()
        .find(|l| l.contains("scheduled run failed"))
        .unwrap();
    assert!(
        line.contains("cron:fail is set") && line.contains("error_id="),
        "{line}"
    );
    host.wait_for_log("status=\"error\"");

    // The tail shows the run as a `scheduled` event with the same id.
    let mut streamed = String::new();
    let event = loop {
        if let Some(event) = streamed
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["kind"] == "scheduled" && e["status"] == 500)
        {
            break event;
        }
        let chunk = tokio::time::timeout(WAIT, tail.chunk())
            .await
            .unwrap()
            .unwrap();
        streamed.push_str(&String::from_utf8_lossy(&chunk.expect("the tail ended")));
    };
    assert_eq!(event["target"], "* * * * * *");
    let error_id = event["error_id"].as_str().unwrap();
    assert!(
        host.log().contains(&format!("error_id={error_id}")),
        "{event}"
    );
}

#[tokio::test]
async fn a_run_missed_while_the_host_was_down_is_made_up_once() {
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();
    let kv = with_crons(&guest("kv-test"), r#"["* * * * *"]"#);
    let namespace = data.path().join("kv/shared-cache.sqlite");
    let runs_before = {
        let host = VergeProcess::serve(data.path());
        assert_eq!(host.deploy(&client, &kv).await, 201);
        // The trigger starts counting when it is first seen.
        wait_for_row(&data.path().join("control.db"));
        host.kill();
        // A minute may have turned meanwhile: those runs were on time.
        recorded_runs(&namespace)
    };
    // As if the host had been down for ten minutes.
    let control = rusqlite::Connection::open(data.path().join("control.db")).unwrap();
    let rewound = control
        .execute(
            "UPDATE cron_runs SET scheduled_ms = scheduled_ms - 600000",
            [],
        )
        .unwrap();
    assert_eq!(rewound, 1);
    drop(control);

    let started = now_ms();
    let host = VergeProcess::serve(data.path());
    let deadline = Instant::now() + WAIT;
    let made_up: Vec<i64> = loop {
        let runs = recorded_runs(&namespace);
        let new: Vec<i64> = runs
            .into_iter()
            .filter(|at| !runs_before.contains(at) && *at <= started)
            .collect();
        if !new.is_empty() {
            break new;
        }
        assert!(Instant::now() < deadline, "no run was made up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Once, for the latest minute before the restart, not for each of
    // the ten missed.
    assert_eq!(made_up.len(), 1, "{made_up:?}");
    assert_eq!(made_up[0] % 60_000, 0);
    assert!(
        started - made_up[0] <= 60_000,
        "made up {made_up:?}, started {started}"
    );
    let log = host.wait_for_log("making up a cron run missed while the host was down");
    assert_eq!(log.matches("making up a cron run").count(), 1, "{log}");
}

/// The scheduled times kv-test's handler recorded in its namespace, read
/// from its file.
fn recorded_runs(namespace: &std::path::Path) -> Vec<i64> {
    if !namespace.exists() {
        return Vec::new();
    }
    let kv = rusqlite::Connection::open(namespace).unwrap();
    // The host creates the file a moment before its table.
    let Ok(mut keys) = kv.prepare("SELECT key FROM kv WHERE key LIKE 'cron:run:%'") else {
        return Vec::new();
    };
    let keys: Vec<String> = keys
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    keys.iter()
        .map(|k| k["cron:run:".len()..].parse().unwrap())
        .collect()
}

fn wait_for_row(control: &std::path::Path) {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows: i64 = rusqlite::Connection::open(control)
            .and_then(|c| c.query_row("SELECT count(*) FROM cron_runs", [], |r| r.get(0)))
            .unwrap_or(0);
        if rows == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the trigger was never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
