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
