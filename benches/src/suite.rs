//! The whole comparison, section by section. Each `measure_*` function
//! produces one section of the report; a new bench is one more function
//! (or module, like [`websockets`]) and one more line in [`run`].

mod cluster;
mod websockets;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use verge_host::runtime::{HostState, RequestId, invoke, new_store};
use verge_host::toolchain::Symbols;

use crate::loadgen::{self, LoadResult, Target};
use crate::peers::{self, Bins, Running};
use crate::process::{rss_kib, wait_for_200};
use crate::report::{Chart, Report, Section, Table, format_value};
use crate::samples::Samples;
use crate::tools::{Peers, Tool};

use crate::{hello_request, hello_worker, repo};

/// What to run and where to write.
pub struct Options {
    /// About a second per bench, to check the harness, not to measure.
    pub smoke: bool,
    /// Where report.md and the charts go.
    pub out_dir: PathBuf,
    /// Where the `verge` and `native-hello` binaries are.
    pub bin_dir: PathBuf,
    /// Install missing peers first (minutes, for wasmtime); otherwise the
    /// benches that need one are skipped, and the report says which.
    pub install_peers: bool,
    /// Run only these groups of [`GROUPS`]; all when empty.
    pub only: Vec<String>,
}

/// How long and how often each measurement runs.
struct Plan {
    load: Duration,
    warmup: Duration,
    starts: usize,
    spawns: usize,
    instantiations: usize,
    /// Sockets joined to the chat room, for fan-out and for memory.
    sockets: usize,
    /// Messages broadcast to every socket of the room.
    broadcasts: usize,
    /// How long the room's sockets stay idle before their memory is read.
    hibernation_wait: Duration,
    /// Owners killed to time the cluster's failover.
    kills: usize,
}

impl Plan {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                load: Duration::from_secs(1),
                warmup: Duration::ZERO,
                starts: 1,
                spawns: 3,
                instantiations: 300,
                sockets: 20,
                broadcasts: 20,
                hibernation_wait: Duration::from_millis(1500),
                kills: 2,
            }
        } else {
            Self {
                load: Duration::from_secs(10),
                warmup: Duration::from_secs(1),
                starts: 5,
                spawns: 30,
                instantiations: 50_000,
                sockets: 1000,
                broadcasts: 1000,
                // workerd evicts an object after 10 s without events.
                hibernation_wait: Duration::from_secs(15),
                kills: 20,
            }
        }
    }
}

const CONNECTIONS: [u32; 2] = [1, 64];

/// What the harness needs installed or built before measuring.
struct Setup {
    bins: Bins,
    peers: Peers,
    /// Every bundled example and the bench-only guests: (component, verge.toml).
    guests: HashMap<String, (Vec<u8>, String)>,
    wasi_http_hello: PathBuf,
}

impl Setup {
    /// A built guest by its library name (`hello`, `inventory_counter`).
    fn guest(&self, name: &str) -> Result<&(Vec<u8>, String)> {
        self.guests
            .get(name)
            .with_context(|| format!("no guest {name} was built"))
    }

    /// Deploys guests on a running host.
    fn deploy(&self, admin_url: &str, guests: &[(&str, &str)]) -> Result<()> {
        for (worker, guest) in guests {
            let (wasm, config) = self.guest(guest)?;
            peers::upload(admin_url, worker, wasm, config)?;
        }
        Ok(())
    }

