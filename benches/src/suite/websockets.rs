//! The chat-room benches: broadcast fan-out through one room, and memory
//! with the room's sockets idle and hibernated. Verge runs
//! guest-examples/chat-room; workerd runs the same room in JavaScript on
//! its WebSocket Hibernation API (benches/peers/workerd/chat.js).

use std::time::Duration;

use anyhow::Result;

use super::{Goal, Plan, Setup};
use crate::fanout::{Broadcasts, Fanout, Room};
use crate::peers::{self, Running};
use crate::process::rss_kib;
use crate::report::{Chart, Section, Table, format_value};

/// Sockets that send the broadcasts, in turn.
const SENDERS: usize = 4;
/// Broadcasts sent and not yet delivered to every socket, at most.
const WINDOW: usize = 8;
/// How long joining the room, the broadcasts, and the pings may take.
const TIMEOUT: Duration = Duration::from_secs(180);
/// Verge's `--object-idle-secs` in the memory bench: well inside the wait,
/// so the object is surely evicted when memory is read.
const VERGE_IDLE_SECS: &str = "1";
/// Each server's readiness probe: its first request, before idle memory is
/// read.
const READY_PATH: &str = "/chat/ready/online";

/// One server's chat-room figures.
pub(super) struct ChatFigures {
    name: &'static str,
    fanout: Fanout,
    memory: Memory,
}

/// A chat server's resident memory, in KiB.
struct Memory {
    /// After one request, before any socket connects.
    idle_kib: u64,
    /// With every socket of a room connected and idle for `idle_for`.
    hibernated_kib: u64,
    idle_for: Duration,
}

pub(super) fn measure(setup: &Setup, plan: &Plan) -> Result<Vec<ChatFigures>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Verge restarts onto a data directory where the chat room is deployed,
    // as in the memory section: the artifact comes from the cache, and no
    // compiler's leftovers sit in the measured process.
    let verge_data = tempfile::tempdir()?;
    {
        let (_verge, _, admin) = peers::verge_empty(&setup.bins, verge_data.path())?;
        setup.deploy(&admin, &[("chat-room", "chat_room")])?;
    }
    let verge = |flags: &[&str]| peers::verge(&setup.bins, verge_data.path(), flags, READY_PATH);
    let mut figures = vec![ChatFigures {
        name: "verge",
        fanout: fanout(&runtime, plan, verge(&[])?)?,
        memory: memory(
            &runtime,
            plan,
            verge(&["--object-idle-secs", VERGE_IDLE_SECS])?,
        )?,
    }];
    if let Some(workerd) = &setup.peers.workerd {
        let storage = tempfile::tempdir()?;
        let workerd = || peers::workerd_chat(workerd, storage.path(), READY_PATH);
        figures.push(ChatFigures {
            name: "workerd",
            fanout: fanout(&runtime, plan, workerd()?)?,
            memory: memory(&runtime, plan, workerd()?)?,
        });
    }
    Ok(figures)
}

/// Joins the room, broadcasts through it, and stops the server.
fn fanout(runtime: &tokio::runtime::Runtime, plan: &Plan, server: Running) -> Result<Fanout> {
    runtime.block_on(async {
        let mut room = Room::join(&server.addr, "fanout", plan.sockets, TIMEOUT).await?;
        let fanout = room
            .broadcast(&Broadcasts {
                count: plan.broadcasts,
                senders: SENDERS.min(plan.sockets),
                window: WINDOW,
                timeout: TIMEOUT,
            })
            .await?;
        // The server stops before the sockets close: a thousand leave
        // broadcasts are no part of the bench.
        let name = server.name;
        drop(server);
        drop(room);
        eprintln!(
            "bench: {name} chat fan-out: {} of {} deliveries, {:.0}/s, p50 {} ms, p99 {} ms",
            fanout.delivered,
            fanout.expected(),
            fanout.deliveries_per_sec(),
            format_value(fanout.latency.p(50.0)),
            format_value(fanout.latency.p(99.0)),
        );
        Ok(fanout)
    })
}

/// The server's RSS after its first request, then with a room's sockets
/// connected and idle for the plan's wait.
fn memory(runtime: &tokio::runtime::Runtime, plan: &Plan, server: Running) -> Result<Memory> {
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kib(server.service.pid())?;
    runtime.block_on(async {
        let mut room = Room::join(&server.addr, "idle", plan.sockets, TIMEOUT).await?;
        tokio::time::sleep(plan.hibernation_wait).await;
        let hibernated = rss_kib(server.service.pid())?;
        // Every socket outlived the object's eviction; the host answers.
        room.ping_all(TIMEOUT).await?;
        eprintln!(
            "bench: {} RSS {idle} KiB idle, {hibernated} KiB with {} hibernated sockets",
            server.name, plan.sockets
        );
        drop(server);
        drop(room);
        Ok(Memory {
            idle_kib: idle,
            hibernated_kib: hibernated,
            idle_for: plan.hibernation_wait,
        })
    })
}

