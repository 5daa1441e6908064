//! D1 in a cluster: three real `verge serve --cluster` processes sharing a
//! throwaway PostgreSQL server. One database, owned by one host, seen
//! the same from every host: through the worker, the admin API and the
//! real `verge d1` CLI; and nothing acknowledged is lost when its owner
//! is killed.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cluster::{TestCluster, until_served};
use support::{Guest, TOKEN, VergeProcess, guest};

/// Runs `verge d1 ARGS` in `dir` against `host`'s admin API; its stdout,
/// or a panic with its stderr.
fn d1(dir: &Path, host: &VergeProcess, args: &[&str]) -> String {
    support::verge_cli(dir, &host.admin_url, &[&["d1"][..], args].concat())
}

/// Deploys the notes example through host 0, creates its database and
/// applies its migrations there, and waits until every host serves it.
async fn notes_cluster() -> (TestCluster, Guest) {
    let cluster = TestCluster::start(3);
    let notes = guest("d1-notes");
    assert_eq!(cluster.host(0).deploy(&cluster.client, &notes).await, 201);
    assert!(d1(&notes.dir, cluster.host(0), &["create", "notes"]).contains("created"));
    let applied = d1(&notes.dir, cluster.host(0), &["migrations", "apply", "DB"]);
    assert!(
        applied.contains("applied 0001_create_notes.sql")
            && applied.contains("applied 0002_add_tags.sql"),
        "{applied}"
    );
    for (_, host) in cluster.live() {
        until_served(&cluster.client, &format!("{}/notes", host.url), "notes").await;
    }
    (cluster, notes)
}

