//! KV namespaces and R2 buckets in a cluster: three real `verge serve
//! --cluster` processes sharing a throwaway PostgreSQL server, and for R2 a
//! directory every host reaches (`--r2-root`). What one host writes, every
//! host reads, over real HTTP.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::cluster::{TestCluster, until_served};
use support::{TOKEN, admin_json, guest, json_body};

/// Deploys `name` through host 0 and waits until every host serves it.
async fn deploy_everywhere(cluster: &TestCluster, name: &str, path: &str, needle: &str) {
    assert_eq!(
        cluster.host(0).deploy(&cluster.client, &guest(name)).await,
        201
    );
    for (_, host) in cluster.live() {
        until_served(&cluster.client, &format!("{}{path}", host.url), needle).await;
    }
}

async fn set_flag(cluster: &TestCluster, host: usize, name: &str, query: &str, flag: Value) {
    let url = format!("{}/flags/{name}?{query}", cluster.host(host).url);
    let res = cluster.client.put(url).json(&flag).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

async fn get(cluster: &TestCluster, host: usize, path: &str) -> reqwest::Response {
    let url = format!("{}{path}", cluster.host(host).url);
    cluster.client.get(url).send().await.unwrap()
}

/// Runs `verge kv ARGS` against host `host`'s admin API.
fn verge_kv(cluster: &TestCluster, host: usize, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_verge"))
        .arg("kv")
        .args(args)
        .args(["--host", &cluster.host(host).admin_url, "--token", TOKEN])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_keys_written_through_one_host_are_read_through_every_other() {
    let cluster = TestCluster::start(3);
    deploy_everywhere(&cluster, "feature-flags", "/flags", "\"flags\"").await;

    set_flag(
        &cluster,
        1,
        "checkout",
        "by=ada",
        json!({ "enabled": true, "rollout": 50 }),
    )
    .await;
    // No cache between the hosts: the very next read elsewhere sees it.
    let read = get(&cluster, 2, "/flags/checkout").await;
    assert_eq!(read.status(), 200);
    let read: Value = json_body(read).await;
    assert_eq!(read["flag"], json!({ "enabled": true, "rollout": 50 }));
    assert_eq!(read["changed"]["by"], "ada", "metadata travels too: {read}");
    // The rollout decision is the same on every host.
    let mut answers = Vec::new();
    for host in 0..3 {
        let check: Value =
            json_body(get(&cluster, host, "/flags/checkout/check?user=u7").await).await;
        answers.push(check["enabled"].clone());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // `verge kv` and the admin API against host 2 see the worker's write.
    let out = verge_kv(
        &cluster,
        2,
        &["key", "get", "flag:checkout", "--namespace-id", "flags"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored, json!({ "enabled": true, "rollout": 50 }));
    let namespaces = admin_json(
        &cluster.client,
        &cluster.host(2).admin_url,
        Method::GET,
        "/v1/kv",
    )
    .await;
    assert_eq!(
        namespaces["namespaces"],
        json!([{ "id": "flags", "bindings": [{ "worker": "feature-flags", "binding": "FLAGS" }] }]),
    );
    // A namespace written through host 0's admin API only is listed by
    // host 1, from the cluster's database.
    let out = verge_kv(
        &cluster,
        0,
        &["key", "put", "k", "v", "--namespace-id", "ops-notes"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verge_kv(&cluster, 1, &["namespace", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("ops-notes") && listed.contains("flags"),
        "{listed}"
    );

    // A delete through host 0 is gone on host 1.
    let url = format!("{}/flags/checkout", cluster.host(0).url);
    let deleted = cluster.client.delete(url).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(get(&cluster, 1, "/flags/checkout").await.status(), 404);
    let out = verge_kv(
        &cluster,
        2,
        &["key", "get", "flag:checkout", "--namespace-id", "flags"],
    );
    assert!(!out.status.success(), "a deleted key was still read");
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_ttls_expire_and_listings_page_with_cursors_across_hosts() {
    let cluster = TestCluster::start(3);
    deploy_everywhere(&cluster, "feature-flags", "/flags", "\"flags\"").await;

    // A temporary override set through host 1: listed through host 2 with
    // its expiration, gone everywhere once it passed.
    set_flag(
        &cluster,
        1,
        "banner",
        "by=ada&ttl=1",
        json!({ "enabled": true }),
    )
    .await;
    let listed: Value = json_body(get(&cluster, 2, "/flags").await).await;
    let banner = &listed["flags"][0];
    assert_eq!(banner["name"], "banner", "{listed}");
    assert!(banner["expires"].as_u64().is_some(), "{listed}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&cluster, 0, "/flags/banner").await.status() == 200 {
        assert!(Instant::now() < deadline, "the override outlived its TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for host in [1, 2] {
        assert_eq!(get(&cluster, host, "/flags/banner").await.status(), 404);
        let listed: Value = json_body(get(&cluster, host, "/flags").await).await;
        assert_eq!(
            listed["flags"],
            json!([]),
            "host {host} lists an expired key"
        );
    }
    // Reads only hide the expired row; the next write, through any host,
    // sweeps it out of the shared table.
    let banner_rows = "SELECT count(*) FROM kv_entries
         WHERE namespace = 'flags' AND key = convert_to('flag:banner', 'UTF8')";
    assert_eq!(cluster.db.psql(banner_rows).trim(), "1");
    set_flag(&cluster, 2, "after", "by=ada", json!({ "enabled": false })).await;
    assert_eq!(cluster.db.psql(banner_rows).trim(), "0");

    // 250 flags in one bulk write through host 1's admin API (all or
    // none), then listed 100 at a time by the worker, each page from
    // another host, the cursor carried between them.
    let names: Vec<String> = (0..250).map(|n| format!("f{n:03}")).collect();
    let bulk: Vec<Value> = names
        .iter()
        .map(|n| json!({ "key": format!("flag:{n}"), "value": r#"{"enabled":true}"# }))
        .collect();
    let res = cluster
        .client
        .put(format!("{}/v1/kv/flags/bulk", cluster.host(1).admin_url))
        .bearer_auth(TOKEN)
        .json(&bulk)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // A bulk write with one bad entry changes nothing, on any host.
    let bad = json!([{ "key": "flag:zz-never", "value": "{}" }, { "key": "", "value": "x" }]);
    let res = cluster
        .client
        .put(format!("{}/v1/kv/flags/bulk", cluster.host(0).admin_url))
        .bearer_auth(TOKEN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(get(&cluster, 2, "/flags/zz-never").await.status(), 404);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let host = page % 3;
        let path = match &cursor {
            Some(cursor) => format!("/flags?cursor={cursor}"),
            None => "/flags".to_owned(),
        };
        let listed: Value = json_body(get(&cluster, host, &path).await).await;
        let flags = listed["flags"].as_array().unwrap();
        seen.extend(flags.iter().map(|f| f["name"].as_str().unwrap().to_owned()));
        match listed["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(page < 5, "the listing never ended: {listed}");
    }
    let mut expected = names.clone();
    expected.push("after".to_owned());
    expected.sort();
    assert_eq!(seen, expected, "every key once, in order, across 3 pages");

    // Keys list in byte order, as on a single host (not the database's
    // locale order), and a cursor from one host resumes on another.
    for key in ["order:a", "order:B", "order:é", "order:~", "order:Z"] {
        let url = format!("{}/v1/kv/flags/values/{key}", cluster.host(0).admin_url);
        let res = cluster
            .client
            .put(url)
            .bearer_auth(TOKEN)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let first = admin_json(
        &cluster.client,
        &cluster.host(1).admin_url,
        Method::GET,
        "/v1/kv/flags/keys?prefix=order:&limit=3",
    )
    .await;
    let cursor = first["cursor"].as_str().unwrap();
    let rest = admin_json(
        &cluster.client,
        &cluster.host(2).admin_url,
        Method::GET,
        &format!("/v1/kv/flags/keys?prefix=order:&limit=3&cursor={cursor}"),
    )
    .await;
    let names: Vec<&str> = [&first, &rest]
        .iter()
        .flat_map(|page| page["keys"].as_array().unwrap())
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["order:B", "order:Z", "order:a", "order:~", "order:é"]
    );
    assert_eq!(rest["list_complete"], true);
    let res = cluster
        .client
        .get(format!(
            "{}/v1/kv/flags/keys?cursor=not-a-cursor",
            cluster.host(0).admin_url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "a bad cursor is the caller's error");
}

/// A shared directory for the cluster's R2 bodies, as a `--r2-root` URL.
fn shared_root(dir: &tempfile::TempDir) -> String {
    format!("file://{}/", dir.path().display())
}

async fn send(
    cluster: &TestCluster,
    host: usize,
    method: Method,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let url = format!("{}{path}", cluster.host(host).url);
    cluster
        .client
        .request(method, url)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn r2_objects_written_through_one_host_are_read_and_listed_through_others() {
    let shared = tempfile::tempdir().unwrap();
    let root = shared_root(&shared);
    let cluster = TestCluster::start_with(3, &["--r2-root", &root]);
    deploy_everywhere(&cluster, "file-store", "/files", "\"objects\"").await;

    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let put = send(&cluster, 1, Method::PUT, "/files/docs/a.bin", body.clone()).await;
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    let put: Value = json_body(put).await;

    // A range read through host 2 of what host 1 wrote.
    let url = format!("{}/files/docs/a.bin", cluster.host(2).url);
    let ranged = cluster
        .client
        .get(url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &body[1000..2000]);
    let whole = send(&cluster, 0, Method::GET, "/files/docs/a.bin", "").await;
    let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag.trim_matches('"'), put["etag"].as_str().unwrap());
    assert_eq!(whole.bytes().await.unwrap().as_ref(), body.as_slice());
    // A conditional read on another host agrees on the etag.
    let url = format!("{}/files/docs/a.bin", cluster.host(1).url);
    let unchanged = cluster
        .client
        .get(url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), 304);

    // Objects through every host, listed with a delimiter through host 0.
    for (host, key) in [
        (0, "docs/b.txt"),
        (1, "docs/sub/c.txt"),
        (2, "docs/sub/d.txt"),
        (2, "top.txt"),
    ] {
        let put = send(&cluster, host, Method::PUT, &format!("/files/{key}"), key).await;
        assert_eq!(put.status(), 201);
    }
    let listed: Value = json_body(
        send(
            &cluster,
            0,
            Method::GET,
            "/files?prefix=docs/&delimiter=/",
            "",
        )
        .await,
    )
    .await;
    let keys: Vec<&str> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["docs/a.bin", "docs/b.txt"], "{listed}");
    assert_eq!(listed["delimited_prefixes"], json!(["docs/sub/"]));
    assert_eq!(listed["truncated"], false);
    // Paged through different hosts, one entry a page.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for page in 0..10 {
        let path = format!("/files?delimiter=/&limit=1&cursor={cursor}");
        let listed: Value = json_body(send(&cluster, page % 3, Method::GET, &path, "").await).await;
        for object in listed["objects"].as_array().unwrap() {
            seen.push(object["key"].as_str().unwrap().to_owned());
        }
        for prefix in listed["delimited_prefixes"].as_array().unwrap() {
            seen.push(prefix.as_str().unwrap().to_owned());
        }
        if listed["truncated"] == false {
            break;
        }
        cursor = listed["cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, ["docs/", "top.txt"]);

    // A replace through host 2 is what host 1 reads; the replaced body is
    // gone from the shared store, the new one there once.
    let put = send(&cluster, 2, Method::PUT, "/files/top.txt", "replaced").await;
    assert_eq!(put.status(), 201);
    let read = send(&cluster, 1, Method::GET, "/files/top.txt", "").await;
    assert_eq!(read.text().await.unwrap(), "replaced");
    let blobs = std::fs::read_dir(shared.path().join("file-store/data"))
        .unwrap()
        .count();
    assert_eq!(blobs, 5, "one body per live object");

    // Every host lists the bucket with the same usage.
    let buckets = admin_json(
        &cluster.client,
        &cluster.host(2).admin_url,
        Method::GET,
        "/v1/r2/buckets",
    )
    .await;
    let bucket = &buckets["buckets"][0];
    assert_eq!(bucket["name"], "file-store", "{buckets}");
    assert_eq!(bucket["objects"], 5, "{buckets}");

    // A delete through host 0 is gone on host 2.
    let deleted = send(&cluster, 0, Method::DELETE, "/files/docs/b.txt", "").await;
    assert_eq!(deleted.status(), 204);
    let gone = send(&cluster, 2, Method::GET, "/files/docs/b.txt", "").await;
    assert_eq!(gone.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn r2_multipart_parts_through_two_hosts_complete_on_a_third() {
    let shared = tempfile::tempdir().unwrap();
    let root = shared_root(&shared);
    let cluster = TestCluster::start_with(3, &["--r2-root", &root]);
    deploy_everywhere(&cluster, "file-store", "/files", "\"objects\"").await;

    let started = send(&cluster, 0, Method::POST, "/uploads/big.bin", "").await;
    assert_eq!(started.status(), 201);
    let started: Value = json_body(started).await;
    let id = started["upload_id"].as_str().unwrap();

    let first: Vec<u8> = (0..5 << 20).map(|i| (i % 251) as u8).collect();
    let second = b"the last part may be small".to_vec();
    let mut parts = Vec::new();
    for (host, number, body) in [(1, 1, first.clone()), (2, 2, second.clone())] {
        let path = format!("/uploads/big.bin?upload_id={id}&part={number}");
        let res = send(&cluster, host, Method::PUT, &path, body).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        parts.push(json_body::<Value>(res).await);
    }
    // Nothing under the key until the upload completes.
    assert_eq!(
        send(&cluster, 1, Method::GET, "/files/big.bin", "")
            .await
            .status(),
        404
    );

    let completion = json!({ "parts": parts }).to_string();
    let path = format!("/uploads/big.bin?upload_id={id}");
    let done = send(&cluster, 0, Method::POST, &path, completion.clone()).await;
    assert_eq!(done.status(), 201, "{}", done.text().await.unwrap());
    let done: Value = json_body(done).await;
    assert!(done["etag"].as_str().unwrap().ends_with("-2"), "{done}");
    assert_eq!(done["size"], first.len() + second.len());

    // Whole on every host, byte for byte.
    let mut expected = first;
    expected.extend_from_slice(&second);
    for host in 0..3 {
        let read = send(&cluster, host, Method::GET, "/files/big.bin", "").await;
        assert_eq!(read.status(), 200);
        let bytes = read.bytes().await.unwrap();
        assert!(
            bytes.as_ref() == expected.as_slice(),
            "host {host} read other bytes"
        );
    }
    // The upload is over for every host: completing it again elsewhere is
    // refused, and its parts were deleted from the shared store.
    let again = send(&cluster, 2, Method::POST, &path, completion).await;
    assert_eq!(again.status(), 400, "{}", again.text().await.unwrap());
    let staged = shared.path().join(format!("file-store/uploads/{id}"));
    let left = std::fs::read_dir(&staged).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "parts left in {}", staged.display());

    // An upload aborted through one host is unknown to the others.
    let started: Value =
        json_body(send(&cluster, 1, Method::POST, "/uploads/other.bin", "").await).await;
    let id = started["upload_id"].as_str().unwrap();
    let path = format!("/uploads/other.bin?upload_id={id}");
    assert_eq!(
        send(&cluster, 1, Method::DELETE, &path, "").await.status(),
        204
    );
    let part = format!("{path}&part=1");
    let late = send(&cluster, 2, Method::PUT, &part, "late").await;
    assert_eq!(late.status(), 400, "{}", late.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_refuses_a_bucket_without_a_shared_location_and_says_how_to_give_one() {
    let cluster = TestCluster::start(1);
    let res = cluster
        .client
        .put(format!(
            "{}/v1/r2/buckets/photos",
            cluster.host(0).admin_url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let error = res.text().await.unwrap();
    assert!(
        error.contains("--r2-bucket photos=") && error.contains("--r2-root"),
        "{error}"
    );
    // A worker bound to such a bucket fails its requests, not the host.
    assert_eq!(
        cluster
            .host(0)
            .deploy(&cluster.client, &guest("file-store"))
            .await,
        201
    );
    let res = send(&cluster, 0, Method::GET, "/files/x", "").await;
    assert_eq!(res.status(), 500);
    let buckets = admin_json(
        &cluster.client,
        &cluster.host(0).admin_url,
        Method::GET,
        "/v1/r2/buckets",
    )
    .await;
    assert_eq!(buckets["buckets"], json!([]), "nothing was created");
}
