//! Outbound fetch goes over real HTTP, only where `allowed_outbound_hosts`
//! allows, within the subrequest and body limits.

mod support;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use serde_json::Value;
use support::{TestHost, guest};

/// A local upstream server for guests to fetch from.
async fn upstream() -> String {
    let app = Router::new()
        .route(
            "/data",
            get(|| async { axum::Json(serde_json::json!({ "from": "upstream" })) }),
        )
        .route("/hop", get(|| async { Redirect::temporary("/data") }))
        .route(
            "/escape",
            get(|| async { Redirect::temporary("http://localhost.invalid/data") }),
        )
        .route("/big", get(|| async { vec![b'x'; (1 << 20) + 1] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// fetch-proxy, allowed to reach `upstream` (a loopback address, which
/// only a rule naming it opens) and loopback port 9.
async fn proxy_for(host: &TestHost, upstream: &str) {
    let proxy = guest("fetch-proxy");
    let config = format!(
        "name = \"fetch-proxy\"\nroutes = [\"/proxy\"]\n\
         allowed_outbound_hosts = [\"{upstream}\", \"http://127.0.0.1:9\"]\n\
         [limits]\nsubrequests = 5\n"
    );
    let deployed = host.upload("fetch-proxy", proxy.wasm, &config).await;
    assert_eq!(deployed.status(), 201, "{}", deployed.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_are_fetched_and_others_denied() {
    let upstream = upstream().await;
    let host = TestHost::start().await;
    proxy_for(&host, &upstream).await;

    let proxied = host.get(&format!("/proxy?url={upstream}/data")).await;
    assert_eq!(proxied.status(), 200);
    assert_eq!(
        proxied.headers()["x-proxied-url"],
        format!("{upstream}/data")
    );
    assert_eq!(proxied.json::<Value>().await.unwrap()["from"], "upstream");

    let followed = host.get(&format!("/proxy?url={upstream}/hop")).await;
    assert_eq!(
        followed.json::<Value>().await.unwrap()["from"],
        "upstream",
        "redirects inside the allow-list are followed"
    );

    let denied = host.get("/proxy?url=http://example.org/").await;
    assert_eq!(denied.status(), 403);
    let error = denied.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        error,
        "`http://example.org:80` is not in allowed_outbound_hosts"
    );

    let escaped = host.get(&format!("/proxy?url={upstream}/escape")).await;
    assert_eq!(
        escaped.status(),
        403,
        "a redirect cannot leave the allow-list"
    );

    let unreachable = host.get("/proxy?url=http://127.0.0.1:9/").await;
    assert_eq!(unreachable.status(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_allow_list_denies_everything() {
    let upstream = upstream().await;
    let host = TestHost::start().await;
    let proxy = guest("fetch-proxy");
    let locked_down = "name = \"fetch-proxy\"\nroutes = [\"/proxy\"]\n";
    assert_eq!(
        host.upload("fetch-proxy", proxy.wasm, locked_down)
            .await
            .status(),
        201
    );
    let denied = host.get(&format!("/proxy?url={upstream}/data")).await;
    assert_eq!(denied.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subrequest_and_response_size_limits_apply() {
    let upstream = upstream().await;
    let host = TestHost::start().await;
    host.deploy(&guest("misbehave")).await;

    let body = host
        .get_text(&format!("/fetch?times=5&url={upstream}/data"))
        .await;
    let outcomes: Vec<&str> = body.lines().collect();
    assert_eq!(
        outcomes,
        [
            "200",
            "200",
            "200",
            "fetch failed: too many subrequests (limit 3)",
            "fetch failed: too many subrequests (limit 3)"
        ]
    );

    let big = host.get_text(&format!("/fetch?url={upstream}/big")).await;
    assert_eq!(
        big,
        format!("fetch failed: response body larger than {} bytes", 1 << 20)
    );
}
