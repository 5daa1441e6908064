//! The Cluster section: three `verge serve --cluster` hosts and a
//! throwaway PostgreSQL on this machine, measured in the same run as the
//! single host of the Durable Objects section.
//!
//! - the inventory counter's reserve on one object, through its owner and
//!   through a host that forwards to it;
//! - a new object per request (each one claimed in Postgres);
//! - failover: the owner of an object is killed with SIGKILL, and the
//!   time until a reserve through another host succeeds again, over many
//!   kills.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use throwaway_postgres::Postgres;

use super::{Plan, Setup, load};
use crate::loadgen::{LoadResult, Target};
use crate::peers;
use crate::process::{Service, wait_for_200};
use crate::report::{Chart, Section, Table, format_value};
use crate::samples::Samples;

const SECRET: &str = "verge-bench-cluster-secret";
const HOSTS: usize = 3;
/// The default lease, passed explicitly so the report says what it ran.
const LEASE_SECS: &str = "3";

/// What the section reports.
pub(super) struct ClusterFigures {
    /// One object's reserve through its owner, by connections.
    through_owner: Vec<(u32, LoadResult)>,
    /// The same through a host that does not own it.
    through_peer: Vec<(u32, LoadResult)>,
    /// The rate limiter with a new key (a new object) per request.
    new_objects: LoadResult,
    /// From SIGKILL of an object's owner to its next successful reserve
    /// through another host.
    failover: Samples,
}

/// One host of the cluster under test.
struct Host {
    service: Service,
    base: String,
    admin: String,
    data: tempfile::TempDir,
}

fn start_host(setup: &Setup, database: &str, data: tempfile::TempDir) -> Result<Host> {
    let (service, listen, admin) = peers::verge_empty_with(
        &setup.bins,
        data.path(),
        &[
            "--cluster",
            database,
            "--cluster-secret",
            SECRET,
            "--cluster-listen",
            "127.0.0.1:0",
            "--cluster-lease-secs",
            LEASE_SECS,
        ],
    )?;
    Ok(Host {
        service,
        base: format!("http://{listen}"),
        admin,
        data,
    })
}

pub(super) fn measure(setup: &Setup, plan: &Plan) -> Result<Option<ClusterFigures>> {
    let Some(generator) = &setup.peers.load else {
        return Ok(None);
    };
    let database = Postgres::start();
    let mut hosts = (0..HOSTS)
        .map(|_| start_host(setup, database.url(), tempfile::tempdir()?))
        .collect::<Result<Vec<_>>>()?;
    setup.deploy(
        &hosts[0].admin,
        &[
            ("inventory-counter", "inventory_counter"),
            ("rate-limiter", "rate_limiter"),
        ],
    )?;
    for host in &hosts {
        wait_for_200(
            host.base.trim_start_matches("http://"),
            "/inventory/warm",
            Duration::from_secs(30),
        )
        .context("a host never served the inventory counter")?;
    }

    // The worker that first reaches an object runs on host 0, so host 0
    // takes it: host 0 is the owner, host 1 forwards.
    peers::post(&format!(
        "{}/inventory/bench/restock?quantity=1000000000",
        hosts[0].base
    ))?;
    let reserve = |host: &Host| Target {
        post: true,
        ..Target::get(&host.base, "/inventory/bench/reserve")
    };
    let mut through_owner = Vec::new();
    let mut through_peer = Vec::new();
    for connections in super::CONNECTIONS {
        through_owner.push((
            connections,
            load(
                generator,
                plan,
                "cluster owner",
                &reserve(&hosts[0]),
                connections,
            )?,
        ));
        through_peer.push((
            connections,
            load(
                generator,
                plan,
                "cluster peer",
                &reserve(&hosts[1]),
                connections,
            )?,
        ));
    }
    let new_objects_target = Target {
        random_suffix: true,
        ..Target::get(&hosts[1].base, "/limited/")
    };
    let new_objects = load(generator, plan, "cluster", &new_objects_target, 64)?;

    let mut failover = Samples::default();
    for kill in 0..plan.kills {
        let victim = kill % HOSTS;
        let sku = format!("failover-{kill}");
        // Reached first through the victim, so the victim owns it.
        peers::post(&format!(
            "{}/inventory/{sku}/restock?quantity=1000",
            hosts[victim].base
        ))?;
        let host = hosts.remove(victim);
        drop(host.service);
        let killed = Instant::now();
        let url = format!("{}/inventory/{sku}/reserve", hosts[0].base);
        failover.push(until_reserved(&url, killed)?);
        hosts.insert(victim, start_host(setup, database.url(), host.data)?);
    }
    Ok(Some(ClusterFigures {
        through_owner,
        through_peer,
        new_objects,
        failover,
    }))
}

/// Retries a reserve until one succeeds; how long after `since` it did.
fn until_reserved(url: &str, since: Instant) -> Result<Duration> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    loop {
        if let Ok(response) = client.post(url).send()
            && response.status().is_success()
        {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(60),
            "{url} never answered again after its owner was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(super) fn section(figures: &ClusterFigures) -> Section {
    let mut table = Table::new(&[
        "bench",
        "connections",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
    ]);
    let runs = figures
        .through_owner
        .iter()
        .map(|(c, r)| ("one object: reserve through its owner", *c, r))
        .chain(
            figures
                .through_peer
                .iter()
                .map(|(c, r)| ("one object: reserve through another host", *c, r)),
        )
        .chain([("a new object per request", 64, &figures.new_objects)]);
    let mut bars = Vec::new();
    for (bench, connections, r) in runs {
        table.row(vec![
            bench.into(),
            connections.to_string(),
            format!("{:.0}", r.requests_per_sec),
            format_value(r.p50_ms),
            format_value(r.p99_ms),
            format!("{:.2}%", r.error_rate * 100.0),
        ]);
        bars.push((format!("{bench} ({connections})"), r.requests_per_sec));
    }
    let failover = &figures.failover;
    if !failover.is_empty() {
        table.row(vec![
            format!(
                "failover after kill -9 of the owner ({} kills)",
                failover.len()
            ),
            "1".into(),
            "-".into(),
            format_value(failover.p(50.0)),
            format_value(failover.p(99.0)),
            "-".into(),
        ]);
    }
    Section {
        title: "Cluster: three hosts and PostgreSQL".into(),
        text: format!(
            "Three `verge serve --cluster` hosts and one PostgreSQL server, all on this machine \
             (so they share its cores with the load generator). Every reserve is durable in \
             Postgres before it is answered, checked against the owner's fencing epoch; batches \
             of many objects share one Postgres commit. Through another host, each request is \
             forwarded to the owner over the cluster listener. Failover is the time from \
             SIGKILL of an object's owner until a reserve through another host succeeds, with \
             the default {LEASE_SECS} s lease (the target is a p99 of at most 5 s)."
        ),
        table,
        charts: vec![Chart {
            file: "cluster.svg".into(),
            title: "Cluster: requests per second".into(),
            axis: "requests per second".into(),
            bars,
            log_scale: false,
        }],
    }
}