/// Creates a note through `url`; its id.
async fn create_note(client: &reqwest::Client, url: &str, title: &str, tags: &[&str]) -> i64 {
    let response = client
        .post(format!("{url}/notes"))
        .json(&json!({ "title": title, "body": format!("body of {title}"), "tags": tags }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 201, "creating {title} through {url}: {body}");
    let note: Value = serde_json::from_str(&body).unwrap();
    note["id"].as_i64().unwrap()
}

/// The titles of the notes `url` lists (with `?tag=`, those tagged so).
async fn titles(client: &reqwest::Client, url: &str, tag: Option<&str>) -> Vec<String> {
    let url = match tag {
        Some(tag) => format!("{url}/notes?tag={tag}"),
        None => format!("{url}/notes"),
    };
    let response = client.get(&url).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let mut titles: Vec<String> = body["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|note| note["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    titles
}

#[tokio::test(flavor = "multi_thread")]
async fn one_database_for_the_whole_cluster_through_workers_admin_api_and_cli() {
    let (cluster, notes) = notes_cluster().await;
    let client = &cluster.client;

    // The migrations applied once, for the whole cluster: another host
    // finds nothing left to apply.
    let again = d1(&notes.dir, cluster.host(2), &["migrations", "apply", "DB"]);
    assert!(again.contains("no migrations to apply"), "{again}");

    // Notes written through hosts 1 and 2...
    let (one, two) = (&cluster.host(1).url, &cluster.host(2).url);
    create_note(client, one, "Groceries", &["home", "errands"]).await;
    create_note(client, one, "Taxes", &["home"]).await;
    create_note(client, two, "Standup", &["work"]).await;
    let last = create_note(client, two, "Paint the fence", &["home"]).await;

    // ...are all there through host 0, filtered by tag too.
    let zero = &cluster.host(0).url;
    assert_eq!(
        titles(client, zero, None).await,
        ["Groceries", "Paint the fence", "Standup", "Taxes"]
    );
    assert_eq!(
        titles(client, zero, Some("home")).await,
        ["Groceries", "Paint the fence", "Taxes"]
    );
    assert_eq!(titles(client, zero, Some("work")).await, ["Standup"]);
    let note: Value = support::get_json(client, &format!("{zero}/notes/{last}")).await;
    assert_eq!(note["title"], "Paint the fence");

    // Exactly one host owns the database (host 0 created it), and the
    // CLI against another one's admin API sees every row, and writes.
    let owner = cluster.owner().await;
    assert_eq!(owner, 0, "the host that created the database owns it");
    let other = cluster.host(1);
    let executed = d1(
        &notes.dir,
        other,
        &[
            "execute",
            "DB",
            "--json",
            "--command",
            "SELECT title FROM notes ORDER BY title",
        ],
    );
    let executed: Value = serde_json::from_str(&executed).unwrap();
    assert_eq!(
        executed["rows"],
        json!([["Groceries"], ["Paint the fence"], ["Standup"], ["Taxes"]]),
        "{executed:#}"
    );
    d1(
        &notes.dir,
        other,
        &[
            "execute",
            "DB",
            "--command",
            "INSERT INTO notes (title, body) VALUES ('From the CLI', 'via host 1')",
        ],
    );
    assert!(
        titles(client, two, None)
            .await
            .contains(&"From the CLI".to_owned())
    );

    // Typed errors come back typed through a forwarding host: a
    // constraint is the client's mistake (400), and a database that
    // does not exist is 404, not created by looking.
    let refused = client
        .post(format!("{one}/notes"))
        .json(&json!({ "title": "", "tags": ["orphan"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "{}", refused.text().await.unwrap());
    assert!(titles(client, one, Some("orphan")).await.is_empty());
    let missing = client
        .get(format!("{}/v1/d1/no-such-db/export", other.admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "{}", missing.text().await.unwrap());
    let bad = client
        .post(format!(
            "{}/v1/d1/{}/execute",
            other.admin_url, "Bad%20Name"
        ))
        .bearer_auth(TOKEN)
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "{}", bad.text().await.unwrap());

    // Export through host 2 is the whole database, and the list names
    // it once, from any host.
    let dump = client
        .get(format!("{}/v1/d1/notes/export", cluster.host(2).admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        dump.contains("'Paint the fence'") && dump.contains("'From the CLI'"),
        "{dump}"
    );
    let listed = d1(&notes.dir, cluster.host(2), &["list"]);
    assert_eq!(listed.matches("notes").count(), 1, "{listed}");
    let status = cluster.cluster_status(1).await;
    let owned: i64 = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|host| host["objects"].as_i64().unwrap())
        .sum();
    assert_eq!(owned, 1, "one database, one owner: {status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_notes_survive_the_owner_being_killed() {
    let (mut cluster, _notes) = notes_cluster().await;
    let owner = cluster.owner().await;
    let survivors: Vec<String> = cluster
        .live()
        .filter(|(i, _)| *i != owner)
        .map(|(_, host)| host.url.clone())
        .collect();

    // Writers through the survivors (forwarded to the owner, then to
    // whichever survivor takes the database over), recording what was
    // acknowledged and when.
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (urls, acked, stop, client) = (
                survivors.clone(),
                acked.clone(),
                stop.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let title = format!("note {w}-{n}");
                    let url = format!("{}/notes", urls[n % urls.len()]);
                    n += 1;
                    let sent = client
                        .post(&url)
                        .json(&json!({ "title": title, "tags": ["load"] }))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 201 => {
                            acked.lock().unwrap().push((title, Instant::now()));
                        }
                        // Not acknowledged: it may or may not have landed.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = acked.lock().unwrap().len();
    assert!(before_kill > 0, "nothing was acknowledged before the kill");
    let killed_at = Instant::now();
    cluster.hosts[owner].take().unwrap().kill();
    // Until writes are acknowledged again, and a little longer.
    let recovered = loop {
        let first_after = acked
            .lock()
            .unwrap()
            .iter()
            .find(|(_, at)| *at > killed_at)
            .map(|(_, at)| *at - killed_at);
        if let Some(recovered) = first_after {
            break recovered;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "no write was acknowledged in 15 s after the owner was killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    println!(
        "{} notes acknowledged ({before_kill} before the kill); writes acknowledged again {recovered:?} after it",
        acked.len()
    );
    assert!(
        recovered < Duration::from_secs(10),
        "writes took {recovered:?} to come back"
    );

    // Every acknowledged note is there, through each survivor.
    for url in &survivors {
        let listed = titles(&cluster.client, url, Some("load")).await;
        let missing: Vec<&String> = acked.iter().filter(|t| !listed.contains(t)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged notes are missing through {url}: {missing:?}",
            missing.len(),
            acked.len()
        );
    }
    // And the database takes writes again, through either survivor.
    for url in &survivors {
        create_note(
            &cluster.client,
            url,
            &format!("after via {url}"),
            &["after"],
        )
        .await;
    }
    assert_eq!(
        titles(&cluster.client, &survivors[0], Some("after"))
            .await
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_owner_answers_nothing_from_its_stale_copy() {
    let (cluster, _notes) = notes_cluster().await;
    let client = &cluster.client;
    let owner = cluster.owner().await;
    let other = (owner + 1) % 3;
    let (owner_url, other_url) = (
        cluster.host(owner).url.clone(),
        cluster.host(other).url.clone(),
    );
    create_note(client, &other_url, "before the pause", &[]).await;
    assert_eq!(titles(client, &owner_url, None).await, ["before the pause"]);

    let pid = cluster.host(owner).pid() as i32;
    // SAFETY: signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // A write through another host: it waits for the paused owner's lease
    // to lapse, and lands on whichever host takes the database over.
    let paused_at = Instant::now();
    let landed = loop {
        let response = client
            .post(format!("{other_url}/notes"))
            .json(&json!({ "title": "while paused", "tags": [] }))
            .send()
            .await;
        if let Ok(response) = response
            && response.status() == 201
        {
            break paused_at.elapsed();
        }
        assert!(
            paused_at.elapsed() < Duration::from_secs(20),
            "no write landed while the owner was paused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("a write landed {landed:?} after the owner was paused");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };

    // The resumed host lost its lease while paused: until it renews it,
    // it answers with errors; never from its copy, which lacks the write.
    let resumed_at = Instant::now();
    let mut refused = 0;
    loop {
        let response = client
            .get(format!("{owner_url}/notes"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            let mut listed: Vec<&str> = body["notes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|note| note["title"].as_str().unwrap())
                .collect();
            listed.sort();
            assert_eq!(
                listed,
                ["before the pause", "while paused"],
                "the resumed host answered from its stale copy"
            );
            break;
        }
        refused += 1;
        assert!(
            resumed_at.elapsed() < Duration::from_secs(10),
            "the resumed host never answered again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the resumed host answered again after {:?} ({refused} refusals first)",
        resumed_at.elapsed()
    );
    create_note(client, &owner_url, "after the pause", &[]).await;
    for (_, host) in cluster.live() {
        assert_eq!(
            titles(client, &host.url, None).await,
            ["after the pause", "before the pause", "while paused"],
            "through {}",
            host.url
        );
    }
    assert_ne!(
        cluster.owner().await,
        owner,
        "the paused host still owns the database"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_history_is_compacted_and_a_new_owner_rebuilds_it_whole() {
    let (mut cluster, _notes) = notes_cluster().await;
    let owner = cluster.owner().await;
    let url = cluster.host(owner).url.clone();
    // Past the 1000 changes after which the owner writes a snapshot and
    // drops the changes it covers; concurrent, so reads and checkpoints
    // meet.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url) = (cluster.client.clone(), url.clone());
            tokio::spawn(async move {
                for n in 0..275 {
                    create_note(&client, &url, &format!("note {w}-{n}"), &["bulk"]).await;
                    if n % 50 == 0 {
                        titles(&client, &url, Some("none")).await;
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let history = cluster.db.psql(
        "SELECT (SELECT count(*) FROM object_snapshots WHERE namespace = 'd1') || ' ' || \
                (SELECT count(*) FROM object_changes WHERE namespace = 'd1')",
    );
    let counts: Vec<u64> = history
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    println!(
        "history after 1100 writes: {} snapshot chunks, {} changes",
        counts[0], counts[1]
    );
    assert!(counts[0] >= 1, "no snapshot was written: {history}");
    assert!(
        counts[1] < 1000,
        "the snapshot dropped no changes: {history}"
    );

    // A new owner rebuilds from the snapshot and the changes after it.
    cluster.hosts[owner].take().unwrap().kill();
    let survivor = cluster.live().next().unwrap().1.url.clone();
    let started = Instant::now();
    let count = loop {
        let response = cluster
            .client
            .get(format!("{survivor}/notes?tag=bulk"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            break body["notes"].as_array().unwrap().len();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the survivor never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(count, 1100, "notes lost in the rebuild");
}
