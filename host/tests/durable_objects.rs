//! Durable Objects against a real host: identity, durability, atomicity,
//! the gates, cycles, the SQL guard, eviction, and the admin operations.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestHost, VergeProcess, get_json, guest};

async fn host_with(example: &str) -> TestHost {
    let host = TestHost::start().await;
    let res = host.deploy(&guest(example)).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    host
}

async fn post(host: &TestHost, path: &str) -> reqwest::Response {
    host.client
        .post(format!("{}{path}", host.url))
        .send()
        .await
        .unwrap()
}

async fn entries(host: &TestHost, ledger: &str) -> Vec<String> {
    serde_json::from_value(host.get_json(&format!("/ledger/{ledger}/entries")).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reserves_never_oversell() {
    let host = host_with("inventory-counter").await;
    let stocked: Value = post(&host, "/inventory/flash/restock?quantity=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stocked["stock"], 100);

    let reserves = (0..200).map(|_| async {
        let res = post(&host, "/inventory/flash/reserve").await;
        (res.status().as_u16(), res.text().await.unwrap())
    });
    let answers = futures::future::join_all(reserves).await;
    let unexpected: Vec<_> = answers
        .iter()
        .filter(|(status, _)| ![200, 409].contains(status))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let count = |wanted| answers.iter().filter(|(s, _)| *s == wanted).count();
    assert_eq!(count(200), 100);
    assert_eq!(count(409), 100);
    assert_eq!(host.get_json("/inventory/flash").await["stock"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_leaves_no_partial_writes() {
    let host = host_with("durable-test").await;
    assert_eq!(
        post(&host, "/ledger/t/append?value=kept").await.status(),
        200
    );

    let trapped = post(&host, "/ledger/t/trap?value=lost-to-trap").await;
    assert_eq!(trapped.status(), 500);
    let error = trapped.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("trapped"), "{error}");

    let failed = post(&host, "/ledger/t/fail?value=lost-to-error").await;
    assert!(
        failed
            .text()
            .await
            .unwrap()
            .contains("failing after a write")
    );

    // A fresh instance picks up where the committed data left off.
    assert_eq!(
        post(&host, "/ledger/t/append?value=after").await.status(),
        200
    );
    assert_eq!(entries(&host, "t").await, ["kept", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_never_reaches_the_client_as_success() {
    let host = host_with("durable-test").await;
    assert_eq!(
        post(&host, "/ledger/c/append?value=one").await.status(),
        200
    );

    host.platform.objects().faults.fail_next_commits(1);
    let res = post(&host, "/ledger/c/append?value=uncommitted").await;
    assert_eq!(res.status(), 500, "the client sees the failure");
    assert!(res.text().await.unwrap().contains("could not be committed"));

    assert_eq!(
        post(&host, "/ledger/c/append?value=two").await.status(),
        200
    );
    assert_eq!(entries(&host, "c").await, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cycle_fails_at_once() {
    let host = host_with("durable-test").await;
    let chain = host.get_json("/ping/a?then=b,c").await;
    assert_eq!(chain["ok"], "b>c>done");

    let cycle = host.get("/ping/a?then=b,a").await;
    assert_eq!(cycle.status(), 500);
    let error = cycle.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("re-enter") || error.contains("cycle"),
        "{error}"
    );

    let self_call = host.get("/ping/a?then=a").await;
    assert_eq!(self_call.status(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_guard_refuses_what_it_should() {
    let host = host_with("durable-test").await;
    for (sql, needle) in [
        ("ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH"),
        ("PRAGMA journal_mode = DELETE", "journal_mode"),
        ("PRAGMA synchronous = OFF", "synchronous"),
        ("SELECT * FROM _verge_kv", "internal"),
        ("BEGIN", "transaction_sync"),
        ("COMMIT", "transaction_sync"),
        ("CREATE TEMP TABLE t (x)", "TEMP"),
        ("CREATE TEMPORARY VIEW v AS SELECT 1", "TEMP"),
    ] {
        let res: Value = host
            .client
            .post(format!("{}/ledger/g/sql", host.url))
            .body(sql)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(res["ok"], false, "{sql} was allowed");
        assert_eq!(res["kind"], "Denied", "{sql}: {res}");
        assert!(
            res["message"].as_str().unwrap().contains(needle),
            "{sql}: {res}"
        );
    }
    let fine: Value = host
        .client
        .post(format!("{}/ledger/g/sql", host.url))
        .body("SELECT name FROM sqlite_master")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fine["ok"], true, "{fine}");
}

/// The time SQLite spends on a query is the host's, not the guest's: a
/// query that runs far longer than `cpu_ms` (50 ms here) succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_time_does_not_count_against_the_guests_cpu_limit() {
    let host = host_with("durable-test").await;
    let query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) \
                 SELECT sum(x) FROM c";
    let started = std::time::Instant::now();
    let res = host
        .client
        .post(format!("{}/ledger/slow-sql/sql", host.url))
        .body(query)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    // Not a speed check: without it the test would prove nothing.
    assert!(
        took > Duration::from_millis(50),
        "the query took only {took:?}: make it longer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_are_rejected_and_good_ones_normalized() {
    let host = host_with("durable-test").await;
    for bad in ["nope", "0123", &"z".repeat(64)] {
        let res = host.get(&format!("/id?s={bad}")).await;
        assert_eq!(res.status(), 500);
        assert!(res.text().await.unwrap().contains("not an object id"));
    }
    let upper = "AB".repeat(32);
    assert_eq!(
        host.get_json(&format!("/id?s={upper}")).await["ok"],
        "ab".repeat(32)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_apis_identity_and_size_limit() {
    let host = host_with("durable-test").await;
    let first = host.get_json("/ledger/who/describe").await;
    let first = &first["ok"];
    assert_eq!(first["name"], "who");
    assert_eq!(first["id"].as_str().unwrap().len(), 64);
    assert_eq!(first["kv"], json!({ "nested": [1, 2, 3] }));
    assert_eq!(first["kept"], true);
    assert_eq!(first["discarded_rolled_back"], true);
    assert_eq!(first["keys"], 2);
    let again = host.get_json("/ledger/who/describe").await;
    assert_eq!(
        again["ok"]["id"], first["id"],
        "the same name reaches the same object"
    );
    let other = host.get_json("/ledger/someone-else/describe").await;
    assert_ne!(other["ok"]["id"], first["id"]);

    let full = post(&host, "/ledger/big/fill").await.text().await.unwrap();
    assert!(full.contains("database full"), "{full}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_object_wakes_with_its_data() {
    let host = host_with("durable-test").await;
    post(&host, "/ledger/e/append?value=before-eviction").await;
    assert!(host.platform.objects().active_count() >= 1);
    host.platform.objects().evict_all().await;
    assert_eq!(host.platform.objects().active_count(), 0);
    assert_eq!(entries(&host, "e").await, ["before-eviction"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_over_at_the_next_event() {
    let host = host_with("durable-test").await;
    assert_eq!(
        host.get_json("/ledger/v/describe").await["ok"]["version"],
        "1"
    );
    let g = guest("durable-test");
    let v2 = g.config.replace("VERSION = \"1\"", "VERSION = \"2\"");
    assert_eq!(host.upload("durable-test", g.wasm, &v2).await.status(), 201);
    assert_eq!(
        host.get_json("/ledger/v/describe").await["ok"]["version"],
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_listed_exported_imported_and_deleted() {
    let host = host_with("durable-test").await;
    post(&host, "/ledger/orig/append?value=exported").await;
    host.platform.objects().flush_activity().unwrap();
    let base = "/v1/workers/durable-test/objects/Ledger";

    let listed = host.admin_json(Method::GET, base).await;
    let objects = listed["objects"].as_array().unwrap();
    let orig = objects
        .iter()
        .find(|o| o["name"] == "orig")
        .expect("orig is listed");
    assert!(orig["size_bytes"].as_u64().unwrap() > 0);
    assert!(orig["last_active"].as_i64().unwrap() > 0);
    let id = orig["id"].as_str().unwrap().to_owned();
    assert_eq!(host.object_id("durable-test", "Ledger", "orig").await, id);

    let export = host
        .admin(Method::GET, &format!("{base}/{id}/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let bytes = export.bytes().await.unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"));

    let copy_id = host.object_id("durable-test", "Ledger", "copy").await;
    let imported = host
        .admin(Method::PUT, &format!("{base}/{copy_id}/import"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    assert_eq!(entries(&host, "copy").await, ["exported"]);

    let garbage = host
        .admin(Method::PUT, &format!("{base}/{copy_id}/import"))
        .body("not a database")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(
        entries(&host, "copy").await,
        ["exported"],
        "a refused import changes nothing"
    );

    let deleted = host
        .admin(Method::DELETE, &format!("{base}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(
        entries(&host, "orig").await.is_empty(),
        "a deleted object starts over empty"
    );
    let bad = host
        .admin(Method::DELETE, &format!("{base}/not-an-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_must_match_the_component_and_migrations() {
    let host = TestHost::start().await;
    let g = guest("durable-test");
    let ghost = g.config.replace(
        "[\"Ledger\", \"Pinger\"]",
        "[\"Ledger\", \"Pinger\", \"Ghost\"]",
    );
    let res = host.upload("durable-test", g.wasm.clone(), &ghost).await;
    assert_eq!(res.status(), 400);
    let error = res.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("Ghost") && error.contains("does not define"),
        "{error}"
    );

    let unbound = g.config.replace(
        "new_sqlite_classes = [\"Ledger\", \"Pinger\"]",
        "new_sqlite_classes = [\"Ledger\"]",
    );
    let res = host.upload("durable-test", g.wasm.clone(), &unbound).await;
    assert_eq!(
        res.status(),
        400,
        "a binding to a class no migration creates is refused"
    );

    assert_eq!(host.deploy(&g).await.status(), 201);
    host.get("/ping/x").await;
    let pinger_dirs = || {
        std::fs::read_dir(host.data.path().join("objects"))
            .unwrap()
            .count()
    };
    assert_eq!(pinger_dirs(), 1);
    let deleting = format!(
        "{}\n[[migrations]]\ntag = \"v2\"\ndeleted_classes = [\"Pinger\"]\n",
        g.config.replace(
            "[[durable_objects.bindings]]\nname = \"PINGER\"\nclass_name = \"Pinger\"\n",
            ""
        )
    );
    let res = host.upload("durable-test", g.wasm, &deleting).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    assert_eq!(pinger_dirs(), 0, "a deleted class's objects are gone");
    let listing = host
        .admin(Method::GET, "/v1/workers/durable-test/objects/Pinger")
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_name_reaches_the_same_object_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = VergeProcess::serve(data.path());
    assert_eq!(first.deploy(&client, &guest("durable-test")).await, 201);
    for value in ["a", "b"] {
        client
            .post(format!("{}/ledger/r/append?value={value}", first.url))
            .send()
            .await
            .unwrap();
    }
    let before: Value = get_json(&client, &format!("{}/ledger/r/describe", first.url)).await;
    let before = &before["ok"];
    first.kill();

    let second = VergeProcess::serve(data.path());
    let after: Value = get_json(&client, &format!("{}/ledger/r/describe", second.url)).await;
    assert_eq!(after["ok"]["id"], before["id"]);
    let values: Vec<String> = get_json(&client, &format!("{}/ledger/r/entries", second.url)).await;
    assert_eq!(values, ["a", "b"]);
}

/// SIGKILL during a write load, again and again: every write acknowledged
/// to a client must be there after the restart. `VERGE_CRASH_ITERATIONS`
/// runs more rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let iterations: usize = std::env::var("VERGE_CRASH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let g = guest("durable-test");
    let mut acknowledged: Vec<Vec<String>> = vec![Vec::new(); 4];

    for round in 0..iterations {
        let host = VergeProcess::serve(data.path());
        if round == 0 {
            // Without the writers' timeout: the upload compiles.
            assert_eq!(host.deploy(&reqwest::Client::new(), &g).await, 201);
        }
        // Everything acknowledged so far is there.
        assert_all_present(&client, &host.url, &acknowledged, &format!("round {round}")).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let (client, url, tx) = (client.clone(), host.url.clone(), tx.clone());
                tokio::spawn(async move {
                    for n in 0.. {
                        let ledger = (writer + n) % 4;
                        let value = format!("r{round}-w{writer}-{n}");
                        let sent = client
                            .post(format!("{url}/ledger/crash-{ledger}/append?value={value}"))
                            .send()
                            .await;
                        match sent {
                            Ok(res) if res.status() == 200 => {
                                let _ = tx.send((ledger, value));
                            }
                            _ => break,
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(30 + (round as u64 * 37) % 120)).await;
        host.kill();
        for writer in writers {
            let _ = writer.await;
        }
        drop(tx);
        while let Some((ledger, value)) = rx.recv().await {
            acknowledged[ledger].push(value);
        }
    }
    let total: usize = acknowledged.iter().map(Vec::len).sum();
    assert!(total > 0, "the load acknowledged no writes at all");

    let host = VergeProcess::serve(data.path());
    assert_all_present(&client, &host.url, &acknowledged, "after the last restart").await;
}

/// Asserts that every value in `acknowledged[n]` is in ledger `crash-n`.
async fn assert_all_present(
    client: &reqwest::Client,
    url: &str,
    acknowledged: &[Vec<String>],
    when: &str,
) {
    for (ledger, expected) in acknowledged.iter().enumerate() {
        let found: Vec<String> =
            get_json(client, &format!("{url}/ledger/crash-{ledger}/entries")).await;
        for value in expected {
            assert!(
                found.contains(value),
                "{when}: acknowledged {value} is missing from crash-{ledger}"
            );
        }
    }
}

async fn sql(host: &TestHost, ledger: &str, query: &str) -> Value {
    host.client
        .post(format!("{}/ledger/{ledger}/sql", host.url))
        .body(query.to_owned())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// FTS5 works (its MATCH reads `PRAGMA data_version`), and its shadow
/// tables are the index's alone (defensive mode makes them read-only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fts5_searches_and_its_shadow_tables_are_read_only() {
    let host = host_with("durable-test").await;
    let made = sql(
        &host,
        "fts",
        "CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO docs VALUES ('the quick brown fox'), ('lazy dogs')",
    )
    .await;
    assert_eq!(made["ok"], true, "{made}");
    let found = sql(
        &host,
        "fts",
        "SELECT body FROM docs WHERE docs MATCH 'quick'",
    )
    .await;
    assert_eq!(found["ok"], true, "{found}");
    assert_eq!(found["rows"], 1);
    let forged = sql(&host, "fts", "INSERT INTO docs_data VALUES (99, x'00')").await;
    assert_eq!(forged["ok"], false, "a shadow table was writable: {forged}");
}

/// A write past the object's size limit fails alone: the events batched
/// with it commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_the_cap_write_fails_only_its_own_event() {
    let host = host_with("durable-test").await;
    let before = entries(&host, "cap").await.len();
    // durable-test allows 1 MiB per object; fill's 100 KB rows pass it.
    let paths: Vec<String> = (0..20)
        .map(|n| format!("/ledger/cap/append?value=small-{n}"))
        .collect();
    let writes = paths.iter().map(|path| post(&host, path));
    let fill = post(&host, "/ledger/cap/fill");
    let (appended, filled) = tokio::join!(futures::future::join_all(writes), fill);
    assert!(appended.iter().all(|r| r.status() == 200));
    let filled = filled.text().await.unwrap();
    assert!(filled.contains("database full"), "{filled}");
    let after = entries(&host, "cap").await;
    for n in 0..20 {
        assert!(after.contains(&format!("small-{n}")), "small-{n} was lost");
    }
    assert!(after.len() > before + 20, "fill kept the rows that fitted");
}

/// Two objects that call each other at the same time (A -> B while
/// B -> A) would wait on each other until their wall-clock limits: one
/// call fails at once instead, and the other goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_calls_fail_fast_instead_of_deadlocking() {
    let host = host_with("durable-test").await;
    let started = std::time::Instant::now();
    let (ab, ba) = tokio::join!(
        host.get("/ping/x?then=y&wait=500"),
        host.get("/ping/y?then=x&wait=500")
    );
    let answers = [ab.text().await.unwrap(), ba.text().await.unwrap()];
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the calls waited on each other for {:?}",
        started.elapsed()
    );
    assert!(
        answers.iter().any(|a| a.contains("deadlock")),
        "{answers:?}"
    );
    assert!(answers.iter().any(|a| a.contains("done")), "{answers:?}");
}

/// Evicting an object closes its database in the background (a
/// checkpoint and a sync). An event that brings the object back meanwhile
/// waits for that close instead of finding the file still locked by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_back_during_its_background_close_waits_for_it() {
    let host = host_with("durable-test").await;
    assert_eq!(
        post(&host, "/ledger/back/append?value=old").await.status(),
        200
    );
    let objects = host.platform.objects();
    // Longer than SQLite waits for a lock.
    objects.faults.delay_closes(Duration::from_millis(2500));
    objects.evict_all().await;
    objects.faults.delay_closes(Duration::ZERO);
    let again = post(&host, "/ledger/back/append?value=new").await;
    assert_eq!(again.status(), 200, "{}", again.text().await.unwrap());
    assert_eq!(entries(&host, "back").await, ["old", "new"]);
}
