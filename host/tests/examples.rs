//! The bundled examples behave as documented, served by a real host.

mod support;

use serde_json::{Value, json};
use support::{TestHost, guest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_greets_echoes_and_reads_vars() {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("hello")).await.status(), 201);

    let res = host.get("/hello").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(res.headers().contains_key("x-verge-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "message": "Hello from Verge!", "path": "/hello" })
    );

    let echo: Value = host
        .client
        .put(format!("{}/hello/echo?a=1&b=two", host.url))
        .header("x-custom", "value")
        .body("payload bytes")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["query"], "a=1&b=two");
    assert_eq!(echo["headers"]["x-custom"], "value");
    assert_eq!(echo["body"], "payload bytes");

    let env = host.get_text("/hello/env").await;
    assert_eq!(env, "Hello from Verge!");
    assert_eq!(host.get("/hello/nope").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_serves_json_params_queries_and_statuses() {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("router")).await.status(), 201);

    let page: Value = host.get_json("/router/items?offset=1&limit=2").await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["teapot", "mug"]);
    assert_eq!(page["total"], 4);

    let bad_query = host.get("/router/items?limit=many").await;
    assert_eq!(bad_query.status(), 400);
    assert!(bad_query.text().await.unwrap().contains("query string"));

    let item: Value = host.get_json("/router/items/3").await;
    assert_eq!(item, json!({ "id": 3, "name": "mug", "price_cents": 650 }));
    let missing = host.get("/router/items/42").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"],
        "no item 42"
    );

    let created = host
        .client
        .post(format!("{}/router/items", host.url))
        .json(&json!({ "name": "saucer", "price_cents": 300 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/router/items/5");
    assert_eq!(created.json::<Value>().await.unwrap()["name"], "saucer");

    let malformed = host
        .client
        .post(format!("{}/router/items", host.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(malformed.text().await.unwrap().contains("line 1 column 2"));

    let empty_name = host
        .client
        .post(format!("{}/router/items", host.url))
        .json(&json!({ "name": " ", "price_cents": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(empty_name.status(), 422);

    let deleted = host
        .client
        .delete(format!("{}/router/items/1", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let wrong_method = host
        .client
        .patch(format!("{}/router/items/1", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "DELETE, GET");

    assert_eq!(host.get("/router/status/418").await.status(), 418);
    assert_eq!(host.get("/router/status/99").await.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_allows_100_a_minute_per_client() {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("rate-limiter")).await.status(), 201);
    let hit = |key: &'static str| {
        host.client
            .get(format!("{}/limited", host.url))
            .header("x-api-key", key)
            .send()
    };
    for expected_remaining in (0..100).rev() {
        let res = hit("alice").await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["x-ratelimit-remaining"],
            expected_remaining.to_string()
        );
    }
    let limited = hit("alice").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    let other = hit("bob").await.unwrap();
    assert_eq!(other.status(), 200, "each client has its own window");
    assert_eq!(other.headers()["x-ratelimit-remaining"], "99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_created_read_listed_and_expired() {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("sessions")).await.status(), 201);
    let create = |user: &str, ttl: i64| {
        host.client
            .post(format!("{}/sessions", host.url))
            .json(&json!({ "user_id": user, "data": { "cart": [1, 2] }, "ttl_secs": ttl }))
            .send()
    };
    let live: Value = create("u1", 3600).await.unwrap().json().await.unwrap();
    let id = live["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let stale: Value = create("u1", -1).await.unwrap().json().await.unwrap();

    let read = host.get_json(&format!("/sessions/{id}")).await;
    assert_eq!(read["user_id"], "u1");
    assert_eq!(read["data"], "{\"cart\":[1,2]}");
    let listed = host.get_json("/sessions?user=u1").await;
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        1,
        "the expired one is not active"
    );

    let gone = host
        .get(&format!("/sessions/{}", stale["id"].as_str().unwrap()))
        .await;
    assert_eq!(gone.status(), 404);
    let expired: Value = host
        .client
        .post(format!("{}/sessions/expire", host.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(expired["deleted"], 1);

    let bad = host
        .client
        .post(format!("{}/sessions", host.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_rpc_from_workers_and_between_objects() {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("counter-rpc")).await.status(), 201);
    let bump = |name: &str, by: i64| {
        host.client
            .post(format!("{}/counter/{name}?by={by}", host.url))
            .send()
    };
    assert_eq!(
        bump("a", 5).await.unwrap().json::<Value>().await.unwrap()["value"],
        5
    );
    assert_eq!(
        bump("a", -2).await.unwrap().json::<Value>().await.unwrap()["value"],
        3
    );
    bump("b", 10).await.unwrap();
    assert_eq!(host.get_json("/counter/a").await["value"], 3);

    let total = host.get_json("/counters?names=a,b,c").await;
    assert_eq!(total["total"], 13);
    assert_eq!(total["counters"], json!([["a", 3], ["b", 10], ["c", 0]]));
    assert_eq!(total["computed"], 1);
    assert_eq!(host.get_json("/counters?names=b").await["computed"], 2);

    let bad = host
        .client
        .post(format!("{}/counter/a?by=lots", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
