//! Hostile guests get clear HTTP errors, and the host keeps serving.

mod support;

use support::{TestHost, guest};

async fn host_with_misbehave(dev: bool) -> TestHost {
    let host = TestHost::start_with(dev).await;
    assert_eq!(host.deploy(&guest("misbehave")).await.status(), 201);
    host
}

/// The host still answers, and with a fresh instance.
async fn assert_still_serving(host: &TestHost) {
    let res = host.get("/ok").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_gets_the_cpu_limit_error() {
    let host = host_with_misbehave(false).await;
    let res = host.get("/loop").await;
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert!(body.contains("CPU time limit of 50 ms exceeded"), "{body}");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_gets_the_memory_limit_error() {
    let host = host_with_misbehave(false).await;
    let res = host.get("/alloc").await;
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert!(body.contains("memory limit of 32 MiB exceeded"), "{body}");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_gets_a_500_with_an_error_id() {
    let host = host_with_misbehave(false).await;
    let res = host.get("/panic").await;
    assert_eq!(res.status(), 500);
    let error_id = res.headers()["x-verge-error-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = res.text().await.unwrap();
    assert!(body.contains(&format!("error id {error_id}")), "{body}");
    // Outside dev mode the trap's details stay in the log.
    assert!(!body.contains("unreachable"), "{body}");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_shows_the_trap_message() {
    let host = host_with_misbehave(true).await;
    let body = host.get_text("/panic").await;
    assert!(body.contains("the guest trapped"), "{body}");
    assert!(body.contains("unreachable"), "{body}");

    let res = host.get("/error").await;
    assert_eq!(res.status(), 500);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("deliberate handler error")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_body_gets_a_413() {
    let host = host_with_misbehave(false).await;
    let url = format!("{}/body-size", host.url);
    let just_fits = host
        .client
        .post(&url)
        .body(vec![7u8; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(just_fits.text().await.unwrap(), (1 << 20).to_string());

    let declared = host
        .client
        .post(&url)
        .body(vec![7u8; 8 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);

    // Chunked, so no content-length to refuse early: the limit applies while
    // reading. 8 MiB is more than the socket buffers hold, so the client is
    // still sending when the 413 goes out, and must still receive it.
    let chunks =
        futures::stream::iter((0..256).map(|_| Ok::<_, std::io::Error>(vec![1u8; 32 << 10])));
    let streamed = host
        .client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_guest_gets_the_wall_clock_error() {
    let host = host_with_misbehave(false).await;
    let res = host.get("/sleep").await;
    assert_eq!(res.status(), 504);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("wall-clock limit of 2000 ms exceeded")
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_spinning_guests_do_not_wedge_the_host() {
    let host = host_with_misbehave(false).await;
    let spinners: Vec<_> = (0..8).map(|_| host.get("/loop")).collect();
    let (results, ()) = tokio::join!(
        futures::future::join_all(spinners),
        assert_still_serving(&host)
    );
    assert!(results.iter().all(|r| r.status() == 503));
}
