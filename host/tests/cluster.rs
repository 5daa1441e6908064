//! Cluster mode: three real `verge serve --cluster` processes on loopback,
//! sharing a throwaway PostgreSQL server, driven over HTTP while hosts are
//! killed, paused and the database restarted.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{TestCluster, until_served};
use support::{TOKEN, guest};

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_on_one_host_serves_on_all_and_a_rollback_anywhere_is_seen_everywhere() {
    let cluster = TestCluster::start(3);
    // How long each host took to serve `greeting`, printed for the note.
    let served_everywhere = |what: &'static str, greeting: &'static str| {
        let cluster = &cluster;
        async move {
            for (i, host) in cluster.live() {
                let url = format!("{}/hello", host.url);
                let took = until_served(&cluster.client, &url, greeting).await;
                println!("host {i} served {what} after {took:?}");
            }
        }
    };
    let hello = guest("hello");
    assert_eq!(cluster.host(0).deploy(&cluster.client, &hello).await, 201);
    served_everywhere("version 1", "Hello from Verge!").await;

    let second = support::Guest {
        config: hello.config.replace("Hello from Verge!", "Hello again"),
        ..hello.clone()
    };
    assert_eq!(cluster.host(1).deploy(&cluster.client, &second).await, 201);
    served_everywhere("version 2", "Hello again").await;

    let rollback = cluster
        .client
        .post(format!(
            "{}/v1/workers/hello/rollback",
            cluster.host(2).admin_url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(rollback.status(), 200, "{}", rollback.text().await.unwrap());
    served_everywhere("the rollback", "Hello from Verge!").await;
    // Every host lists the same history.
    for (_, host) in cluster.live() {
        let versions = support::admin_json(
            &cluster.client,
            &host.admin_url,
            reqwest::Method::GET,
            "/v1/workers/hello",
        )
        .await;
        assert_eq!(versions["active_version"], 1, "{versions:#}");
    }

    let status = cluster.cluster_status(0).await;
    let hosts = status["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{status:#}");
    assert!(hosts.iter().all(|h| h["alive"] == true), "{status:#}");
    assert_eq!(
        hosts.iter().filter(|h| h["this_host"] == true).count(),
        1,
        "{status:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_listener_refuses_strangers_and_garbage() {
    let cluster = TestCluster::start(1);
    let log = cluster.host(0).log();
    let address = log
        .lines()
        .find_map(|line| line.split("address=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cluster address in the log:\n{log}"))
        .to_owned();
    let url = format!("{address}/objects/ns/{}", "0".repeat(64));
    for secret in [None, Some("wrong-secret-but-long-enough")] {
        let mut request = cluster.client.post(&url).body("x");
        if let Some(secret) = secret {
            request = request.header("verge-cluster-secret", secret);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "secret {secret:?}");
    }
    // A peer with the secret, but nothing a peer sends.
    let peer = |url: String| {
        cluster
            .client
            .post(url)
            .header("verge-cluster-secret", support::cluster::SECRET)
    };
    for (request, status) in [
        (peer(url.clone()), 400),
        (peer(url.clone()).header("verge-call", "not base64!"), 400),
        (peer(url.clone()).header("verge-call", "e30"), 400),
        (peer(format!("{address}/objects/ns/not-an-id")), 400),
        (peer(format!("{url}/admin/format-disk")), 404),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status);
    }
    // The host is fine.
    let status = cluster.cluster_status(0).await;
    assert_eq!(status["hosts"][0]["alive"], true);
}

/// One reservation as a client saw it.
#[derive(Debug, Clone)]
struct Op {
    started: Instant,
    ended: Instant,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Acknowledged: one item taken, this many left.
    Reserved(u64),
    /// Acknowledged: nothing was left.
    SoldOut,
    /// The request may or may not have taken effect.
    Unknown,
}

/// Checks a history of reservations on one counter that started at
/// `initial` and ended at `last`: it must be linearizable. Every
/// acknowledged reservation took a different item; one that finished
/// before another began took a later-numbered one; none was lost (the
/// stock is down by at least the acknowledged ones, and by at most the
/// acknowledged and the unknown ones together).
fn check_linearizable(ops: &[Op], initial: u64, last: u64) {
    let reserved: Vec<&Op> = ops
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Reserved(_)))
        .collect();
    let remaining = |op: &Op| match op.outcome {
        Outcome::Reserved(n) => n,
        _ => unreachable!(),
    };
    let mut seen = std::collections::HashSet::new();
    for op in &reserved {
        assert!(
            seen.insert(remaining(op)),
            "two acknowledged reservations left {} items: an item was sold twice",
            remaining(op)
        );
        assert!(remaining(op) < initial);
    }
    for a in &reserved {
        for b in &reserved {
            if a.ended < b.started {
                assert!(
                    remaining(a) > remaining(b),
                    "a reservation that finished before another began left fewer items ({} then {})",
                    remaining(a),
                    remaining(b)
                );
            }
        }
    }
    let unknown = ops
        .iter()
        .filter(|op| op.outcome == Outcome::Unknown)
        .count() as u64;
    let acked = reserved.len() as u64;
    assert!(
        last <= initial - acked,
        "stock {last} after {acked} acknowledged reservations from {initial}: a write was lost"
    );
    assert!(
        last + acked + unknown >= initial,
        "stock {last}: more was taken than {acked} acknowledged and {unknown} unknown reservations"
    );
    // Sold out only once nothing is left.
    for op in ops.iter().filter(|op| op.outcome == Outcome::SoldOut) {
        for earlier in &reserved {
            assert!(
                op.ended >= earlier.started,
                "sold out before a later reservation succeeded"
            );
        }
    }
}