    fn prepare(options: &Options) -> Result<Self> {
        let bins = Bins {
            verge: options.bin_dir.join("verge"),
            native_hello: options.bin_dir.join("native-hello"),
        };
        for binary in [&bins.verge, &bins.native_hello] {
            anyhow::ensure!(
                binary.is_file(),
                "{} is missing: build it first (`cargo build --release -p verge-host -p verge-benches`)",
                binary.display()
            );
        }
        let mut guests = HashMap::new();
        for workspace in ["guest-examples", "benches/guests"] {
            for guest in verge_host::toolchain::build(&repo().join(workspace), Symbols::Strip)? {
                let config = std::fs::read_to_string(guest.package_dir.join("verge.toml"))?;
                guests.insert(guest.name.clone(), (std::fs::read(&guest.wasm)?, config));
            }
        }
        let wasi_http_hello = built("benches/peers/wasi-http-hello", "wasi_http_hello")?;
        let peers = if options.install_peers {
            Peers::install_missing()?
        } else {
            Peers::find()
        };
        for missing in peers.missing() {
            eprintln!("bench: skipping what needs {missing}");
        }
        Ok(Self {
            peers,
            guests,
            wasi_http_hello: wasi_http_hello.wasm,
            bins,
        })
    }
}

/// Builds the guest workspace at `dir` and returns its component `name`.
fn built(dir: &str, name: &str) -> Result<verge_host::toolchain::BuiltComponent> {
    verge_host::toolchain::build(&repo().join(dir), Symbols::Strip)?
        .into_iter()
        .find(|c| c.name == name)
        .with_context(|| format!("{dir} built no {name}"))
}

/// The groups of benches `--only` picks from, in the order they run.
pub const GROUPS: [&str; 7] = [
    "instantiation",
    "deploy",
    "hello",
    "durable",
    "sql",
    "websockets",
    "cluster",
];

/// Runs the benches `options` picks and writes the report.
pub fn run(options: &Options) -> Result<Report> {
    let plan = Plan::new(options.smoke);
    let load_before = load_average();
    let setup = Setup::prepare(options)?;
    let wants = |group: &str| options.only.is_empty() || options.only.iter().any(|g| g == group);

    let instantiation = wants("instantiation")
        .then(|| measure_instantiation(&plan))
        .transpose()?;
    let deploy = wants("deploy")
        .then(|| measure_verge_deploy(&setup, &plan))
        .transpose()?;
    let hello = wants("hello")
        .then(|| -> Result<_> {
            Ok((
                measure_servers(&setup, &plan)?,
                measure_process_per_request(&setup, &plan)?,
            ))
        })
        .transpose()?;
    let durable = wants("durable")
        .then(|| measure_durable_objects(&setup, &plan))
        .transpose()?;
    let sql = wants("sql")
        .then(|| measure_sql_round_trip(&setup, &plan))
        .transpose()?;
    let chat = wants("websockets")
        .then(|| websockets::measure(&setup, &plan))
        .transpose()?;
    let cluster = wants("cluster")
        .then(|| cluster::measure(&setup, &plan))
        .transpose()?
        .flatten();

    let mut report = Report {
        preamble: preamble(&setup, options.smoke, &load_before),
        ..Report::default()
    };
    let mut goals = match (&instantiation, &hello) {
        (Some(instantiation), Some((servers, _))) => hello_goals(instantiation, servers),
        _ => Vec::new(),
    };
    goals.extend(chat.iter().flat_map(|chat| websockets::goals(chat)));
    report.sections.push(targets_section(&goals));
    report
        .sections
        .extend(instantiation.map(|instantiation| instantiation.section()));
    report.sections.extend(deploy);
    if let Some((servers, spawns)) = &hello {
        report.sections.push(startup_section(servers, spawns));
        report.sections.push(throughput_section(servers));
        report.sections.push(memory_section(servers));
    }
    report
        .sections
        .extend(durable.map(|durable| durable_section(&durable)));
    report.sections.extend(sql);
    report
        .sections
        .extend(chat.map(|chat| websockets::section(&chat)));
    report
        .sections
        .extend(cluster.map(|cluster| cluster::section(&cluster)));
    // A chart whose benches were all skipped has nothing to draw.
    for section in &mut report.sections {
        section.charts.retain(|chart| !chart.bars.is_empty());
    }
    report.write(&options.out_dir)?;
    Ok(report)
}

