//! Alarms against a real host: the durable-test ledger (whose handler
//! records each firing and fails on demand) and the reminders example,
//! across eviction, object deletion and a SIGKILL restart of the real
//! binary.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use verge_host::objects::ObjectOptions;

use support::{TestHost, VergeProcess, guest, poll};

const WAIT: Duration = Duration::from_secs(20);

async fn host(objects: ObjectOptions) -> TestHost {
    let host = TestHost::start_with_objects(objects).await;
    assert_eq!(host.deploy(&guest("durable-test")).await.status(), 201);
    host
}

async fn schedule(host: &TestHost, ledger: &str, query: &str) {
    let response = host
        .client
        .post(format!("{}/ledger/{ledger}/schedule?{query}", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn ok(host: &TestHost, path: &str) -> Value {
    let answer = host.get_json(path).await;
    answer
        .get("ok")
        .cloned()
        .unwrap_or_else(|| panic!("{path}: {answer}"))
}

/// Polls the ledger's `path` until `done` holds for its answer.
async fn wait_until(host: &TestHost, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let url = format!("{}{path}", host.url);
    poll(&host.client, &url, |answer| done(&answer["ok"])).await["ok"].clone()
}

async fn sleep_until(instant: Instant) {
    tokio::time::sleep_until(instant.into()).await;
}

fn len(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_alarms_fire_and_delete_cancels() {
    let host = host(ObjectOptions::default()).await;
    // Far enough ahead that listing, cancelling and evicting are done
    // before the first falls due, however slow the machine.
    let scheduled = Instant::now();
    schedule(&host, "a", "value=&in_ms=2000").await;
    schedule(&host, "a", "value=second&in_ms=2100").await;
    schedule(&host, "a", "value=cancelled&in_ms=2200").await;
    let alarms = ok(&host, "/ledger/a/alarms").await;
    let names: Vec<&str> = alarms
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["", "second", "cancelled"]);
    let cancelled = host
        .client
        .post(format!("{}/ledger/a/cancel?value=cancelled", host.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(cancelled["ok"], true);

    // The object is evicted before they fall due: alarms wake it.
    host.platform.objects().evict_all().await;
    let fired = wait_until(&host, "/ledger/a/fired", |f| len(f) == 2).await;
    assert_eq!(fired[0]["name"], "");
    assert_eq!(fired[1]["name"], "second");
    assert_eq!(fired[0]["retry_count"], 0);
    assert_eq!(fired[0]["is_retry"], false);
    // Fired alarms are gone; the cancelled one never fires.
    sleep_until(scheduled + Duration::from_millis(2700)).await;
    assert_eq!(len(&ok(&host, "/ledger/a/fired").await), 2);
    assert_eq!(ok(&host, "/ledger/a/alarms").await, serde_json::json!([]));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_alarm_is_retried_with_backoff_then_dropped() {
    let host = host(ObjectOptions {
        alarm_retry_base: Duration::from_millis(100),
        alarm_max_retries: 3,
        ..ObjectOptions::default()
    })
    .await;
    let scheduled = Instant::now();
    schedule(&host, "flaky", "value=flaky&in_ms=0&fail=2").await;
    let fired = wait_until(&host, "/ledger/flaky/fired", |f| len(f) == 1).await;
    // Two failures, then success on the second retry, after waiting out
    // both backoff delays (100 ms, then 200 ms).
    assert_eq!(fired[0]["retry_count"], 2);
    assert_eq!(fired[0]["is_retry"], true);
    assert!(scheduled.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        ok(&host, "/ledger/flaky/alarms").await,
        serde_json::json!([])
    );

    // One that always fails is dropped after its retries (100+200+400 ms).
    schedule(&host, "doomed", "value=doomed&in_ms=0&fail=99").await;
    wait_until(&host, "/ledger/doomed/alarms", |a| len(a) == 0).await;
    assert_eq!(
        ok(&host, "/ledger/doomed/fired").await,
        serde_json::json!([])
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_alarm_inside_the_handler_reschedules() {
    let host = host(ObjectOptions::default()).await;
    schedule(&host, "r", "value=tick&in_ms=10&repeat=2").await;
    let fired = wait_until(&host, "/ledger/r/fired", |f| len(f) == 3).await;
    assert!(
        fired
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] == "tick")
    );
    wait_until(&host, "/ledger/r/alarms", |a| len(a) == 0).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_object_deletes_its_alarms() {
    let host = host(ObjectOptions::default()).await;
    let scheduled = Instant::now();
    schedule(&host, "gone", "value=never&in_ms=2000").await;
    let base = "/v1/workers/durable-test/objects/Ledger";
    let id = host.object_id("durable-test", "Ledger", "gone").await;
    let deleted = host
        .admin(Method::DELETE, &format!("{base}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(
        scheduled.elapsed() < Duration::from_millis(2000),
        "the deletion came after the alarm was due: nothing was tested"
    );
    sleep_until(scheduled + Duration::from_millis(2500)).await;
    assert_eq!(ok(&host, "/ledger/gone/fired").await, serde_json::json!([]));
    assert_eq!(
        ok(&host, "/ledger/gone/alarms").await,
        serde_json::json!([])
    );
    host.shutdown().await;
}

/// An imported database brings its alarms: they are indexed and fire for
/// the object they now belong to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_databases_alarms_fire() {
    let host = host(ObjectOptions::default()).await;
    let scheduled = Instant::now();
    schedule(&host, "exporter", "value=carried&in_ms=3000").await;
    let base = "/v1/workers/durable-test/objects/Ledger";
    let from = host.object_id("durable-test", "Ledger", "exporter").await;
    let bytes = host
        .admin(Method::GET, &format!("{base}/{from}/export"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let to = host.object_id("durable-test", "Ledger", "importer").await;
    let imported = host
        .admin(Method::PUT, &format!("{base}/{to}/import"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    assert!(
        scheduled.elapsed() < Duration::from_millis(3000),
        "the import came after the alarm was due: nothing was tested"
    );
    let fired = wait_until(&host, "/ledger/importer/fired", |f| len(f) == 1).await;
    assert_eq!(fired[0]["name"], "carried");
    host.shutdown().await;
}

/// The reminders example on the real binary: one reminder falls due while
/// the host is down (SIGKILL) and fires when it starts again; another is
/// delivered to a connected WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_fire_after_a_restart_and_reach_sockets() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = VergeProcess::serve(data.path());
    assert_eq!(first.deploy(&client, &guest("reminders")).await, 201);
    let created: Value = client
        .post(format!("{}/reminders/ada", first.url))
        .body(r#"{"message": "while down", "in_ms": 600}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["id"], 1);
    first.kill();
    tokio::time::sleep(Duration::from_millis(900)).await;

    let second = VergeProcess::serve(data.path());
    let delivered = format!("{}/reminders/ada/delivered", second.url);
    let delivered = poll(&client, &delivered, |d| len(d) == 1).await;
    assert_eq!(delivered[0]["message"], "while down");

    let url = format!("{}/reminders/ada", second.url.replace("http://", "ws://"));
    let (mut socket, _) = connect_async(&url).await.unwrap();
    let pending: Value = next_json(&mut socket).await;
    assert_eq!(pending["type"], "pending");
    client
        .post(format!("{}/reminders/ada", second.url))
        .body(r#"{"message": "live", "in_ms": 100}"#)
        .send()
        .await
        .unwrap();
    let reminder = next_json(&mut socket).await;
    assert_eq!(reminder["type"], "reminder");
    assert_eq!(reminder["reminder"]["message"], "live");
    assert_eq!(reminder["reminder"]["id"], 2);
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}
