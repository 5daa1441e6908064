//! Hibernating WebSockets against a real host: real WebSocket clients
//! (tokio-tungstenite, the version axum uses), the chat-room example and
//! the durable-test guest's echoing ledger.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use verge_host::objects::{ObjectOptions, SocketLimits};

use support::{TestHost, guest};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(20);

async fn host_with(guests: &[&str], objects: ObjectOptions) -> TestHost {
    let host = TestHost::start_with_objects(objects).await;
    for name in guests {
        assert_eq!(
            host.deploy(&guest(name)).await.status(),
            201,
            "deploying {name}"
        );
    }
    host
}

async fn connect(host: &TestHost, path: &str) -> Client {
    let url = format!("{}{path}", host.url.replace("http://", "ws://"));
    let (client, response) = connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    assert_eq!(response.status(), 101);
    client
}

/// The next text message.
async fn next_text(client: &mut Client) -> String {
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next chat event of type `kind`, skipping others (joins, leaves).
async fn next_event(client: &mut Client, kind: &str) -> Value {
    loop {
        let event: Value = serde_json::from_str(&next_text(client).await).unwrap();
        if event["type"] == kind {
            return event;
        }
    }
}

/// The close frame the server sends next, skipping other messages.
async fn close_frame(client: &mut Client) -> Option<CloseFrame> {
    loop {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a close in time")
        {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn say(client: &mut Client, text: &str) {
    client.send(Message::text(text)).await.unwrap();
}

async fn chat(client: &mut Client, message: &str) {
    say(
        client,
        &serde_json::json!({ "message": message }).to_string(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_history_on_connect_and_broadcast_to_every_client() {
    let host = host_with(&["chat-room"], ObjectOptions::default()).await;
    let mut alice = connect(&host, "/chat/lobby?name=alice").await;
    assert_eq!(
        next_event(&mut alice, "history").await["data"],
        serde_json::json!([])
    );
    for i in 0..55 {
        chat(&mut alice, &format!("m{i}")).await;
    }
    for i in 0..55 {
        assert_eq!(
            next_event(&mut alice, "message").await["message"],
            format!("m{i}")
        );
    }

    // A newcomer gets the last 50, oldest first.
    let mut clients = Vec::new();
    for n in 0..20 {
        let mut client = connect(&host, &format!("/chat/lobby?name=guest{n}")).await;
        let history = next_event(&mut client, "history").await;
        let messages: Vec<&str> = history["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages.len(), 50);
        assert_eq!(messages[0], "m5");
        assert_eq!(messages[49], "m54");
        assert_eq!(history["data"][0]["sender"], "alice");
        clients.push(client);
    }

    chat(&mut clients[7], "hello everyone").await;
    for client in clients.iter_mut().chain([&mut alice]) {
        let message = next_event(client, "message").await;
        assert_eq!(message["message"], "hello everyone");
        assert_eq!(message["sender"], "guest7");
    }

    // Other rooms are other objects.
    let mut elsewhere = connect(&host, "/chat/elsewhere?name=bob").await;
    assert_eq!(
        next_event(&mut elsewhere, "history").await["data"],
        serde_json::json!([])
    );

    // A plain GET of a room is not an upgrade: 426.
    assert_eq!(host.get("/chat/lobby?name=x").await.status(), 426);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_handling_presence_and_tag_filtering() {
    let host = host_with(&["chat-room"], ObjectOptions::default()).await;
    let mut carol = connect(&host, "/chat/r?name=carol").await;
    let mut dave = connect(&host, "/chat/r?name=dave").await;
    let mut erin = connect(&host, "/chat/r?name=erin").await;
    let online = host.get_json("/chat/r/online").await;
    assert_eq!(
        online["online"],
        serde_json::json!(["carol", "dave", "erin"])
    );

    // A direct message goes only to the sockets tagged with the name.
    say(&mut carol, r#"{"message": "psst", "to": "dave"}"#).await;
    let direct = next_event(&mut dave, "message").await;
    assert_eq!(
        (direct["message"].as_str(), direct["direct"].as_bool()),
        (Some("psst"), Some(true))
    );
    chat(&mut carol, "to all").await;
    assert_eq!(next_event(&mut erin, "message").await["message"], "to all");

    // A clean close: the others hear the leave, the closer gets its close
    // answered.
    erin.close(Some(CloseFrame {
        code: 1000u16.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let leave = next_event(&mut carol, "leave").await;
    assert_eq!(leave["name"], "erin");
    assert_eq!(leave["online"], serde_json::json!(["carol", "dave"]));
    // A connection that just drops counts as a close too.
    drop(dave);
    let leave = next_event(&mut carol, "leave").await;
    assert_eq!(leave["name"], "dave");
    assert_eq!(
        host.get_json("/chat/r/online").await["online"],
        serde_json::json!(["carol"])
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_survive_hibernation_and_deploys_with_tags_and_attachments() {
    let host = host_with(&["durable-test"], ObjectOptions::default()).await;
    let mut red = connect(&host, "/ledger/h/ws?tags=red&note=first").await;
    let mut blue = connect(&host, "/ledger/h/ws?tags=blue,team&note=second").await;
    say(&mut red, "hello").await;
    assert_eq!(next_text(&mut red).await, "1:hello");

    host.platform.objects().evict_all().await;
    assert_eq!(host.platform.objects().active_count(), 0);
    let started = host.platform.objects().instances_started();
    // The next message wakes a new instance that sees the same sockets,
    // tags and attachments.
    say(&mut blue, "note").await;
    assert_eq!(next_text(&mut blue).await, "1:note=second");
    assert_eq!(host.platform.objects().instances_started(), started + 1);
    say(&mut blue, "tag:red:only red").await;
    assert_eq!(next_text(&mut red).await, "1:only red");
    say(&mut red, "count").await;
    assert_eq!(next_text(&mut red).await, "1:count=2");

    // A new version takes over the next event; the sockets stay connected.
    let mut next = guest("durable-test");
    next.config = next.config.replace("VERSION = \"1\"", "VERSION = \"2\"");
    assert_eq!(host.deploy(&next).await.status(), 201);
    say(&mut red, "all:after deploy").await;
    assert_eq!(next_text(&mut red).await, "2:after deploy");
    assert_eq!(next_text(&mut blue).await, "2:after deploy");
    say(&mut red, "note").await;
    assert_eq!(next_text(&mut red).await, "2:note=first");

    // What a failed event sent never leaves (the output gate).
    say(&mut red, "send-then-fail").await;
    say(&mut red, "after").await;
    assert_eq!(next_text(&mut red).await, "2:after");

    // An object may close a socket itself.
    say(&mut blue, "close").await;
    let frame = close_frame(&mut blue).await.unwrap();
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4001, "asked to")
    );
    say(&mut red, "count").await;
    assert_eq!(next_text(&mut red).await, "2:count=1");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_response_does_not_wake_the_object() {
    let host = host_with(&["chat-room"], ObjectOptions::default()).await;
    let mut alice = connect(&host, "/chat/quiet?name=alice").await;
    next_event(&mut alice, "join").await;
    host.platform.objects().evict_all().await;
    let started = host.platform.objects().instances_started();
    for _ in 0..5 {
        say(&mut alice, "ping").await;
        assert_eq!(next_text(&mut alice).await, "pong");
    }
    // Protocol pings are the host's to answer too.
    alice
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, alice.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));
    assert_eq!(host.platform.objects().instances_started(), started);
    assert_eq!(host.platform.objects().active_count(), 0);
    // Anything else does wake it.
    chat(&mut alice, "awake?").await;
    assert_eq!(next_event(&mut alice, "message").await["message"], "awake?");
    assert_eq!(host.platform.objects().instances_started(), started + 1);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_close_with_the_proper_codes() {
    let objects = ObjectOptions {
        sockets: SocketLimits {
            max_message_bytes: 64 * 1024,
            max_per_object: 3,
            ..SocketLimits::default()
        },
        ..ObjectOptions::default()
    };
    let host = host_with(&["durable-test"], objects).await;

    // A message over the limit: close 1009, and the object hears why.
    let mut big = connect(&host, "/ledger/l/ws").await;
    big.send(Message::text("x".repeat(64 * 1024 + 1)))
        .await
        .unwrap();
    let frame = close_frame(&mut big).await.unwrap();
    assert_eq!(u16::from(frame.code), 1009);
    let log = wait_for_log(&host, "l", |log| !log.is_empty()).await;
    assert!(
        log[0].as_str().unwrap().contains("over the limit"),
        "{log:?}"
    );

    // The fourth socket on one object is closed with 1013 at once.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&host, "/ledger/full/ws").await);
    }
    let mut fourth = connect(&host, "/ledger/full/ws").await;
    assert_eq!(
        u16::from(close_frame(&mut fourth).await.unwrap().code),
        1013
    );
    say(&mut held[0], "count").await;
    assert_eq!(next_text(&mut held[0]).await, "1:count=3");

    // The host keeps serving.
    let mut after = connect(&host, "/ledger/l/ws").await;
    say(&mut after, "still here").await;
    assert_eq!(next_text(&mut after).await, "1:still here");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_object_hears_clean_and_unclean_closes() {
    let host = host_with(&["durable-test"], ObjectOptions::default()).await;
    let mut clean = connect(&host, "/ledger/c/ws").await;
    clean
        .close(Some(CloseFrame {
            code: 4321u16.into(),
            reason: "done".into(),
        }))
        .await
        .unwrap();
    let log = wait_for_log(&host, "c", |log| !log.is_empty()).await;
    assert_eq!(
        log[0],
        serde_json::json!({ "code": 4321, "reason": "done", "clean": true })
    );
    let dropped = connect(&host, "/ledger/c/ws").await;
    drop(dropped);
    let log = wait_for_log(&host, "c", |log| log.len() == 2).await;
    assert_eq!(log[1]["code"], 1006);
    assert_eq!(log[1]["clean"], false);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sockets_on_one_object() {
    // Both ends live in this process: 2,000 descriptors and more.
    verge_host::cli::raise_open_files_limit();
    let host = host_with(&["durable-test"], ObjectOptions::default()).await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(connect(&host, "/ledger/crowd/ws").await);
    }
    say(&mut clients[0], "count").await;
    assert_eq!(next_text(&mut clients[0]).await, "1:count=1000");
    say(&mut clients[999], "all:to the crowd").await;
    for client in &mut clients {
        assert_eq!(next_text(client).await, "1:to the crowd");
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_not_buffered_for() {
    let host = host_with(&["durable-test"], ObjectOptions::default()).await;
    let _stalled = connect(&host, "/ledger/slow/ws").await;
    let mut reader = connect(&host, "/ledger/slow/ws").await;
    // 40 MiB of broadcasts: more than the stalled client's TCP buffers and
    // its 16 MiB backlog together.
    let chunk = "x".repeat(512 * 1024);
    for _ in 0..80 {
        say(&mut reader, &format!("all:{chunk}")).await;
        assert_eq!(next_text(&mut reader).await.len(), chunk.len() + 2);
    }
    say(&mut reader, "count").await;
    assert_eq!(next_text(&mut reader).await, "1:count=1");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_cannot_make_the_host_buffer_without_end() {
    // Copying 64 MiB of messages out of the guest is the guest's CPU time,
    // tens of milliseconds on a loaded machine; this test is about what
    // the host buffers, not about that limit.
    let host = TestHost::start_with_objects(ObjectOptions::default()).await;
    let ledger = guest("durable-test");
    let config = ledger
        .config
        .replace("[limits]\n", "[limits]\ncpu_ms = 5000\n");
    assert_ne!(config, ledger.config, "durable-test's limits changed");
    let deployed = host.upload("durable-test", ledger.wasm.clone(), &config);
    assert_eq!(deployed.await.status(), 201);
    // Never read: what the flood sends it is cut off by its backlog limit.
    let mut flooded = connect(&host, "/ledger/flood/ws").await;
    let mut asker = connect(&host, "/ledger/flood/ws").await;
    say(&mut flooded, "flood").await;
    // The event's sends stop at 64 MiB. The two sockets' messages may reach
    // the object in either order: ask until the flood has run.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        say(&mut asker, "flooded").await;
        let answer = next_text(&mut asker).await;
        if answer != "1:flooded=0" {
            assert_eq!(answer, "1:flooded=64");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flood never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_shutdown_closes_sockets_as_going_away() {
    let host = host_with(&["durable-test"], ObjectOptions::default()).await;
    let mut client = connect(&host, "/ledger/bye/ws").await;
    say(&mut client, "hi").await;
    assert_eq!(next_text(&mut client).await, "1:hi");
    let (_, frame) = tokio::join!(host.shutdown(), close_frame(&mut client));
    assert_eq!(u16::from(frame.unwrap().code), 1001);
}

/// The ledger's record of socket closes and errors, once `done` says it
/// is complete.
async fn wait_for_log(
    host: &TestHost,
    ledger: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = host.get_json(&format!("/ledger/{ledger}/socket-log")).await;
        let log = log["ok"].as_array().cloned().unwrap_or_default();
        if done(&log) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the socket log stayed {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