fn preamble(setup: &Setup, smoke: bool, load_before: &str) -> Vec<String> {
    let peers = &setup.peers;
    let mut versions = vec![format!(
        "verge {} ({})",
        env!("CARGO_PKG_VERSION"),
        git_revision()
    )];
    versions.extend(
        [&peers.load, &peers.workerd, &peers.wasmtime]
            .into_iter()
            .flatten()
            .map(|tool| tool.version.clone()),
    );
    versions.extend(peers.node.as_ref().map(|n| format!("node {}", n.version)));
    let mut preamble = vec![
        "Figures from one run on one machine: absolute numbers do not carry over to yours; the ratios between servers measured side by side in the same run do. The load generator runs on the same machine as the server under test, and each server runs alone while it is measured.".to_owned(),
        format!(
            "Machine: {} CPUs ({}), {}, Linux {}. Load average before the run: {load_before}; after: {}.",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model(),
            memory_total(),
            kernel(),
            load_average()
        ),
        format!("Versions: {}.", versions.join(", ")),
    ];
    let missing = peers.missing();
    if !missing.is_empty() {
        preamble.push(format!(
            "**Skipped**, not installed (`just bench` installs them): {}.",
            missing.join("; ")
        ));
    }
    if smoke {
        preamble.insert(0, "**Smoke run**: every bench ran for about a second to check the harness. These figures are not measurements.".to_owned());
    }
    preamble
}

/// Per-request instantiation, sampled one by one in this process.
struct Instantiation {
    instantiate: Samples,
    with_call: Samples,
}

impl Instantiation {
    fn section(&self) -> Section {
        let mut table = Table::new(&["what", "p50 µs", "p99 µs", "samples"]);
        for (what, samples) in [
            ("new store + instantiate + drop", &self.instantiate),
            ("... + call handle(GET /hello)", &self.with_call),
        ] {
            table.row(vec![
                what.into(),
                format_value(samples.p(50.0) * 1e3),
                format_value(samples.p(99.0) * 1e3),
                samples.len().to_string(),
            ]);
        }
        Section {
            title: "Cold start: per-request instantiation".into(),
            text: "Every request to a Verge worker gets a fresh instance. This is what that costs, measured in-process on the hello example: a new store with its WASI context and limits, instantiation from the pre-linked component, the drop that returns the pool slot — and, in the second row, the call itself.".into(),
            table,
            charts: Vec::new(),
        }
    }
}

fn measure_instantiation(plan: &Plan) -> Result<Instantiation> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (_platform, worker, _data) = hello_worker().await?;
        // Two tight loops, so each measures its own path with warm caches.
        let mut instantiate = Samples::default();
        for _ in 0..plan.instantiations {
            let started = Instant::now();
            let mut store = new_store(
                &worker,
                HostState::new(worker.context.clone(), RequestId::random()),
            );
            worker.instantiate(&mut store).await?;
            drop(store);
            instantiate.push(started.elapsed());
        }
        let mut with_call = Samples::default();
        for _ in 0..plan.instantiations {
            let started = Instant::now();
            invoke(&worker, hello_request(), RequestId::random(), 0)
                .await
                .result
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            with_call.push(started.elapsed());
        }
        Ok(Instantiation {
            instantiate,
            with_call,
        })
    })
}

/// Upload of a new worker to a running host, compile included, until its
/// first 200.
fn measure_verge_deploy(setup: &Setup, plan: &Plan) -> Result<Section> {
    let mut samples = Samples::default();
    for _ in 0..plan.starts {
        let data = tempfile::tempdir()?;
        let (_verge, listen, admin) = peers::verge_empty(&setup.bins, data.path())?;
        let started = Instant::now();
        setup.deploy(&admin, &[("hello", "hello")])?;
        wait_for_200(&listen, "/hello", Duration::from_secs(60))?;
        samples.push(started.elapsed());
    }
    let mut table = Table::new(&["what", "p50 ms", "runs"]);
    table.row(vec![
        "upload hello to a running verge serve → first 200 (compile included)".into(),
        format_value(samples.p(50.0)),
        samples.len().to_string(),
    ]);
    Ok(Section {
        title: "Cold start: a newly uploaded worker".into(),
        text: format!(
            "The admin API receives the component ({} KiB), validates it, compiles it with Cranelift, caches the artifact, and activates it; then the first request is served.",
            setup
                .guest("hello")
                .map_or(0, |(wasm, _)| wasm.len() / 1024)
        ),
        table,
        charts: Vec::new(),
    })
}

