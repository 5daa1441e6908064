//! `just bench-smoke` in the test suite: every bench of the comparison
//! harness runs for about a second against real servers, so the harness
//! cannot rot. The figures are not measurements.

use std::path::Path;
use std::process::Command;

use verge_benches::repo;
use verge_benches::suite::{self, Options};
use verge_benches::tools::Peers;

#[test]
fn bench_smoke_run_writes_every_section_and_chart() {
    // The harness runs the real `verge` binary; make sure it is current.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-p", "verge-host", "--bin", "verge"])
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(built.success());

    let out = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_native-hello"))
        .parent()
        .unwrap();
    let report = suite::run(&Options {
        smoke: true,
        out_dir: out.path().to_path_buf(),
        bin_dir: bin_dir.to_path_buf(),
        // `cargo test` installs nothing that takes minutes to build; the
        // run skips what needs a missing peer and the report says so.
        install_peers: false,
        only: Vec::new(),
    })
    .unwrap();
    let peers = Peers::find();
    for missing in peers.missing() {
        eprintln!("smoke: skipped what needs {missing}");
    }

    let markdown = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    for heading in [
        "## Targets",
        "## Cold start: per-request instantiation",
        "## Cold start: a newly uploaded worker",
        "## Cold start: process start to first response",
        "## Throughput and latency: GET /hello",
        "## Memory",
        "## Durable Objects",
        "## Durable Objects: guest → SQL round trip",
        "## WebSockets: chat-room fan-out and hibernated sockets",
        "## Cluster: three hosts and PostgreSQL",
    ] {
        assert!(
            markdown.contains(heading),
            "{heading} missing from:\n{markdown}"
        );
    }
    let mut servers = vec!["verge", "native axum"];
    servers.extend(peers.workerd.is_some().then_some("workerd"));
    servers.extend(peers.wasmtime.is_some().then_some("wasmtime serve"));
    for server in servers {
        assert_eq!(
            markdown.contains(&format!("| {server} | 64 |")),
            peers.load.is_some(),
            "a c64 row for {server} if and only if a load generator is installed"
        );
    }
    for chart in report.sections.iter().flat_map(|s| &s.charts) {
        let svg = std::fs::read_to_string(out.path().join(&chart.file)).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("<rect"),
            "{} is not a chart",
            chart.file
        );
    }
    let throughput = report
        .sections
        .iter()
        .find(|s| s.title.starts_with("Throughput"))
        .unwrap();
    for row in &throughput.table.rows {
        let rps: f64 = row[2].parse().unwrap();
        assert!(rps > 0.0, "{row:?} served nothing");
        assert_eq!(row[5], "0.00%", "{row:?} had errors");
    }
    let durable = report
        .sections
        .iter()
        .find(|s| s.title == "Durable Objects")
        .unwrap();
    let durable_servers = match (&peers.load, &peers.workerd) {
        (None, _) => 0,
        (Some(_), None) => 1,
        (Some(_), Some(_)) => 2,
    };
    assert_eq!(
        durable.table.rows.len(),
        3 * durable_servers,
        "three benches for each of Verge and workerd"
    );
    for row in &durable.table.rows {
        let rps: f64 = row[3].parse().unwrap();
        assert!(rps > 0.0, "{row:?} served nothing");
        assert_eq!(row[6], "0.00%", "{row:?} had errors");
    }
    let websockets = report
        .sections
        .iter()
        .find(|s| s.title.starts_with("WebSockets"))
        .unwrap();
    let row = |label: &str| {
        websockets
            .table
            .rows
            .iter()
            .find(|r| r[0] == label)
            .unwrap_or_else(|| panic!("no {label} row"))
    };
    let chat_servers = if peers.workerd.is_some() { 2 } else { 1 };
    assert_eq!(row("lost deliveries").len(), 1 + chat_servers);
    assert!(
        row("lost deliveries")[1..].iter().all(|lost| lost == "0"),
        "verge, workerd"
    );
    for rps in &row("deliveries/s")[1..] {
        assert!(rps.parse::<f64>().unwrap() > 0.0, "no deliveries");
    }
}
