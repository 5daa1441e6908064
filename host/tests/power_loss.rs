//! Power loss: acknowledged writes survive a crash that takes the page
//! cache with it.
//!
//! SIGKILL alone cannot tell a missing fsync from a correct one: the kernel
//! still writes out what the process wrote. So the host's data directory
//! lives on a FUSE filesystem that forgets every write not yet fsynced
//! (`forgetful-fs`, the approach of LazyFS). Each trial runs the real
//! `verge` binary under load — inventory reserves, chat messages over
//! WebSockets, named alarms — kills it, drops the unsynced writes, restarts
//! it, and checks that every acknowledged write is there and every
//! acknowledged alarm still fires.
//!
//! `VERGE_POWER_LOSS_TRIALS` sets the number of trials (10 by default;
//! `just crash-test` runs 100). A second test turns fsync off with the
//! debug switch `VERGE_UNSAFE_NO_FSYNC=1` and checks that the same checks
//! then report lost writes: the test can fail.

mod support;

use std::time::{Duration, Instant};

use forgetful_fs::ForgetfulFs;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{VergeProcess, guest};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// How long each trial writes before the power goes.
const LOAD: Duration = Duration::from_millis(1200);
/// Items stocked at the start; reserves draw them down.
const STOCK: u64 = 1_000_000;
/// Each trial's chat room holds fewer messages than the history a joining
/// socket gets (50), so every message can be checked.
const MESSAGES_PER_ROOM: usize = 40;
const WAIT: Duration = Duration::from_secs(30);