/// One server's startup, memory and load figures.
struct ServerFigures {
    name: &'static str,
    start: Samples,
    idle_rss_kib: u64,
    /// `None` when no load ran.
    loaded_rss_kib: Option<u64>,
    loads: Vec<(u32, LoadResult)>,
}

impl ServerFigures {
    fn load(&self, connections: u32) -> Option<&LoadResult> {
        self.loads
            .iter()
            .find(|(c, _)| *c == connections)
            .map(|(_, r)| r)
    }
}

fn measure_servers(setup: &Setup, plan: &Plan) -> Result<Vec<ServerFigures>> {
    // Verge restarts onto a data directory where hello is deployed and
    // compiled: start to first 200 is a restart with the cached artifact.
    let verge_data = tempfile::tempdir()?;
    {
        let (_verge, _, admin) = peers::verge_empty(&setup.bins, verge_data.path())?;
        setup.deploy(&admin, &[("hello", "hello")])?;
    }
    let mut starters: Vec<Box<dyn Fn() -> Result<Running> + '_>> = vec![Box::new(|| {
        peers::verge(&setup.bins, verge_data.path(), &[], "/hello")
    })];
    if let Some(workerd) = &setup.peers.workerd {
        starters.push(Box::new(|| peers::workerd(workerd)));
    }
    if let Some(wasmtime) = &setup.peers.wasmtime {
        starters.push(Box::new(|| {
            peers::wasmtime_serve(wasmtime, &setup.wasi_http_hello)
        }));
    }
    starters.push(Box::new(|| peers::native(&setup.bins)));
    starters
        .iter()
        .map(|start| measure_server(setup, plan, start.as_ref()))
        .collect()
}