/// The chat-room goals: fan-out throughput and latency, and memory.
pub(super) fn goals(figures: &[ChatFigures]) -> Vec<Goal> {
    let by_name = |name: &str| figures.iter().find(|f| f.name == name);
    let (Some(verge), Some(workerd)) = (by_name("verge"), by_name("workerd")) else {
        return Vec::new();
    };
    vec![
        Goal::times(
            "Verge chat deliveries/s ≥ 2× workerd",
            verge.fanout.deliveries_per_sec(),
            workerd.fanout.deliveries_per_sec(),
            2.0,
        ),
        Goal::fraction(
            "Verge chat delivery p99 ≤ 1/2 of workerd's",
            verge.fanout.latency.p(99.0),
            workerd.fanout.latency.p(99.0),
            "ms",
            2.0,
        ),
        Goal::fraction(
            &format!(
                "RSS with {} hibernated sockets ≤ 1/5 of workerd's",
                verge.fanout.sockets
            ),
            mib(verge.memory.hibernated_kib),
            mib(workerd.memory.hibernated_kib),
            "MiB",
            5.0,
        ),
    ]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub(super) fn section(figures: &[ChatFigures]) -> Section {
    let mut header = vec![""];
    header.extend(figures.iter().map(|f| f.name));
    let mut table = Table::new(&header);
    let mut row = |what: &str, value: &dyn Fn(&ChatFigures) -> String| {
        let mut cells = vec![what.to_owned()];
        cells.extend(figures.iter().map(value));
        table.row(cells);
    };
    row("sockets in the room", &|f| f.fanout.sockets.to_string());
    row("broadcasts", &|f| f.fanout.broadcasts.to_string());
    row("deliveries (sockets × broadcasts)", &|f| {
        format!("{} of {}", f.fanout.delivered, f.fanout.expected())
    });
    row("lost deliveries", &|f| f.fanout.lost().to_string());
    row("deliveries/s", &|f| {
        format!("{:.0}", f.fanout.deliveries_per_sec())
    });
    row("delivery latency p50 ms", &|f| {
        format_value(f.fanout.latency.p(50.0))
    });
    row("delivery latency p99 ms", &|f| {
        format_value(f.fanout.latency.p(99.0))
    });
    row("RSS idle, before any socket MiB", &|f| {
        format_value(mib(f.memory.idle_kib))
    });
    row("RSS with the sockets hibernated MiB", &|f| {
        format_value(mib(f.memory.hibernated_kib))
    });
    row("RSS per hibernated socket KiB", &|f| {
        let added = f.memory.hibernated_kib.saturating_sub(f.memory.idle_kib);
        format_value(added as f64 / f.fanout.sockets as f64)
    });

    let goals: Vec<String> = goals(figures).iter().map(Goal::sentence).collect();
    let sockets = figures.first().map_or(0, |f| f.fanout.sockets);
    let text = format!(
        "The seed article's chat room: Verge runs the chat-room example, workerd the same room in JavaScript on its WebSocket Hibernation API with SQLite-backed storage (`benches/peers/workerd/chat.js`): same URLs, same JSON, every message stored in SQL and then sent to every socket of the room.\n\n\
         **Fan-out**: {sockets} WebSocket clients (tokio-tungstenite, in the harness process) join one room, and the bench waits until each has seen the join that lists all of them. Then {SENDERS} of them send the messages in turn, each carrying its number and send time. At most {WINDOW} broadcasts are in flight: a new message leaves when an earlier one has reached every socket, which keeps the server busy while its queues stay short. *deliveries/s* is broadcasts received over all sockets, divided by the time from the first send to the last delivery; *latency* is send → receive of every single delivery; deliveries that never arrive count as lost.\n\n\
         **Memory**: a fresh server (Verge restarted onto a data directory where the chat room is deployed, as in the memory section) serves one request and its RSS (`VmRSS`) is read; then {sockets} sockets join a room and stay idle, and RSS is read again after {:.1} s. Verge runs with `--object-idle-secs {VERGE_IDLE_SECS}`, so by then the room's object is evicted and only the host's sockets remain; workerd hibernates an object after 10 s without events. Then each socket sends `ping` and must get the host's `pong`: all of them are still connected.\n\n{}",
        figures
            .first()
            .map_or(0.0, |f| f.memory.idle_for.as_secs_f64()),
        goals.join(" "),
    );
    Section {
        title: "WebSockets: chat-room fan-out and hibernated sockets".into(),
        text,
        table,
        charts: charts(figures),
    }
}

fn charts(figures: &[ChatFigures]) -> Vec<Chart> {
    let mut deliveries = Vec::new();
    let mut latency = Vec::new();
    let mut memory = Vec::new();
    for f in figures {
        deliveries.push((f.name.to_owned(), f.fanout.deliveries_per_sec()));
        latency.push((format!("{} p50", f.name), f.fanout.latency.p(50.0)));
        latency.push((format!("{} p99", f.name), f.fanout.latency.p(99.0)));
        memory.push((format!("{} idle", f.name), mib(f.memory.idle_kib)));
        memory.push((
            format!("{} hibernated sockets", f.name),
            mib(f.memory.hibernated_kib),
        ));
    }
    vec![
        Chart {
            file: "websocket-fanout.svg".into(),
            title: "Chat-room fan-out: deliveries per second".into(),
            axis: "deliveries/s".into(),
            bars: deliveries,
            log_scale: false,
        },
        Chart {
            file: "websocket-latency.svg".into(),
            title: "Chat-room fan-out: delivery latency".into(),
            axis: "milliseconds".into(),
            bars: latency,
            log_scale: false,
        },
        Chart {
            file: "websocket-memory.svg".into(),
            title: "Resident memory, chat room with hibernated sockets".into(),
            axis: "MiB".into(),
            bars: memory,
            log_scale: false,
        },
    ]
}