/// What the host acknowledged, across every trial.
#[derive(Default)]
struct Acknowledged {
    reserves: u64,
    /// (room, message)
    messages: Vec<(String, String)>,
    /// (user, reminder id)
    reminders: Vec<(String, i64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_and_alarms_survive_power_loss() {
    let trials: usize = std::env::var("VERGE_POWER_LOSS_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let Some(lost) = power_cuts(trials, &[]).await else {
        return;
    };
    assert!(
        lost.is_empty(),
        "acknowledged writes lost after a power cut:\n{}",
        lost.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fsync_the_same_checks_find_lost_writes() {
    let Some(lost) = power_cuts(1, &[("VERGE_UNSAFE_NO_FSYNC", "1")]).await else {
        return;
    };
    assert!(
        !lost.is_empty(),
        "with fsync off, a power cut must lose acknowledged writes, and the checks must see it"
    );
}

/// Runs `trials` power cuts on a host started with `env`; returns what was
/// acknowledged and then missing, or `None` when FUSE is not available.
async fn power_cuts(trials: usize, env: &[(&str, &str)]) -> Option<Vec<String>> {
    if let Err(why) = forgetful_fs::available() {
        eprintln!(
            "SKIPPED: the power-loss test needs FUSE: {why} (Debian's fuse3; .ci/run installs it)"
        );
        return None;
    }
    let backing = tempfile::tempdir().unwrap();
    let mountpoint = tempfile::tempdir().unwrap();
    let fs = ForgetfulFs::mount(backing.path(), mountpoint.path()).unwrap();
    let data = mountpoint.path().join("data");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut acknowledged = Acknowledged::default();
    let mut forgot_something = false;
    let mut lost = Vec::new();

    for trial in 0..trials {
        let host = VergeProcess::serve_with_env(&data, env);
        if trial == 0 {
            for example in ["inventory-counter", "chat-room", "reminders"] {
                let deployed = host.deploy(&reqwest::Client::new(), &guest(example)).await;
                assert_eq!(deployed, 201, "deploying {example}");
            }
            let url = format!("{}/inventory/power/restock?quantity={STOCK}", host.url);
            let restocked = client.post(url).send().await.unwrap();
            assert_eq!(restocked.status(), 200);
        }
        lost.extend(missing(&client, &host.url, &acknowledged, trial).await);
        load(&client, &host.url, trial, &mut acknowledged).await;
        forgot_something |= fs.unsynced_bytes() > 0;
        host.kill();
        fs.drop_unsynced();
    }
    let host = VergeProcess::serve_with_env(&data, env);
    lost.extend(missing(&client, &host.url, &acknowledged, trials).await);
    eprintln!(
        "power loss: {trials} trials, {} reserves, {} messages, {} reminders acknowledged; {} lost",
        acknowledged.reserves,
        acknowledged.messages.len(),
        acknowledged.reminders.len(),
        lost.len()
    );
    assert!(
        forgot_something,
        "the filesystem never held unsynced data: the power cuts tested nothing"
    );
    Some(lost)
}

/// Writes for [`LOAD`]: reserves from four clients, chat messages from
/// one socket (acknowledged when the room broadcasts them back), and
/// reminders due shortly after the cut.
async fn load(client: &reqwest::Client, url: &str, trial: usize, acknowledged: &mut Acknowledged) {
    let deadline = Instant::now() + LOAD;
    let reservers = (0..4).map(|_| {
        let (client, url) = (client.clone(), url.to_owned());
        tokio::spawn(async move {
            let mut reserved = 0;
            while Instant::now() < deadline {
                let sent = client
                    .post(format!("{url}/inventory/power/reserve"))
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status() == 200) {
                    reserved += 1;
                }
            }
            reserved
        })
    });
    let reservers: Vec<_> = reservers.collect();
    let room = format!("power-{trial}");
    let chat = chat(url, &room, deadline);
    let user = format!("power-{trial}");
    let reminders = async {
        let mut ids = Vec::new();
        while Instant::now() < deadline {
            let created = client
                .post(format!("{url}/reminders/{user}"))
                .json(&json!({ "message": "after the cut", "in_ms": 1500 }))
                .send()
                .await;
            if let Ok(created) = created
                && created.status() == 200
                && let Ok(answer) = created.json::<Value>().await
                && let Some(id) = answer["id"].as_i64()
            {
                ids.push(id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ids
    };
    let (messages, ids) = tokio::join!(chat, reminders);
    for reserver in reservers {
        acknowledged.reserves += reserver.await.unwrap();
    }
    acknowledged
        .messages
        .extend(messages.into_iter().map(|m| (room.clone(), m)));
    acknowledged
        .reminders
        .extend(ids.into_iter().map(|id| (user.clone(), id)));
}

/// Sends messages to `room` one at a time until `deadline`; returns those
/// the room broadcast back (written, and committed before it sent them).
async fn chat(url: &str, room: &str, deadline: Instant) -> Vec<String> {
    let ws = url.replace("http://", "ws://");
    let Ok((mut socket, _)) = connect_async(format!("{ws}/chat/{room}?name=writer")).await else {
        return Vec::new();
    };
    let mut acknowledged = Vec::new();
    while Instant::now() < deadline && acknowledged.len() < MESSAGES_PER_ROOM {
        let message = format!("{room}-{}", acknowledged.len());
        let text = json!({ "message": message }).to_string();
        if socket.send(Message::Text(text.into())).await.is_err() {
            break;
        }
        match until_message(&mut socket, &message, deadline + WAIT).await {
            true => acknowledged.push(message),
            false => break,
        }
    }
    acknowledged
}

/// Reads until the room broadcasts `message`; false if the socket ends.
async fn until_message<S>(socket: &mut S, message: &str, deadline: Instant) -> bool
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline.into(), socket.next()).await {
        if let Message::Text(text) = frame
            && let Ok(value) = serde_json::from_str::<Value>(&text)
            && value["type"] == "message"
            && value["message"] == message
        {
            return true;
        }
    }
    false
}

/// What was acknowledged and is not there after `trials` power cuts.
async fn missing(
    client: &reqwest::Client,
    url: &str,
    acknowledged: &Acknowledged,
    trials: usize,
) -> Vec<String> {
    let mut lost = Vec::new();
    let Some(stock) = json(client, &format!("{url}/inventory/power"))
        .await
        .and_then(|v| v["stock"].as_u64())
    else {
        return vec![format!("after {trials} cuts the inventory cannot be read")];
    };
    // Reserves that ran without their answer arriving may be there too.
    if stock > STOCK.saturating_sub(acknowledged.reserves) {
        lost.push(format!(
            "after {trials} cuts the stock is {stock}, but {} reserves of {STOCK} were acknowledged",
            acknowledged.reserves
        ));
    }
    let mut rooms: Vec<&String> = acknowledged.messages.iter().map(|(room, _)| room).collect();
    rooms.dedup();
    for room in rooms {
        let history = history(url, room).await;
        for (_, message) in acknowledged.messages.iter().filter(|(r, _)| r == room) {
            if !history.contains(message) {
                lost.push(format!("chat message {message} in room {room}"));
            }
        }
    }
    let mut users: Vec<&String> = acknowledged.reminders.iter().map(|(u, _)| u).collect();
    users.dedup();
    for user in users {
        let wanted: Vec<i64> = acknowledged
            .reminders
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, id)| *id)
            .collect();
        let delivered = delivered(client, url, user, &wanted).await;
        lost.extend(
            wanted
                .iter()
                .filter(|id| !delivered.contains(id))
                .map(|id| format!("reminder {id} of {user} never fired")),
        );
    }
    lost
}

/// A GET's JSON answer, if there is one (a damaged database answers 500).
async fn json(client: &reqwest::Client, url: &str) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// The messages a socket joining `room` gets as its history (none if it
/// cannot join).
async fn history(url: &str, room: &str) -> Vec<String> {
    let ws = url.replace("http://", "ws://");
    let Ok((mut socket, _)) = connect_async(format!("{ws}/chat/{room}?name=checker")).await else {
        return Vec::new();
    };
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(WAIT, socket.next()).await {
        if let Message::Text(text) = frame
            && let Ok(value) = serde_json::from_str::<Value>(&text)
            && value["type"] == "history"
        {
            return value["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["message"].as_str().map(str::to_owned))
                .collect();
        }
    }
    Vec::new()
}

/// The ids of `user`'s delivered reminders, once all of `wanted` are (or
/// after [`WAIT`]): every acknowledged alarm must fire, a restart between.
async fn delivered(client: &reqwest::Client, url: &str, user: &str, wanted: &[i64]) -> Vec<i64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let listed = json(client, &format!("{url}/reminders/{user}/delivered")).await;
        let ids: Vec<i64> = listed
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_i64())
            .collect();
        if wanted.iter().all(|id| ids.contains(id)) || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