fn measure_server(
    setup: &Setup,
    plan: &Plan,
    start: &dyn Fn() -> Result<Running>,
) -> Result<ServerFigures> {
    let mut startup = Samples::default();
    let mut running = start()?;
    startup.push(running.start_to_first_200);
    for _ in 1..plan.starts {
        drop(running);
        running = start()?;
        startup.push(running.start_to_first_200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss_kib = rss_kib(running.service.pid())?;
    let mut loads = Vec::new();
    let target = Target::get(&format!("http://{}", running.addr), "/hello");
    if let Some(generator) = &setup.peers.load {
        for connections in CONNECTIONS {
            loads.push((
                connections,
                load(generator, plan, running.name, &target, connections)?,
            ));
        }
    }
    let loaded_rss_kib = (!loads.is_empty())
        .then(|| rss_kib(running.service.pid()))
        .transpose()?;
    Ok(ServerFigures {
        name: running.name,
        start: startup,
        idle_rss_kib,
        loaded_rss_kib,
        loads,
    })
}

/// One load run after a warm-up, logged.
fn load(
    generator: &Tool,
    plan: &Plan,
    server: &str,
    target: &Target,
    connections: u32,
) -> Result<LoadResult> {
    if !plan.warmup.is_zero() {
        loadgen::run(generator, target, connections, plan.warmup)?;
    }
    let result = loadgen::run(generator, target, connections, plan.load)?;
    eprintln!(
        "bench: {server} {} at {connections} connections: {result:?}",
        target.path
    );
    Ok(result)
}

/// One server's Durable Object figures.
struct DurableFigures {
    name: &'static str,
    /// The inventory counter's reserve, on one object.
    reserve: Vec<(u32, LoadResult)>,
    /// The rate limiter with a new key (a new object) per request.
    new_objects: LoadResult,
}

fn measure_durable_objects(setup: &Setup, plan: &Plan) -> Result<Vec<DurableFigures>> {
    let Some(generator) = &setup.peers.load else {
        return Ok(Vec::new());
    };
    let verge_data = tempfile::tempdir()?;
    let (verge_service, listen, admin) = peers::verge_empty(&setup.bins, verge_data.path())?;
    setup.deploy(
        &admin,
        &[
            ("inventory-counter", "inventory_counter"),
            ("rate-limiter", "rate_limiter"),
        ],
    )?;
    let mut figures = vec![durable_figures(
        generator,
        plan,
        "verge",
        &format!("http://{listen}"),
    )?];
    drop(verge_service);
    if let Some(workerd) = &setup.peers.workerd {
        let storage = tempfile::tempdir()?;
        let service = peers::workerd_durable(workerd, storage.path())?;
        let base = format!("http://{}", service.addr);
        figures.push(durable_figures(generator, plan, "workerd", &base)?);
    }
    Ok(figures)
}

fn durable_figures(
    generator: &Tool,
    plan: &Plan,
    name: &'static str,
    base: &str,
) -> Result<DurableFigures> {
    // Enough stock that every reserve in the run writes.
    peers::post(&format!(
        "{base}/inventory/bench/restock?quantity=1000000000"
    ))?;
    let reserve_target = Target {
        post: true,
        ..Target::get(base, "/inventory/bench/reserve")
    };
    let mut reserve = Vec::new();
    for connections in CONNECTIONS {
        reserve.push((
            connections,
            load(generator, plan, name, &reserve_target, connections)?,
        ));
    }
    let new_objects_target = Target {
        random_suffix: true,
        ..Target::get(base, "/limited/")
    };
    let new_objects = load(generator, plan, name, &new_objects_target, 64)?;
    Ok(DurableFigures {
        name,
        reserve,
        new_objects,
    })
}

fn durable_section(figures: &[DurableFigures]) -> Section {
    let mut table = Table::new(&[
        "server",
        "bench",
        "connections",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
    ]);
    let mut bars = Vec::new();
    for server in figures {
        let runs = server
            .reserve
            .iter()
            .map(|(c, r)| ("one object: durable reserve", *c, r))
            .chain([("a new object per request", 64, &server.new_objects)]);
        for (bench, connections, r) in runs {
            table.row(vec![
                server.name.into(),
                bench.into(),
                connections.to_string(),
                format!("{:.0}", r.requests_per_sec),
                format_value(r.p50_ms),
                format_value(r.p99_ms),
                format!("{:.2}%", r.error_rate * 100.0),
            ]);
            let short = if bench.starts_with("one") {
                "reserve"
            } else {
                "new object"
            };
            bars.push((
                format!("{} {short} c{connections}", server.name),
                r.requests_per_sec,
            ));
        }
    }
    if figures.is_empty() {
        return Section {
            title: "Durable Objects".into(),
            text: "Skipped: these benches need a load generator (oha or wrk).".into(),
            ..Section::default()
        };
    }
    Section {
        title: "Durable Objects".into(),
        text: "**One object, durable reserve**: the inventory-counter example's `POST /inventory/bench/reserve` on a single object with ample stock, so every request is a read and a durable write; Verge commits with `synchronous=FULL` and releases each reply only after its commit, sharing commits between the events that queue behind one. **A new object per request**: the rate-limiter example with a random key per request, so each request creates an object, its SQLite database and schema, and writes to it. workerd runs the same logic in JavaScript with SQLite-backed Durable Objects on local disk (`benches/peers/workerd/durable.js`).".into(),
        table,
        charts: vec![Chart {
            file: "durable-objects.svg".into(),
            title: "Durable Objects: requests per second".into(),
            axis: "req/s".into(),
            bars,
            log_scale: false,
        }],
    }
}

/// One guest → SQLite round trip, measured in-process: an object runs
/// `SELECT ?` n times in one RPC; (time(n = 1000) - time(n = 0)) / 1000.
fn measure_sql_round_trip(setup: &Setup, plan: &Plan) -> Result<Section> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (wasm, config) = setup.guest("bench_objects")?.clone();
    let samples = plan.spawns.max(3);
    let (empty, loops) = runtime.block_on(async {
        let object = crate::BenchObject::start(wasm, &config, "SqlLoop").await?;
        let call = |n: u32| {
            let object = &object;
            async move {
                let started = Instant::now();
                object.rpc("select", serde_json::to_vec(&(n,))?).await?;
                anyhow::Ok(started.elapsed())
            }
        };
        call(10).await?; // activation
        let (mut empty, mut loops) = (Samples::default(), Samples::default());
        for _ in 0..samples {
            empty.push(call(0).await?);
            loops.push(call(SQL_LOOP).await?);
        }
        anyhow::Ok((empty, loops))
    })?;
    let per_call_us = (loops.p(50.0) - empty.p(50.0)) * 1e3 / f64::from(SQL_LOOP);
    let mut table = Table::new(&["what", "p50", "samples"]);
    table.row(vec![
        "RPC to an active object, no SQL".into(),
        format!("{} µs", format_value(empty.p(50.0) * 1e3)),
        samples.to_string(),
    ]);
    table.row(vec![
        format!("the same, with {SQL_LOOP} × `SELECT ?`"),
        format!("{} ms", format_value(loops.p(50.0))),
        samples.to_string(),
    ]);
    table.row(vec![
        "one guest → SQLite round trip".into(),
        format!("{} µs", format_value(per_call_us)),
        "—".into(),
    ]);
    Ok(Section {
        title: "Durable Objects: guest → SQL round trip".into(),
        text: "SQLite runs in the host process, next to the guest: a query is a call across the component boundary, not a network hop. `cargo bench -p verge-benches --bench sql` measures the same with criterion.".into(),
        table,
        charts: Vec::new(),
    })
}

/// Statements per RPC in the SQL round-trip bench.
const SQL_LOOP: u32 = 1000;

/// Spawn-to-exit of a process per request: the native CGI-style baseline
/// and a Node.js process start.
fn measure_process_per_request(setup: &Setup, plan: &Plan) -> Result<Vec<(&'static str, Samples)>> {
    let mut measured = Vec::new();
    let mut cgi = Samples::default();
    for _ in 0..plan.spawns {
        let mut command = Command::new(&setup.bins.native_hello);
        command.arg("--cgi");
        cgi.push(peers::spawn_to_exit(command)?);
    }
    measured.push(("native process per request (CGI-style)", cgi));
    if let Some(node) = &setup.peers.node {
        let mut samples = Samples::default();
        for _ in 0..plan.spawns {
            let mut command = node.command();
            command.args([
                "-e",
                "process.stdout.write(JSON.stringify({message:'Hello from Verge!',path:'/hello'}))",
            ]);
            samples.push(peers::spawn_to_exit(command)?);
        }
        measured.push(("Node.js process start", samples));
    }
    Ok(measured)
}

fn startup_section(servers: &[ServerFigures], spawns: &[(&'static str, Samples)]) -> Section {
    let mut table = Table::new(&["what", "p50 ms", "runs"]);
    let mut bars = Vec::new();
    for server in servers {
        let label = format!("{} start → first 200", server.name);
        table.row(vec![
            label.clone(),
            format_value(server.start.p(50.0)),
            server.start.len().to_string(),
        ]);
        bars.push((server.name.to_string(), server.start.p(50.0)));
    }
    for (name, samples) in spawns {
        table.row(vec![
            format!("{name}: spawn → exit"),
            format_value(samples.p(50.0)),
            samples.len().to_string(),
        ]);
        bars.push((name.to_string(), samples.p(50.0)));
    }
    Section {
        title: "Cold start: process start to first response".into(),
        text: "From spawning the server process to its first `200` for `GET /hello`, polled over fresh connections every 0.2 ms. Verge restarts onto a data directory where hello is already deployed, so its compiled artifact comes from the cache; `wasmtime serve` runs the wasi:http hello component with its default settings; workerd runs hello.js. For the process-per-request baselines, the time from spawn to exit of one process that writes the response.".into(),
        table,
        charts: vec![Chart {
            file: "cold-start.svg".into(),
            title: "Start to first response (p50, log scale)".into(),
            axis: "milliseconds".into(),
            bars,
            log_scale: true,
        }],
    }
}

fn throughput_section(servers: &[ServerFigures]) -> Section {
    let mut table = Table::new(&[
        "server",
        "connections",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
    ]);
    let mut rps = Vec::new();
    let mut p99 = Vec::new();
    for server in servers {
        for (connections, r) in &server.loads {
            table.row(vec![
                server.name.into(),
                connections.to_string(),
                format!("{:.0}", r.requests_per_sec),
                format_value(r.p50_ms),
                format_value(r.p99_ms),
                format!("{:.2}%", r.error_rate * 100.0),
            ]);
            rps.push((
                format!("{} c{connections}", server.name),
                r.requests_per_sec,
            ));
            if *connections == 64 {
                p99.push((server.name.to_string(), r.p99_ms));
            }
        }
    }
    Section {
        title: "Throughput and latency: GET /hello".into(),
        text: "Keep-alive connections for the measured duration after a warm-up; each server alone on the machine with the load generator. Verge creates a fresh instance per request; workerd reuses its isolate; `wasmtime serve` creates a fresh instance per request like Verge.".into(),
        table,
        charts: vec![
            Chart {
                file: "throughput.svg".into(),
                title: "Requests per second".into(),
                axis: "req/s".into(),
                bars: rps,
                log_scale: false,
            },
            Chart {
                file: "latency-p99.svg".into(),
                title: "p99 latency at 64 connections".into(),
                axis: "milliseconds".into(),
                bars: p99,
                log_scale: false,
            },
        ],
    }
}

fn memory_section(servers: &[ServerFigures]) -> Section {
    let mut table = Table::new(&["server", "idle RSS MiB", "RSS after load MiB"]);
    let mut bars = Vec::new();
    for server in servers {
        let idle = server.idle_rss_kib as f64 / 1024.0;
        let loaded = server.loaded_rss_kib.map(|kib| kib as f64 / 1024.0);
        table.row(vec![
            server.name.into(),
            format_value(idle),
            loaded.map_or("—".into(), format_value),
        ]);
        bars.push((format!("{} idle", server.name), idle));
        bars.extend(loaded.map(|loaded| (format!("{} after load", server.name), loaded)));
    }
    Section {
        title: "Memory".into(),
        text: "Resident set size of the server process (`VmRSS`), idle after its first request, and after the load runs.".into(),
        table,
        charts: vec![Chart {
            file: "memory.svg".into(),
            title: "Resident memory".into(),
            axis: "MiB".into(),
            bars,
            log_scale: false,
        }],
    }
}

/// A goal the benchmark issues set, checked against one run.
struct Goal {
    what: String,
    measured: String,
    met: bool,
}

impl Goal {
    /// Verge's figure at least `times` the other's.
    fn times(what: &str, verge: f64, other: f64, times: f64) -> Self {
        let ratio = verge / other;
        Self {
            what: what.into(),
            measured: format!("{ratio:.2}×"),
            met: ratio >= times,
        }
    }

    /// Verge's figure at most `1/denominator` of the other's.
    fn fraction(what: &str, verge: f64, other: f64, unit: &str, denominator: f64) -> Self {
        let ratio = verge / other;
        Self {
            what: what.into(),
            measured: format!(
                "{} {unit} vs {} {unit} (1/{:.1})",
                format_value(verge),
                format_value(other),
                1.0 / ratio
            ),
            met: ratio <= 1.0 / denominator,
        }
    }

    fn verdict(&self) -> &'static str {
        if self.met { "yes" } else { "**no**" }
    }

    /// The goal as a sentence of a section's text.
    fn sentence(&self) -> String {
        format!("{}: {}, met: {}.", self.what, self.measured, self.verdict())
    }
}

/// The goals for serving `GET /hello`.
fn hello_goals(instantiation: &Instantiation, servers: &[ServerFigures]) -> Vec<Goal> {
    let by_name = |name: &str| servers.iter().find(|s| s.name == name);
    let (Some(verge), Some(workerd), Some(native)) =
        (by_name("verge"), by_name("workerd"), by_name("native axum"))
    else {
        return Vec::new();
    };
    let rps = |s: &ServerFigures| s.load(64).map_or(0.0, |r| r.requests_per_sec);
    let p99 = |s: &ServerFigures| s.load(64).map_or(f64::NAN, |r| r.p99_ms);
    let p50_us = instantiation.instantiate.p(50.0) * 1e3;
    vec![
        Goal::times(
            "Verge req/s at c64 ≥ 2× workerd",
            rps(verge),
            rps(workerd),
            2.0,
        ),
        Goal::fraction(
            "Verge p99 at c64 no worse than workerd",
            p99(verge),
            p99(workerd),
            "ms",
            1.0,
        ),
        Goal {
            what: "instantiation p50 ≤ 10 µs".into(),
            measured: format!("{} µs", format_value(p50_us)),
            met: p50_us <= 10.0,
        },
        Goal::fraction(
            "verge serve start → first 200 ≤ 1/8 of workerd's",
            verge.start.p(50.0),
            workerd.start.p(50.0),
            "ms",
            8.0,
        ),
        Goal::fraction(
            "idle RSS ≤ 1/3 of workerd's",
            verge.idle_rss_kib as f64 / 1024.0,
            workerd.idle_rss_kib as f64 / 1024.0,
            "MiB",
            3.0,
        ),
        Goal::times(
            "Verge req/s at c64 ≥ 0.5× native axum",
            rps(verge),
            rps(native),
            0.5,
        ),
    ]
}

fn targets_section(goals: &[Goal]) -> Section {
    let mut table = Table::new(&["target", "measured", "met"]);
    for goal in goals {
        table.row(vec![
            goal.what.clone(),
            goal.measured.clone(),
            goal.verdict().into(),
        ]);
    }
    Section {
        title: "Targets".into(),
        text: "The goals the benchmark issues set, against this run's figures.".into(),
        table,
        charts: Vec::new(),
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|v| v.split(':').nth(1))
        })
        .map_or("unknown CPU".into(), |m| m.trim().to_owned())
}

