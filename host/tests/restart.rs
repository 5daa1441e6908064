//! A restarted `verge serve` brings back what was deployed, from the
//! artifact cache, without recompiling.

mod support;

use serde_json::Value;
use support::{VergeProcess, admin_json, guest, upload};

async fn stats(client: &reqwest::Client, admin_url: &str) -> Value {
    admin_json(client, admin_url, reqwest::Method::GET, "/v1/stats").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_workers_from_the_artifact_cache() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let hello = guest("hello");
    let router = guest("router");

    let first = VergeProcess::serve(data.path());
    for (name, g) in [("hello", &hello), ("router", &router)] {
        let res = upload(&client, &first.admin_url, name, g.wasm.clone(), &g.config).await;
        assert_eq!(res.status(), 201);
    }
    let v2 = hello.config.replace("Hello from Verge!", "after restart");
    upload(&client, &first.admin_url, "hello", hello.wasm.clone(), &v2).await;
    // The config-only change reused hello's compiled artifact.
    let artifacts = &stats(&client, &first.admin_url).await["artifacts"];
    assert_eq!(artifacts["compiled"], 2, "{artifacts}");
    assert_eq!(artifacts["loaded_from_cache"], 1, "{artifacts}");
    first.kill();

    let second = VergeProcess::serve(data.path());
    let env = client
        .get(format!("{}/hello/env", second.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        env.text().await.unwrap(),
        "after restart",
        "the active version survives"
    );
    let item = client
        .get(format!("{}/router/items/1", second.url))
        .send()
        .await
        .unwrap();
    assert_eq!(item.status(), 200);

    let artifacts = &stats(&client, &second.admin_url).await["artifacts"];
    assert_eq!(
        artifacts["compiled"], 0,
        "nothing was recompiled: {artifacts}"
    );
    assert_eq!(artifacts["loaded_from_cache"], 2, "{artifacts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_error_id_appears_in_the_host_log() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let host = VergeProcess::serve(data.path());
    let misbehave = guest("misbehave");
    upload(
        &client,
        &host.admin_url,
        "misbehave",
        misbehave.wasm,
        &misbehave.config,
    )
    .await;

    let res = client
        .get(format!("{}/panic", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let error_id = res.headers()["x-verge-error-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let log = host.wait_for_log(&error_id);
    let line = log.lines().find(|l| l.contains(&error_id)).unwrap();
    assert!(
        line.contains("worker=\"misbehave\"") || line.contains("worker=misbehave"),
        "{line}"
    );
    assert!(line.contains("unreachable"), "the log has the trap: {line}");
    assert!(
        log.contains("deliberate panic for the tests"),
        "the guest's panic message reaches the log"
    );

    client
        .get(format!("{}/log", host.url))
        .send()
        .await
        .unwrap();
    let log = host.wait_for_log("stderr line from the guest");
    for line in ["info line from the guest", "stdout line from the guest"] {
        assert!(log.contains(line), "{line} missing from:\n{log}");
    }
}