/// Sends reservations for `sku` through the given front doors, round
/// robin, from `clients` concurrent clients, until `stop` is set.
fn drive_reservations(
    urls: Vec<String>,
    sku: &str,
    clients: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Vec<Op>>>, Vec<tokio::task::JoinHandle<()>>) {
    let ops = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let tasks = (0..clients)
        .map(|c| {
            let (urls, ops, stop, client) =
                (urls.clone(), ops.clone(), stop.clone(), client.clone());
            let sku = sku.to_owned();
            tokio::spawn(async move {
                let mut n = c;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let url = format!("{}/inventory/{sku}/reserve", urls[n % urls.len()]);
                    n += 1;
                    let started = Instant::now();
                    let sent = client.post(&url).send().await;
                    let outcome = match sent {
                        // Refused before anything was sent: not an operation.
                        Err(e) if e.is_connect() => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        Err(_) => Outcome::Unknown,
                        Ok(response) => match response.status().as_u16() {
                            200 => {
                                let body: Value = response.json().await.unwrap();
                                Outcome::Reserved(body["remaining"].as_u64().unwrap())
                            }
                            409 => Outcome::SoldOut,
                            _ => Outcome::Unknown,
                        },
                    };
                    let failed = outcome == Outcome::Unknown;
                    ops.lock().unwrap().push(Op {
                        started,
                        ended: Instant::now(),
                        outcome,
                    });
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    (ops, tasks)
}

async fn stock(client: &reqwest::Client, url: &str, sku: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{url}/inventory/{sku}")).send().await
            && response.status() == 200
        {
            let body: Value = response.json().await.unwrap();
            return body["stock"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "the stock never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn restock(client: &reqwest::Client, url: &str, sku: &str, quantity: u64) {
    let response = client
        .post(format!("{url}/inventory/{sku}/restock?quantity={quantity}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Deploys the inventory counter and stocks `sku` with `initial` items.
async fn stocked(cluster: &TestCluster, sku: &str, initial: u64) {
    cluster
        .deploy_everywhere(
            &guest("inventory-counter"),
            &format!("/inventory/{sku}"),
            "stock",
        )
        .await;
    restock(&cluster.client, &cluster.host(0).url, sku, initial).await;
}

fn front_doors(cluster: &TestCluster) -> Vec<String> {
    cluster.live().map(|(_, host)| host.url.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inventory_loses_nothing_when_its_owner_is_killed() {
    let mut cluster = TestCluster::start(3);
    let (sku, initial) = ("widget", 100_000);
    stocked(&cluster, sku, initial).await;
    let owner = cluster.owner().await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ops, tasks) = drive_reservations(front_doors(&cluster), sku, 6, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    cluster.hosts[owner].take().unwrap().kill();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let ops = ops.lock().unwrap().clone();
    let survivor = cluster.live().next().unwrap().1.url.clone();
    let last = stock(&cluster.client, &survivor, sku).await;
    let before = ops.iter().filter(|op| op.ended < killed_at).count();
    let recovered = ops
        .iter()
        .filter(|op| op.started > killed_at && matches!(op.outcome, Outcome::Reserved(_)))
        .map(|op| op.ended - killed_at)
        .min()
        .expect("no reservation succeeded after the owner was killed");
    println!(
        "{} operations ({before} before the kill), stock {last}; first reservation after the kill answered {recovered:?} after it",
        ops.len()
    );
    check_linearizable(&ops, initial, last);
    assert!(
        ops.iter()
            .any(|op| op.ended < killed_at && matches!(op.outcome, Outcome::Reserved(_))),
        "nothing was reserved before the kill"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_owner_acknowledges_nothing_after_it_resumes() {
    let cluster = TestCluster::start(3);
    let (sku, initial) = ("gadget", 100_000);
    stocked(&cluster, sku, initial).await;
    let owner = cluster.owner().await;
    let owner_url = cluster.host(owner).url.clone();
    let others: Vec<String> = cluster
        .live()
        .filter(|(i, _)| *i != owner)
        .map(|(_, host)| host.url.clone())
        .collect();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Some clients talk only to the owner: their requests wait in its
    // sockets while it is stopped, and run when it resumes.
    let (to_owner, owner_tasks) = drive_reservations(vec![owner_url], sku, 3, stop.clone());
    let (to_others, other_tasks) = drive_reservations(others.clone(), sku, 3, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pid = cluster.host(owner).pid() as i32;
    // SAFETY: signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // Well past its lease: another host takes the object meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    unsafe { libc::kill(pid, libc::SIGCONT) };
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in owner_tasks.into_iter().chain(other_tasks) {
        task.await.unwrap();
    }

    let mut ops = to_owner.lock().unwrap().clone();
    ops.extend(to_others.lock().unwrap().iter().cloned());
    let last = stock(&cluster.client, &others[0], sku).await;
    println!("{} operations, stock {last}", ops.len());
    check_linearizable(&ops, initial, last);
    assert_ne!(
        cluster.owner().await,
        owner,
        "the paused host still owns the object"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_a_postgres_restart_mid_load() {
    let mut cluster = TestCluster::start(2);
    let (sku, initial) = ("gizmo", 100_000);
    stocked(&cluster, sku, initial).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ops, tasks) = drive_reservations(front_doors(&cluster), sku, 4, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.db.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Meanwhile the hosts answer, with clear errors.
    let started = Instant::now();
    let down = cluster
        .client
        .post(format!("{}/inventory/{sku}/reserve", cluster.host(0).url))
        .send()
        .await
        .unwrap();
    assert!(down.status().is_server_error(), "{}", down.status());
    // The client learns it failed; the log says why (its line is written
    // once the response has gone).
    let log = cluster.host(0).wait_for_log("request failed");
    let why = log
        .lines()
        .rev()
        .find(|line| line.contains("request failed"))
        .expect("waited for");
    println!("while Postgres is down: {why}");
    let mut probes = vec![Op {
        started,
        ended: Instant::now(),
        outcome: Outcome::Unknown,
    }];
    cluster.db.resume();
    // Writes succeed again.
    let back = Instant::now();
    loop {
        let started = Instant::now();
        let response = cluster
            .client
            .post(format!("{}/inventory/{sku}/reserve", cluster.host(1).url))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            probes.push(Op {
                started,
                ended: Instant::now(),
                outcome: Outcome::Reserved(body["remaining"].as_u64().unwrap()),
            });
            break;
        }
        probes.push(Op {
            started,
            ended: Instant::now(),
            outcome: Outcome::Unknown,
        });
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "writes never worked again after Postgres came back: {}",
            response.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "writes worked again {:?} after Postgres came back",
        back.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let mut ops = ops.lock().unwrap().clone();
    ops.extend(probes);
    let last = stock(&cluster.client, &cluster.host(0).url, sku).await;
    check_linearizable(&ops, initial, last);
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join_chat(url: &str, room: &str, name: &str) -> Socket {
    let url = format!(
        "{}/chat/{room}?name={name}",
        url.replace("http://", "ws://")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, response)) if response.status() == 101 => return socket,
            result => assert!(
                Instant::now() < deadline,
                "joining {url}: {:?}",
                result.map(|(_, response)| response.status())
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next chat event of type `kind`, skipping others (joins, leaves).
async fn next_event(socket: &mut Socket, kind: &str) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event in time"))
            .expect("the socket is open")
            .expect("a valid frame");
        if let Message::Text(text) = frame {
            let event: Value = serde_json::from_str(&text).unwrap();
            if event["type"] == kind {
                return event;
            }
        }
    }
}

async fn say(socket: &mut Socket, message: &str) {
    use futures::SinkExt;
    let text = serde_json::json!({ "message": message }).to_string();
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(text))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chat_room_works_through_a_host_that_does_not_own_it() {
    let mut cluster = TestCluster::start(3);
    cluster
        .deploy_everywhere(&guest("chat-room"), "/chat", "<html")
        .await;
    // The first to join makes host 0 the room's owner; the second joins
    // through host 1, which relays to it.
    let mut ada = join_chat(&cluster.host(0).url, "lobby", "ada").await;
    next_event(&mut ada, "history").await;
    assert_eq!(cluster.owner().await, 0);
    let mut bob = join_chat(&cluster.host(1).url, "lobby", "bob").await;
    next_event(&mut bob, "history").await;
    // Ada hears her own join first, then Bob's.
    while next_event(&mut ada, "join").await["name"] != "bob" {}

    say(&mut bob, "hello from host 1").await;
    assert_eq!(
        next_event(&mut ada, "message").await["message"],
        "hello from host 1"
    );
    assert_eq!(
        next_event(&mut bob, "message").await["message"],
        "hello from host 1"
    );
    say(&mut ada, "hello from host 0").await;
    assert_eq!(
        next_event(&mut bob, "message").await["message"],
        "hello from host 0"
    );

    // The owner dies: the relayed socket closes, and the client that
    // reconnects finds the room, with its history, on another host.
    cluster.hosts[0].take().unwrap().kill();
    loop {
        use futures::StreamExt;
        match tokio::time::timeout(Duration::from_secs(20), bob.next())
            .await
            .expect("the relayed socket closes when the owner dies")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                break;
            }
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => break,
        }
    }
    let mut bob = join_chat(&cluster.host(1).url, "lobby", "bob").await;
    let history = next_event(&mut bob, "history").await;
    let said: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(said, ["hello from host 1", "hello from host 0"]);
}

/// Runs the real `verge` CLI against a host's admin API.
fn verge_cli(admin_url: &str, args: &[&str]) -> String {
    support::verge_cli(&std::env::temp_dir(), admin_url, args)
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_and_workers_are_administered_through_any_host() {
    let cluster = TestCluster::start(3);
    stocked(&cluster, "apple", 10).await;
    // A second object, first reached (so owned) through host 1.
    restock(&cluster.client, &cluster.host(1).url, "pear", 20).await;
    let admin = cluster.host(2).admin_url.clone();
    let class = ["--worker", "inventory-counter", "--class", "Inventory"];

    let workers = verge_cli(&admin, &["workers"]);
    assert!(workers.contains("inventory-counter"), "{workers}");

    // Names reach the cluster's record within its flush interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = verge_cli(&admin, &[&["objects", "list"][..], &class].concat());
        if listed.contains("apple") && listed.contains("pear") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "objects list never showed both:\n{listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Exported through a host that owns neither, imported as another.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pear.sqlite");
    let file = file.to_str().unwrap();
    verge_cli(
        &admin,
        &[
            &["objects", "export", "--name", "pear", "--output", file][..],
            &class,
        ]
        .concat(),
    );
    assert!(
        std::fs::read(file)
            .unwrap()
            .starts_with(b"SQLite format 3\0")
    );
    verge_cli(
        &admin,
        &[
            &["objects", "import", "--name", "apple", "--input", file][..],
            &class,
        ]
        .concat(),
    );
    for (_, host) in cluster.live() {
        assert_eq!(stock(&cluster.client, &host.url, "apple").await, 20);
    }

    // Deleted through host 2: gone everywhere, and new again when reached.
    verge_cli(
        &admin,
        &[&["objects", "delete", "--name", "pear"][..], &class].concat(),
    );
    let listed = verge_cli(&admin, &[&["objects", "list"][..], &class].concat());
    assert!(!listed.contains("pear"), "{listed}");
    assert_eq!(
        stock(&cluster.client, &cluster.host(0).url, "pear").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_fires_on_another_host_after_its_owner_dies() {
    let mut cluster = TestCluster::start(2);
    cluster
        .deploy_everywhere(&guest("reminders"), "/reminders/ada/pending", "[")
        .await;
    // Scheduled through host 0, which takes the object; due in 3 s.
    let scheduled = cluster
        .client
        .post(format!("{}/reminders/ada", cluster.host(0).url))
        .json(&serde_json::json!({ "message": "stretch", "in_ms": 3000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        scheduled.status(),
        200,
        "{}",
        scheduled.text().await.unwrap()
    );
    assert_eq!(cluster.owner().await, 0);
    cluster.hosts[0].take().unwrap().kill();

    // Host 1 finds the orphaned alarm, takes the object and fires it:
    // nobody sends the object anything meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.db.psql("SELECT count(*) FROM alarms").trim() != "0" {
        assert!(
            Instant::now() < deadline,
            "the alarm never fired on the surviving host:\n{}",
            cluster.host(1).log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.owner().await, 1);
    let delivered = cluster
        .client
        .get(format!("{}/reminders/ada/delivered", cluster.host(1).url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(delivered.contains("stretch"), "{delivered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_cron_match_runs_once_in_the_whole_cluster() {
    let cluster = TestCluster::start(3);
    let every_second = support::Guest {
        config: format!(
            "{}\n[triggers]\ncrons = [\"* * * * * *\"]\n",
            guest("kv-test").config
        ),
        ..guest("kv-test")
    };
    assert_eq!(
        cluster.host(0).deploy(&cluster.client, &every_second).await,
        201
    );
    // Every host runs the scheduler; a few seconds of matches later,
    // each matching time ran on exactly one of them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut runs: Vec<i64> = cluster
        .live()
        .flat_map(|(_, host)| {
            host.log()
                .lines()
                .filter(|line| line.contains("scheduled_ms="))
                .filter_map(|line| {
                    line.split("scheduled_ms=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let total = runs.len();
    runs.sort_unstable();
    runs.dedup();
    assert!(runs.len() >= 3, "too few runs: {runs:?}");
    assert_eq!(
        total,
        runs.len(),
        "a matching time ran on more than one host: {runs:?}"
    );
}

#[test]
fn bad_cluster_settings_are_refused_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let nowhere = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("postgres://verge@{}/verge", socket.local_addr().unwrap())
    };
    let local = ["--cluster-listen", "127.0.0.1:0"];
    let secret = ["--cluster-secret", support::cluster::SECRET];
    let cases: [(Vec<&str>, &str); 4] = [
        (
            [&["--cluster", &nowhere][..], &local].concat(),
            "--cluster-secret",
        ),
        (
            [
                &["--cluster", &nowhere, "--cluster-secret", "short"][..],
                &local,
            ]
            .concat(),
            "at least 16 characters",
        ),
        (
            [
                &["--cluster", &nowhere, "--cluster-listen", "0.0.0.0:0"][..],
                &secret,
            ]
            .concat(),
            "--cluster-advertise",
        ),
        (
            [&["--cluster", &nowhere][..], &secret, &local].concat(),
            "connecting to the cluster's PostgreSQL database",
        ),
    ];
    for (flags, reason) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_verge"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(&flags)
            .arg("--data")
            .arg(data.path())
            .env("VERGE_ADMIN_TOKEN", TOKEN)
            .env_remove("VERGE_CLUSTER_SECRET")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} started");
        assert!(stderr.contains(reason), "{flags:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_history_is_compacted_and_a_new_owner_rebuilds_from_the_snapshot() {
    let mut cluster = TestCluster::start(2);
    let (sku, initial) = ("bolt", 10_000);
    stocked(&cluster, sku, initial).await;
    // One at a time, so each reservation is a batch and a change of its
    // own: past the thousand changes after which the owner compacts.
    let url = format!("{}/inventory/{sku}/reserve", cluster.host(0).url);
    let taken = 1_100;
    for _ in 0..taken {
        let response = cluster.client.post(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let snapshots = cluster
        .db
        .psql("SELECT count(DISTINCT seq) FROM object_snapshots");
    let changes: u64 = cluster
        .db
        .psql("SELECT count(*) FROM object_changes")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(snapshots.trim(), "1", "no snapshot was taken");
    assert!(changes < 1_000, "{changes} changes kept after compaction");

    cluster.hosts[0].take().unwrap().kill();
    assert_eq!(
        stock(&cluster.client, &cluster.host(1).url, sku).await,
        initial - taken
    );
}
