//! KV namespaces against a real host: the kv-test guest (every call and
//! option over HTTP) and the feature-flags example, across a restart of
//! the real binary and between two workers bound to one namespace.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use support::{TOKEN, TestHost, VergeProcess, guest};

async fn kv_host() -> TestHost {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("kv-test")).await.status(), 201);
    host
}

async fn put(host: &TestHost, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, String) {
    let response = host
        .client
        .put(format!("{}{path}", host.url))
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn get(host: &TestHost, path: &str) -> reqwest::Response {
    host.get(path).await
}

async fn list(host: &TestHost, query: &str) -> Value {
    host.get_json(&format!("/list?{query}")).await
}

fn names(page: &Value) -> Vec<&str> {
    page["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn values_metadata_and_deletes_round_trip() {
    let host = kv_host().await;
    let metadata = urlencode(r#"{"owner":"ada","n":1}"#);
    let (status, body) = put(&host, &format!("/kv/greeting?metadata={metadata}"), "héllo").await;
    assert_eq!(status, 204, "{body}");

    let response = get(&host, "/kv/greeting").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-metadata"], r#"{"n":1,"owner":"ada"}"#);
    assert_eq!(response.headers()["x-expiration"], "");
    assert_eq!(response.text().await.unwrap(), "héllo");

    // Bytes that are not text, and a key with slashes and spaces.
    let bytes: Vec<u8> = (0..=255).collect();
    assert_eq!(put(&host, "/kv/a/b%20c", bytes.clone()).await.0, 204);
    let response = get(&host, "/kv/a/b%20c").await;
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);

    // Overwriting replaces the metadata too.
    assert_eq!(put(&host, "/kv/greeting", "bye").await.0, 204);
    let response = get(&host, "/kv/greeting").await;
    assert_eq!(response.headers()["x-metadata"], "");
    assert_eq!(response.text().await.unwrap(), "bye");

    let deleted = host.client.delete(format!("{}/kv/greeting", host.url));
    assert_eq!(deleted.send().await.unwrap().status(), 204);
    assert_eq!(get(&host, "/kv/greeting").await.status(), 404);
    // Deleting what is not there is not an error.
    let again = host.client.delete(format!("{}/kv/greeting", host.url));
    assert_eq!(again.send().await.unwrap().status(), 204);
}

#[tokio::test]
async fn list_pages_through_a_prefix_with_cursors() {
    let host = kv_host().await;
    for n in 0..25 {
        let (status, body) = put(&host, &format!("/kv/user:{n:02}?metadata={n}"), "x").await;
        assert_eq!(status, 204, "{body}");
    }
    for key in ["user", "users:1", "a", "z"] {
        assert_eq!(put(&host, &format!("/kv/{key}"), "x").await.0, 204);
    }

    let mut seen = Vec::new();
    let mut query = "prefix=user:&limit=10".to_owned();
    let mut pages = 0;
    loop {
        let page = list(&host, &query).await;
        pages += 1;
        seen.extend(names(&page).into_iter().map(str::to_owned));
        if page["list_complete"] == json!(true) {
            assert_eq!(page["cursor"], Value::Null);
            break;
        }
        let cursor = page["cursor"].as_str().unwrap();
        query = format!("prefix=user:&limit=10&cursor={cursor}");
    }
    let expected: Vec<String> = (0..25).map(|n| format!("user:{n:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    let page = list(&host, "prefix=user:0&limit=1").await;
    assert_eq!(page["keys"][0]["metadata"], json!(0));
    let all = list(&host, "").await;
    assert_eq!(names(&all).len(), 29);
    assert_eq!(names(&all)[0], "a");
}

#[tokio::test]
async fn expired_keys_are_never_returned() {
    let host = kv_host().await;
    assert_eq!(
        put(&host, "/kv/session:short?ttl=1", "soon gone").await.0,
        204
    );
    assert_eq!(
        put(&host, "/kv/session:long?ttl=3600", "stays").await.0,
        204
    );
    let far = 4_102_444_800_u64; // 2100-01-01
    assert_eq!(
        put(
            &host,
            &format!("/kv/session:dated?expiration={far}"),
            "stays"
        )
        .await
        .0,
        204
    );

    let response = get(&host, "/kv/session:dated").await;
    assert_eq!(response.headers()["x-expiration"], far.to_string());
    assert_eq!(names(&list(&host, "prefix=session:").await).len(), 3);

    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&host, "/kv/session:short").await.status() == 200 {
        assert!(
            Instant::now() < deadline,
            "a 1 s TTL key still answers after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        names(&list(&host, "prefix=session:").await),
        ["session:dated", "session:long"]
    );
    assert_eq!(get(&host, "/kv/session:long").await.status(), 200);
}

#[tokio::test]
async fn bad_keys_values_and_options_are_refused_with_the_reason() {
    let host = kv_host().await;
    let cases = [
        (
            format!("/kv/{}", "k".repeat(513)),
            "x".to_owned(),
            "limits.kv_key_bytes",
        ),
        (
            "/kv/big".to_owned(),
            "x".repeat((1 << 20) + 1),
            "limits.kv_value_mb",
        ),
        ("/kv/t?ttl=0".to_owned(), "x".into(), "at least 1 second"),
        (
            "/kv/t?expiration=1000".to_owned(),
            "x".into(),
            "not in the future",
        ),
        (
            "/kv/t?ttl=60&expiration=4102444800".to_owned(),
            "x".into(),
            "not both",
        ),
        (
            format!("/kv/t?metadata=%22{}%22", "m".repeat(1100)),
            "x".into(),
            "metadata of 1102 bytes",
        ),
    ];
    for (path, body, reason) in cases {
        let (status, text) = put(&host, &path, body).await;
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains(reason), "{path}: {text}");
    }
    let page = get(&host, "/list?cursor=not-a-cursor").await;
    assert_eq!(page.status(), 400);
    let page = get(&host, "/list?limit=1001").await;
    assert_eq!(page.status(), 400);

    let unbound = get(&host, "/binding/NOPE").await;
    assert_eq!(unbound.status(), 404);
    assert!(
        unbound
            .text()
            .await
            .unwrap()
            .contains("no KV namespace bound as `NOPE`")
    );

    // Nothing was stored by the refused writes; the host still serves.
    assert_eq!(names(&list(&host, "").await), Vec::<&str>::new());
    assert_eq!(put(&host, "/kv/fine", "ok").await.0, 204);
}

#[tokio::test]
async fn workers_bound_to_one_namespace_share_it() {
    let host = TestHost::start().await;
    let flags = guest("feature-flags");
    assert_eq!(host.deploy(&flags).await.status(), 201);
    // A second worker binds the same namespace id under another binding
    // name, on another host name.
    let reader = flags
        .config
        .replace("name = \"feature-flags\"", "name = \"flag-reader\"")
        .replace(
            "routes = [\"/flags\", \"/flags/*\"]",
            "routes = [\"reader.test/*\"]",
        );
    let status = host
        .upload("flag-reader", flags.wasm.clone(), &reader)
        .await
        .status();
    assert_eq!(status, 201);

    let set = host
        .client
        .put(format!("{}/flags/dark-mode?by=ada", host.url))
        .body(r#"{"enabled": true, "rollout": 100}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "{}", set.text().await.unwrap());

    let read: Value = host
        .client
        .get(format!("{}/flags/dark-mode/check?user=grace", host.url))
        .header("host", "reader.test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, json!({ "enabled": true }));
}

#[tokio::test]
async fn feature_flags_roll_out_by_user_and_overrides_expire() {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("feature-flags")).await.status(), 201);
    let client = &host.client;
    let set = |name: &str, query: &str, flag: Value| {
        client
            .put(format!("{}/flags/{name}?{query}", host.url))
            .json(&flag)
            .send()
    };
    let half = set(
        "checkout",
        "by=ada",
        json!({ "enabled": true, "rollout": 50 }),
    );
    assert_eq!(half.await.unwrap().status(), 200);
    let mut on = 0;
    for user in 0..200 {
        let answer = host
            .get_json(&format!("/flags/checkout/check?user=u{user}"))
            .await;
        on += usize::from(answer["enabled"] == json!(true));
    }
    assert!(
        (60..=140).contains(&on),
        "50 % rollout reached {on} of 200 users"
    );

    let flag = host.get_json("/flags/checkout").await;
    assert_eq!(flag["flag"], json!({ "enabled": true, "rollout": 50 }));
    assert_eq!(flag["changed"]["by"], "ada");

    let temporary = set("banner", "by=ada&ttl=1", json!({ "enabled": true }));
    assert_eq!(temporary.await.unwrap().status(), 200);
    let listed = host.get_json("/flags").await;
    assert_eq!(listed["flags"].as_array().unwrap().len(), 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.get("/flags/banner").await.status() == 200 {
        assert!(Instant::now() < deadline, "the override outlived its TTL");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bad = set(
        "checkout",
        "by=ada",
        json!({ "enabled": true, "rollout": 101 }),
    );
    assert_eq!(bad.await.unwrap().status(), 400);
}

#[tokio::test]
async fn keys_survive_a_restart_of_the_host() {
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();
    let kv = guest("kv-test");
    {
        let host = VergeProcess::serve(data.path());
        assert_eq!(host.deploy(&client, &kv).await, 201);
        let response = client
            .put(format!("{}/kv/durable?metadata=%7B%7D", host.url))
            .body("written before the kill")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        host.kill();
    }
    let host = VergeProcess::serve(data.path());
    let response = client
        .get(format!("{}/kv/durable", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "written before the kill");
}

/// Runs `verge kv ARGS` in `dir` against the admin API at `host`.
fn run_verge_kv(dir: &std::path::Path, host: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_verge"))
        .arg("kv")
        .args(args)
        .args(["--host", host, "--token", TOKEN])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs `verge kv ARGS`; returns its stdout, failing on an error.
fn verge_kv(dir: &std::path::Path, host: &str, args: &[&str]) -> String {
    let output = run_verge_kv(dir, host, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "verge kv {args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `verge kv ARGS`, which must fail; returns its stderr.
fn verge_kv_refused(dir: &std::path::Path, host: &str, args: &[&str]) -> String {
    let output = run_verge_kv(dir, host, args);
    assert!(!output.status.success(), "verge kv {args:?} succeeded");
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test]
async fn the_cli_reads_and_writes_what_workers_see() {
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();
    let host = VergeProcess::serve(data.path());
    let kv = guest("kv-test");
    assert_eq!(host.deploy(&client, &kv).await, 201);
    // A project directory whose verge.toml binds the namespace as CACHE.
    let project = kv.dir.clone();
    let admin = host.admin_url.clone();
    let admin = admin.as_str();

    let namespaces = verge_kv(&project, admin, &["namespace", "list"]);
    assert!(
        namespaces.contains("shared-cache") && namespaces.contains("kv-test (CACHE)"),
        "{namespaces}"
    );

    verge_kv(
        &project,
        admin,
        &[
            "key",
            "put",
            "motd",
            "hello from the CLI",
            "--binding",
            "CACHE",
            "--metadata",
            r#"{"by":"ops"}"#,
        ],
    );
    let response = client
        .get(format!("{}/kv/motd", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-metadata"], r#"{"by":"ops"}"#);
    assert_eq!(response.text().await.unwrap(), "hello from the CLI");

    // What a worker writes, the CLI reads; keys with spaces and slashes too.
    let put = client
        .put(format!("{}/kv/a/b%20c?ttl=3600", host.url))
        .body(vec![0u8, 159, 146, 150]);
    assert_eq!(put.send().await.unwrap().status(), 204);
    let read = run_verge_kv(
        &project,
        admin,
        &["key", "get", "a/b c", "--namespace-id", "shared-cache"],
    );
    assert!(read.status.success());
    assert_eq!(read.stdout, [0u8, 159, 146, 150]);

    let listed: Value = serde_json::from_str(&verge_kv(
        &project,
        admin,
        &["key", "list", "--binding", "CACHE"],
    ))
    .unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a/b c", "motd"]);
    assert!(listed[0]["expiration"].as_i64().is_some());
    assert_eq!(listed[1]["metadata"], json!({ "by": "ops" }));

    verge_kv(
        &project,
        admin,
        &["key", "delete", "motd", "--binding", "CACHE"],
    );
    let gone = client
        .get(format!("{}/kv/motd", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // Bulk writes and deletes, all or none, in wrangler's JSON.
    let pairs = data.path().join("pairs.json");
    let json = json!([
        { "key": "bulk:1", "value": "one", "metadata": { "n": 1 } },
        { "key": "bulk:2", "value": "AAH/", "base64": true, "expiration_ttl": 600 },
    ]);
    std::fs::write(&pairs, json.to_string()).unwrap();
    verge_kv(
        &project,
        admin,
        &["bulk", "put", pairs.to_str().unwrap(), "--binding", "CACHE"],
    );
    let two = client
        .get(format!("{}/kv/bulk:2", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(two.bytes().await.unwrap().to_vec(), [0u8, 1, 255]);
    let bad = data.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"key": "bulk:3", "value": "x"}, {"key": "", "value": "x"}]"#,
    )
    .unwrap();
    let refused = verge_kv_refused(
        &project,
        admin,
        &[
            "bulk",
            "put",
            bad.to_str().unwrap(),
            "--namespace-id",
            "shared-cache",
        ],
    );
    assert!(refused.contains("entry 1"), "{refused}");
    let none = client
        .get(format!("{}/kv/bulk:3", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404, "a refused bulk write stores nothing");
    std::fs::write(&pairs, r#"["bulk:1", "bulk:2"]"#).unwrap();
    verge_kv(
        &project,
        admin,
        &[
            "bulk",
            "delete",
            pairs.to_str().unwrap(),
            "--binding",
            "CACHE",
        ],
    );
    let listed = host_keys(&client, &host.url, "bulk:").await;
    assert!(listed.is_empty(), "{listed:?}");

    // A key the host refuses fails with its reason.
    let long = "k".repeat(600);
    let refused = verge_kv_refused(
        &project,
        admin,
        &["key", "put", &long, "v", "--namespace-id", "shared-cache"],
    );
    assert!(refused.contains("limits.kv_key_bytes"), "{refused}");

    // --local works on a stopped host's data directory.
    host.kill();
    let state = data.path().to_str().unwrap();
    verge_kv(
        &project,
        admin,
        &[
            "key",
            "put",
            "offline",
            "written locally",
            "--binding",
            "CACHE",
            "--local",
            "--persist-to",
            state,
        ],
    );
    let host = VergeProcess::serve(data.path());
    let response = client
        .get(format!("{}/kv/offline", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "written locally");
}

async fn host_keys(client: &Client, url: &str, prefix: &str) -> Vec<String> {
    let page: Value = client
        .get(format!("{url}/list?prefix={prefix}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    names(&page).into_iter().map(str::to_owned).collect()
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
