//! The admin API: uploads, listing, activation, rollback, deletion, secrets
//! and authentication, against a real host.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TOKEN, TestHost, guest, upload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_gets_401() {
    let host = TestHost::start().await;
    let url = format!("{}/v1/workers", host.admin_url);
    let missing = host.client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let wrong = host
        .client
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid admin token"
    );

    let hello = guest("hello");
    let form = reqwest::multipart::Form::new()
        .part(
            "component",
            reqwest::multipart::Part::bytes(hello.wasm.clone()),
        )
        .text("config", hello.config.clone());
    let sneaky = host
        .client
        .post(format!("{}/v1/workers/hello/versions", host.admin_url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(sneaky.status(), 401);
    assert_eq!(
        host.get("/hello").await.status(),
        404,
        "nothing was deployed"
    );

    let ok = host
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_list_rollback_and_delete() {
    let host = TestHost::start().await;
    let hello = guest("hello");
    let v1: Value = host.deploy(&hello).await.json().await.unwrap();
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["routes"], json!(["/hello", "/hello/*"]));

    // Uploading the same thing again changes nothing.
    let again = host.deploy(&hello).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["unchanged"], true);

    // Version 2 differs only in a var.
    let v2_config = hello.config.replace("Hello from Verge!", "Version two");
    let v2 = host.upload("hello", hello.wasm.clone(), &v2_config).await;
    assert_eq!(v2.status(), 201);
    assert_eq!(host.get_text("/hello/env").await, "Version two");

    let list: Value = host.admin_json(Method::GET, "/v1/workers").await;
    assert_eq!(list["workers"][0]["name"], "hello");
    assert_eq!(list["workers"][0]["active_version"], 2);

    let detail: Value = host.admin_json(Method::GET, "/v1/workers/hello").await;
    let versions: Vec<(u64, bool)> = detail["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(versions, [(2, true), (1, false)]);

    let rolled: Value = host
        .admin_json(Method::POST, "/v1/workers/hello/rollback")
        .await;
    assert_eq!(rolled["version"], 1);
    assert_eq!(host.get_text("/hello/env").await, "Hello from Verge!");

    let activated = host
        .admin(Method::POST, "/v1/workers/hello/activate")
        .json(&json!({ "version": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), 200);
    assert_eq!(host.get_text("/hello/env").await, "Version two");

    let no_such_version = host
        .admin(Method::POST, "/v1/workers/hello/activate")
        .json(&json!({ "version": 9 }))
        .send()
        .await
        .unwrap();
    assert_eq!(no_such_version.status(), 404);

    let deleted = host
        .admin(Method::DELETE, "/v1/workers/hello")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(host.get("/hello").await.status(), 404);
    let gone = host
        .admin(Method::GET, "/v1/workers/hello")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let components = std::fs::read_dir(host.data.path().join("components"))
        .unwrap()
        .count();
    assert_eq!(
        components, 0,
        "the deleted worker's component files are removed"
    );
}

/// Asserts a 400 and returns its error message.
async fn expect_400(res: reqwest::Response) -> String {
    assert_eq!(res.status(), 400);
    res.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_the_active_version_keeps_serving() {
    let host = TestHost::start().await;
    let hello = guest("hello");
    host.deploy(&hello).await;

    let mut truncated = hello.wasm.clone();
    truncated.truncate(hello.wasm.len() / 2);
    let config = hello.config.as_str();
    let refusals: [(Vec<u8>, &str, &str); 9] = [
        (guest("unsatisfiable").wasm, config, "acme:test/query"),
        (guest("unsatisfiable").wasm, config, "acme:test/cache"),
        (
            wat::parse_str("(module)").unwrap(),
            config,
            "core WebAssembly module, not a component",
        ),
        (
            b"#!/bin/sh\necho hi".to_vec(),
            config,
            "not a WebAssembly binary",
        ),
        (truncated, config, "invalid component"),
        (
            hello.wasm.clone(),
            "name = \"hello\"\nroutes = [\n",
            "verge.toml:",
        ),
        (
            hello.wasm.clone(),
            "name = \"hello\"\n[limits]\ncpu_ms = 0\n",
            "limits.cpu_ms = 0 is out of range",
        ),
        (hello.wasm.clone(), "name = \"other\"", "does not match"),
        (
            hello.wasm.clone(),
            "name = \"hello\"\n[limits]\nmemory_mb = 4096\n",
            "exceeds this host's maximum",
        ),
    ];
    for (wasm, config, expected) in refusals {
        let error = expect_400(host.upload("hello", wasm, config).await).await;
        assert!(
            error.contains(expected),
            "expected {expected:?} in {error:?}"
        );
    }
    let imports = expect_400(
        host.upload("hello", guest("unsatisfiable").wasm, config)
            .await,
    )
    .await;
    assert!(
        !imports.contains("wasi:"),
        "WASI imports are satisfied: {imports}"
    );

    let not_multipart = host
        .admin(Method::POST, "/v1/workers/hello/versions")
        .body(hello.wasm.clone())
        .send()
        .await
        .unwrap();
    assert!(expect_400(not_multipart).await.contains("multipart"));

    // Through all of it, version 1 kept serving and no version was added.
    assert_eq!(host.get("/hello").await.status(), 200);
    let detail: Value = host.admin_json(Method::GET, "/v1/workers/hello").await;
    assert_eq!(detail["versions"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_nothing_creates_deploys_with_a_warning_and_a_typo_gets_a_suggestion() {
    let host = TestHost::start().await;
    let counters = guest("counter-rpc");
    // The component defines Counter and Tally; this verge.toml creates
    // neither.
    let bare = "name = \"counter-rpc\"\nroutes = [\"/counter/*\"]\n";
    let deployed = host
        .upload("counter-rpc", counters.wasm.clone(), bare)
        .await;
    assert_eq!(deployed.status(), 201);
    let deployed: Value = deployed.json().await.unwrap();
    let warnings = deployed["warnings"].to_string();
    for class in ["Counter", "Tally"] {
        assert!(
            warnings.contains(&format!(
                "class \\\"{class}\\\", which verge.toml does not create"
            )),
            "{warnings}"
        );
    }

    let typo = counters
        .config
        .replace("class_name = \"Counter\"", "class_name = \"Conter\"");
    let refused = expect_400(host.upload("counter-rpc", counters.wasm, &typo).await).await;
    assert!(refused.contains("did you mean \"Counter\"?"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_routes_are_refused() {
    let host = TestHost::start().await;
    host.deploy(&guest("hello")).await;
    let router = guest("router");
    let config = router.config.replace(
        "routes = [\"/router\", \"/router/*\"]",
        "routes = [\"/hello\"]",
    );
    let res = upload(
        &host.client,
        &host.admin_url,
        "router",
        router.wasm,
        &config,
    )
    .await;
    assert_eq!(res.status(), 409);
    let error = res.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("route `/hello` is claimed by both"),
        "{error}"
    );
    assert_eq!(host.get("/hello").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_guest_and_are_never_listed_back() {
    let host = TestHost::start().await;
    host.deploy(&guest("misbehave")).await;
    assert_eq!(host.get("/secret?name=API_KEY").await.status(), 404);
    let put = host
        .admin(Method::PUT, "/v1/workers/misbehave/secrets/API_KEY")
        .body("s3cr3t")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(host.get_text("/secret?name=API_KEY").await, "s3cr3t");
    let names: Value = host
        .admin_json(Method::GET, "/v1/workers/misbehave/secrets")
        .await;
    assert_eq!(names, json!({ "secrets": ["API_KEY"] }));

    let deleted = host
        .admin(Method::DELETE, "/v1/workers/misbehave/secrets/API_KEY")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(host.get("/secret?name=API_KEY").await.status(), 404);
    let again = host
        .admin(Method::DELETE, "/v1/workers/misbehave/secrets/API_KEY")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

/// A page on another domain cannot reach the admin API through a browser
/// by rebinding its name to the host's address: names the API does not
/// answer to are refused, even with the right token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_only_to_its_own_names() {
    let host = TestHost::start().await;
    let url = format!("{}/v1/workers", host.admin_url);
    let rebound = host
        .client
        .get(&url)
        .header("host", "attacker.example:8788")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 421);
    for name in ["localhost", "127.0.0.1:8788"] {
        let direct = host
            .client
            .get(&url)
            .header("host", name)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(direct.status(), 200, "{name}");
    }
}

/// An upload past the admin API's limit is a 413 that says so, not a
/// confusing multipart error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_is_a_413() {
    let host = TestHost::start().await;
    let size: u64 = 300 << 20;
    let zeros = futures::stream::iter(
        (0..size / (1 << 20)).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1 << 20])),
    );
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(zeros), size)
            .file_name("huge.wasm");
    let form = reqwest::multipart::Form::new()
        .text("config", "name = \"huge\"\n")
        .part("component", part);
    let refused = host
        .client
        .post(format!("{}/v1/workers/huge/versions", host.admin_url))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    let error = refused.json::<Value>().await.unwrap()["error"].to_string();
    assert!(error.contains("larger than"), "{error}");
}

/// `GET /v1/status` counts what the host holds: a socket open on an
/// object in memory, then hibernated once the object is evicted, and an
/// alarm scheduled but not yet due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_workers_objects_sockets_and_alarms() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("durable-test")).await.status(), 201);
    let empty: Value = host.admin_json(Method::GET, "/v1/status").await;
    assert_eq!(empty["version"], env!("CARGO_PKG_VERSION"));
    assert!(empty["uptime_secs"].is_u64(), "{empty}");
    assert_eq!(
        empty["workers"],
        json!([{ "name": "durable-test", "active_version": 1, "serving": true }])
    );
    assert_eq!(empty["objects"]["active"], 0);
    assert_eq!(empty["objects"]["websockets_open"], 0);

    let url = format!("{}/ledger/s/ws", host.url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket.send(Message::text("hello")).await.unwrap();
    assert!(socket.next().await.unwrap().unwrap().is_text());
    let scheduled = host
        .client
        .post(format!(
            "{}/ledger/s/schedule?value=later&in_ms=3600000",
            host.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.status(), 200);

    let busy: Value = host.admin_json(Method::GET, "/v1/status").await;
    let objects = &busy["objects"];
    assert_eq!(objects["active"], 1, "{busy}");
    assert_eq!(objects["websockets_open"], 1, "{busy}");
    assert_eq!(objects["websockets_hibernated"], 0, "{busy}");
    assert_eq!(objects["alarms_scheduled"], 1, "{busy}");
    assert_eq!(objects["alarms_due"], 0, "{busy}");

    host.platform.objects().evict_all().await;
    let hibernating: Value = host.admin_json(Method::GET, "/v1/status").await;
    let objects = &hibernating["objects"];
    assert_eq!(objects["active"], 0, "{hibernating}");
    assert_eq!(objects["websockets_open"], 1, "{hibernating}");
    assert_eq!(objects["websockets_hibernated"], 1, "{hibernating}");
}

/// Deleting an object that never existed is a 404 naming class and
/// worker, not a silent success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_missing_object_is_a_404() {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("durable-test")).await.status(), 201);
    let id = host.object_id("durable-test", "Ledger", "nobody").await;
    let missing = host
        .admin(
            Method::DELETE,
            &format!("/v1/workers/durable-test/objects/Ledger/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let error = missing.json::<Value>().await.unwrap()["error"].clone();
    assert_eq!(
        error,
        format!("no object {id} in class `Ledger` of worker `durable-test`")
    );
}
