//! R2 buckets through a real host: the `file-store` example over HTTP
//! (put, get, head, delete, listings, metadata, ranges, conditions,
//! multipart), a restart of the real binary, hostile inputs, a bucket
//! kept at a URL, and `verge r2` against a running host.

mod support;

use std::process::Command;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{TOKEN, TestHost, VergeProcess, guest, json_body, upload};

/// file-store deployed on a fresh in-process host (dev mode: error
/// responses say why).
async fn file_store() -> TestHost {
    let host = TestHost::start_with(true).await;
    assert_eq!(host.deploy(&guest("file-store")).await.status(), 201);
    host
}

async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client.request(method, url).body(body).send().await.unwrap()
}

impl Files for TestHost {
    fn base(&self) -> (&reqwest::Client, &str) {
        (&self.client, &self.url)
    }
}

/// Requests to file-store wherever it runs.
trait Files {
    fn base(&self) -> (&reqwest::Client, &str);

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let (client, url) = self.base();
        send(client, method, &format!("{url}{path}"), body).await
    }

    async fn put_file(&self, key: &str, body: impl Into<reqwest::Body>) -> Value {
        let res = self.call(Method::PUT, &format!("/files/{key}"), body).await;
        assert_eq!(res.status(), 201, "PUT {key}");
        json_body(res).await
    }

    async fn listing(&self, query: &str) -> Value {
        json_body(self.call(Method::GET, &format!("/files?{query}"), "").await).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_with_their_metadata() {
    let host = file_store().await;
    let put = host
        .client
        .put(format!("{}/files/docs/readme.md", host.url))
        .header("content-type", "text/markdown")
        .body("# Hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let meta: Value = put.json().await.unwrap();
    assert_eq!(meta["size"], 7);
    // The hex MD5 of the body, as R2 makes it.
    assert_eq!(meta["etag"], "b6291d7dfb1b275052cbdd0ba72b430d");

    let get = host.get("/files/docs/readme.md").await;
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "text/markdown");
    assert_eq!(get.headers()["content-length"], "7");
    assert_eq!(
        get.headers()["etag"],
        format!("\"{}\"", meta["etag"].as_str().unwrap())
    );
    assert_eq!(get.text().await.unwrap(), "# Hello");

    let head = host.call(Method::HEAD, "/files/docs/readme.md", "").await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "7");

    let listed = host.listing("prefix=docs/").await;
    assert_eq!(listed["objects"][0]["content_type"], "text/markdown");

    let deleted = host.call(Method::DELETE, "/files/docs/readme.md", "").await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(host.get("/files/docs/readme.md").await.status(), 404);
    assert_eq!(
        host.call(Method::HEAD, "/files/docs/readme.md", "")
            .await
            .status(),
        404
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_rolls_up_delimited_prefixes_and_pages_with_a_cursor() {
    let host = file_store().await;
    for key in ["a/1", "a/2", "a/b/3", "b/1", "c", "d", "e/1"] {
        host.put_file(key, key.to_owned()).await;
    }
    let top = host.listing("delimiter=/").await;
    assert_eq!(top["delimited_prefixes"], json!(["a/", "b/", "e/"]));
    let keys: Vec<&str> = top["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["c", "d"]);
    assert_eq!(top["truncated"], false);

    let inside = host.listing("prefix=a/&delimiter=/").await;
    assert_eq!(inside["delimited_prefixes"], json!(["a/b/"]));
    assert_eq!(inside["objects"].as_array().unwrap().len(), 2);

    // Two entries a page, prefixes and objects alike, until the end.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = host
            .listing(&format!("delimiter=/&limit=2&cursor={cursor}"))
            .await;
        for p in page["delimited_prefixes"].as_array().unwrap() {
            seen.push(p.as_str().unwrap().to_owned());
        }
        for o in page["objects"].as_array().unwrap() {
            seen.push(o["key"].as_str().unwrap().to_owned());
        }
        if page["truncated"] == false {
            break;
        }
        cursor = page["cursor"].as_str().unwrap().to_owned();
    }
    seen.sort();
    assert_eq!(seen, ["a/", "b/", "c", "d", "e/"]);

    let everything = host.listing("").await;
    assert_eq!(everything["objects"].as_array().unwrap().len(), 7);
    let bad = host
        .call(Method::GET, "/files?cursor=not-a-cursor", "")
        .await;
    assert_eq!(bad.status(), 400);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_answer_206_with_content_range() {
    let host = file_store().await;
    let bytes: Vec<u8> = (0..=255).collect();
    host.put_file("bytes.bin", bytes.clone()).await;
    let ranged = |range: &'static str| {
        host.client
            .get(format!("{}/files/bytes.bin", host.url))
            .header("range", range)
            .send()
    };
    let middle = ranged("bytes=10-19").await.unwrap();
    assert_eq!(middle.status(), 206);
    assert_eq!(middle.headers()["content-range"], "bytes 10-19/256");
    assert_eq!(middle.headers()["content-length"], "10");
    assert_eq!(middle.bytes().await.unwrap()[..], bytes[10..20]);

    let suffix = ranged("bytes=-6").await.unwrap();
    assert_eq!(suffix.headers()["content-range"], "bytes 250-255/256");
    assert_eq!(suffix.bytes().await.unwrap()[..], bytes[250..]);

    let open = ranged("bytes=200-").await.unwrap();
    assert_eq!(open.bytes().await.unwrap()[..], bytes[200..]);

    let past = ranged("bytes=300-").await.unwrap();
    assert_eq!(past.status(), 416);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_get_on_the_etag() {
    let host = file_store().await;
    let meta = host.put_file("page.html", "<p>v1</p>").await;
    let etag = format!("\"{}\"", meta["etag"].as_str().unwrap());
    let get = |if_none_match: String| {
        host.client
            .get(format!("{}/files/page.html", host.url))
            .header("if-none-match", if_none_match)
            .send()
    };
    let fresh = get(etag.clone()).await.unwrap();
    assert_eq!(fresh.status(), 304, "the client's copy is current");
    assert_eq!(fresh.headers()["etag"], etag.as_str());
    let stale = get("\"0123\"".into()).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.text().await.unwrap(), "<p>v1</p>");
    host.put_file("page.html", "<p>v2</p>").await;
    let changed = get(etag).await.unwrap();
    assert_eq!(changed.status(), 200, "a new write has a new etag");
    host.shutdown().await;
}

/// 64 MiB of bytes that are not all alike, the same every run.
fn big_file() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..(64 << 20) / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_multipart_upload_streams_back_through_a_128_mib_worker() {
    let host = TestHost::start_with(true).await;
    let file_store = guest("file-store");
    let config = file_store
        .config
        .replace("body_mb = 16", "body_mb = 16\nmemory_mb = 128");
    assert!(config.contains("memory_mb = 128"));
    let res = host.upload("file-store", file_store.wasm, &config).await;
    assert_eq!(res.status(), 201);

    let file = big_file();
    let created: Value = json_body(
        host.call(Method::POST, "/uploads/backups/big.bin", "")
            .await,
    )
    .await;
    let id = created["upload_id"].as_str().unwrap().to_owned();
    let mut parts = Vec::new();
    for (i, chunk) in file.chunks(8 << 20).enumerate() {
        let path = format!("/uploads/backups/big.bin?upload_id={id}&part={}", i + 1);
        let res = host.call(Method::PUT, &path, chunk.to_vec()).await;
        assert_eq!(res.status(), 200, "part {}", i + 1);
        parts.push(json_body::<Value>(res).await);
    }
    assert_eq!(parts.len(), 8);
    let complete = host
        .client
        .post(format!(
            "{}/uploads/backups/big.bin?upload_id={id}",
            host.url
        ))
        .json(&json!({ "parts": parts }))
        .send()
        .await
        .unwrap();
    let status = complete.status();
    let meta: Value = json_body(complete).await;
    assert_eq!(status, 201, "{meta}");
    assert_eq!(meta["size"], 64 << 20);
    assert!(meta["etag"].as_str().unwrap().ends_with("-8"), "{meta}");

    // The download is twice what the worker's memory could hold, had it
    // held it: the host streams it from storage.
    let download = host.get("/files/backups/big.bin").await;
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()["content-length"],
        (64u64 << 20).to_string()
    );
    let mut sha = Sha256::new();
    let mut chunks = download.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        sha.update(chunk.unwrap());
    }
    assert_eq!(sha.finalize()[..], Sha256::digest(&file)[..]);

    // The parts are gone: completing again finds no upload.
    let again = host
        .client
        .post(format!(
            "{}/uploads/backups/big.bin?upload_id={id}",
            host.url
        ))
        .json(&json!({ "parts": parts }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    let left = std::fs::read_dir(host.data.path().join("r2/file-store/uploads"))
        .map(|dir| {
            dir.flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "no staged part is left behind");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_clear_errors() {
    let host = TestHost::start_with(true).await;
    let file_store = guest("file-store");
    let small = file_store
        .config
        .replace("body_mb = 16", "body_mb = 16\nr2_object_mb = 1");
    assert_eq!(
        host.upload("file-store", file_store.wasm, &small)
            .await
            .status(),
        201
    );

    let too_big = host
        .call(Method::PUT, "/files/big", vec![7u8; 2 << 20])
        .await;
    assert_eq!(too_big.status(), 400);
    assert!(
        too_big
            .text()
            .await
            .unwrap()
            .contains("limits.r2_object_mb")
    );

    let long_key = "k".repeat(1025);
    let res = host
        .call(Method::PUT, &format!("/files/{long_key}"), "x")
        .await;
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("more than the 1024 allowed")
    );

    for id in ["nope", "../../../../etc", &"0".repeat(32)] {
        let res = host
            .call(
                Method::PUT,
                &format!("/uploads/x?upload_id={id}&part=1"),
                "x",
            )
            .await;
        assert_eq!(res.status(), 400, "upload id {id:?}");
        let text = res.text().await.unwrap();
        assert!(text.contains("upload"), "{text}");
    }

    // A part too small to be anything but the last.
    let created: Value = json_body(host.call(Method::POST, "/uploads/small", "").await).await;
    let id = created["upload_id"].as_str().unwrap();
    let mut parts = Vec::new();
    for n in 1..=2 {
        let path = format!("/uploads/small?upload_id={id}&part={n}");
        parts.push(json_body::<Value>(host.call(Method::PUT, &path, "tiny").await).await);
    }
    let res = host
        .client
        .post(format!("{}/uploads/small?upload_id={id}", host.url))
        .json(&json!({ "parts": parts }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("at least 5242880"));
    let res = host
        .call(
            Method::PUT,
            &format!("/uploads/small?upload_id={id}&part=10001"),
            "x",
        )
        .await;
    assert_eq!(res.status(), 400);

    // A guest naming a body it never handed off: not a handle to anything.
    let hostile = guest("hostile");
    let config = format!(
        "{}\n[[r2_buckets]]\nbinding = \"BUCKET\"\nbucket_name = \"file-store\"\n",
        hostile.config
    );
    assert_eq!(
        host.upload("hostile", hostile.wasm, &config).await.status(),
        201
    );
    host.call(Method::PUT, "/files/secret", "the secret").await;
    for token in ["0", "1", "2", "3", "x", "-1"] {
        for held in ["", "&key=secret"] {
            let res = host.get(&format!("/h/r2-forge?token={token}{held}")).await;
            assert_eq!(res.status(), 500, "token {token}{held}");
            let text = res.text().await.unwrap();
            assert!(!text.contains("the secret"), "{text}");
            assert!(text.contains("verge-r2-body"), "{text}");
        }
    }
    // Open bodies are files: a request holds a bounded number.
    let res = host.get("/h/r2-hoard?key=secret&n=32").await;
    assert_eq!(res.text().await.unwrap(), "holding 32");
    let res = host.get("/h/r2-hoard?key=secret&n=33").await;
    assert_eq!(res.status(), 429);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("32 object bodies are open already")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_can_live_at_a_url() {
    let host = TestHost::start_with(true).await;
    host.platform
        .r2()
        .locate("file-store", "memory:///files")
        .unwrap();
    assert_eq!(host.deploy(&guest("file-store")).await.status(), 201);
    host.put_file("kept/elsewhere.txt", "in memory").await;
    assert_eq!(
        host.get_text("/files/kept/elsewhere.txt").await,
        "in memory"
    );
    assert!(
        !host.data.path().join("r2/file-store").exists(),
        "the bodies are not under the data directory"
    );
    let err = host.platform.r2().locate("other", "nope://x").unwrap_err();
    assert!(format!("{err:#}").contains("other"), "{err:#}");
    host.shutdown().await;
}

impl Files for (reqwest::Client, String) {
    fn base(&self) -> (&reqwest::Client, &str) {
        (&self.0, &self.1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_uploads_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let file_store = guest("file-store");
    let first = VergeProcess::serve(data.path());
    let res = upload(
        &client,
        &first.admin_url,
        "file-store",
        file_store.wasm.clone(),
        &file_store.config,
    )
    .await;
    assert_eq!(res.status(), 201);
    let files = (client.clone(), first.url.clone());
    files.put_file("kept.txt", "still here").await;
    let created: Value = json_body(files.call(Method::POST, "/uploads/later.bin", "").await).await;
    let id = created["upload_id"].as_str().unwrap().to_owned();
    let part: Value = json_body(
        files
            .call(
                Method::PUT,
                &format!("/uploads/later.bin?upload_id={id}&part=1"),
                "one part",
            )
            .await,
    )
    .await;
    first.kill();

    let second = VergeProcess::serve(data.path());
    let files = (client.clone(), second.url.clone());
    let kept = files.call(Method::GET, "/files/kept.txt", "").await;
    assert_eq!(kept.text().await.unwrap(), "still here");
    let done = client
        .post(format!("{}/uploads/later.bin?upload_id={id}", second.url))
        .json(&json!({ "parts": [part] }))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 201, "the upload resumes after a restart");
    let later = files.call(Method::GET, "/files/later.bin", "").await;
    assert_eq!(later.text().await.unwrap(), "one part");
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verge_r2_commands_round_trip_through_the_admin_api() {
    let data = tempfile::tempdir().unwrap();
    // One bucket kept at a URL, as a deployment would point it at S3.
    let elsewhere = tempfile::tempdir().unwrap();
    let location = format!("media=file://{}", elsewhere.path().display());
    let host = VergeProcess::serve_with(data.path(), &["--r2-bucket", &location], &[]);
    let verge = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_verge"))
            .args(["r2"])
            .args(args)
            .args(["--host", &host.admin_url])
            .env("VERGE_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, out) = verge(&["bucket", "create", "media"]);
    assert!(ok, "{out}");
    let file = data.path().join("clip.bin");
    let contents: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &contents).unwrap();
    let (ok, out) = verge(&[
        "object",
        "put",
        "media/clips/one.bin",
        "--file",
        file.to_str().unwrap(),
        "--content-type",
        "video/mp4",
    ]);
    assert!(ok && out.contains("3000000 bytes"), "{out}");
    let (ok, out) = verge(&["bucket", "list"]);
    assert!(
        ok && out.contains("media") && out.contains("file://"),
        "{out}"
    );
    let stored = std::fs::read_dir(elsewhere.path().join("data"))
        .unwrap()
        .count();
    assert_eq!(stored, 1, "the body is where --r2-bucket put the bucket");
    let (ok, out) = verge(&["object", "list", "media", "--prefix", "clips/"]);
    assert!(ok && out.contains("clips/one.bin"), "{out}");
    let back = data.path().join("back.bin");
    let (ok, out) = verge(&[
        "object",
        "get",
        "media/clips/one.bin",
        "--file",
        back.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&back).unwrap(), contents);
    let (ok, out) = verge(&["object", "delete", "media/clips/one.bin"]);
    assert!(ok, "{out}");
    let (ok, out) = verge(&["object", "get", "media/clips/one.bin"]);
    assert!(!ok && out.contains("no object"), "{out}");
    let (ok, out) = verge(&["object", "list", "nothing-here"]);
    assert!(!ok && out.contains("no bucket named nothing-here"), "{out}");
    let (ok, out) = verge(&["object", "put", "no-key", "--file", file.to_str().unwrap()]);
    assert!(!ok && out.contains("bucket/key"), "{out}");
    host.kill();
}