fn memory_total() -> String {
    read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("unknown memory".into(), |kib| {
            format!("{} GiB RAM", kib / (1 << 20))
        })
}

fn kernel() -> String {
    read("/proc/sys/kernel/osrelease").trim().to_owned()
}

fn git_revision() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown revision".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
}

/// Replaces the part of docs/benchmarks.md between the report markers with
/// this report's sections, and copies the charts to docs/bench/.
pub fn update_docs(report: &Report, out_dir: &Path) -> Result<()> {
    let docs = repo().join("docs");
    let chart_dir = docs.join("bench");
    std::fs::create_dir_all(&chart_dir)?;
    for chart in report.sections.iter().flat_map(|s| &s.charts) {
        std::fs::copy(out_dir.join(&chart.file), chart_dir.join(&chart.file))?;
    }
    let path = docs.join("benchmarks.md");
    let page = std::fs::read_to_string(&path)?;
    let (start, end) = ("<!-- report:start -->", "<!-- report:end -->");
    let (before, rest) = page
        .split_once(start)
        .context("no report:start marker in docs/benchmarks.md")?;
    let (_, after) = rest
        .split_once(end)
        .context("no report:end marker in docs/benchmarks.md")?;
    let body = format!(
        "{}\n\n{}",
        report.preamble.join("\n\n"),
        report.body_markdown("bench/")
    );
    std::fs::write(&path, format!("{before}{start}\n{body}{end}{after}"))?;
    Ok(())
}
