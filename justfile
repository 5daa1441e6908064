# Recipes for contributors. The README's two commands need none of this.

default:
    @just --list

# Build every guest example for wasm32-wasip2.
build-guests:
    rustup target add wasm32-wasip2
    cd guest-examples && cargo build --release
    cd host/tests/guests && cargo build --release

# Package the SDK crates as crates.io would take them, and build each from
# its package (verge-sdk against the packaged verge-macros). Not in the tests:
# verifying compiles both crates from scratch.
package:
    cargo package -p verge-macros -p verge-sdk

# The test suite, as CI runs it.
test:
    .ci/run

# Serve every example on http://127.0.0.1:8787/.
demo:
    cargo run --release -- up

# Format everything, guests included.
fmt:
    cargo fmt --all
    cd guest-examples && cargo fmt --all
    cd host/tests/guests && cargo fmt --all
    cd benches/peers/wasi-http-hello && cargo fmt --all

# Lints as CI expects them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cd guest-examples && cargo clippy --release --all-targets -- -D warnings
    cd host/tests/guests && cargo clippy --release -- -D warnings

# The benchmark peers (oha, workerd, wasmtime 48), installed where missing.
bench-peers:
    cargo run --release -p verge-benches --bin bench -- --install-peers

# The full comparison: report and charts in target/bench-report/. Installs
# missing peers first.
bench:
    cargo build --release -p verge-host -p verge-benches
    cargo run --release -p verge-benches --bin bench

# The same, then the latest figures into docs/benchmarks.md.
bench-docs:
    cargo build --release -p verge-host -p verge-benches
    cargo run --release -p verge-benches --bin bench -- --update-docs

# 100 power cuts under load on a filesystem that forgets unsynced writes
# (needs FUSE: Debian's fuse3, root). `cargo test` runs 10.
crash-test trials="100":
    VERGE_POWER_LOSS_TRIALS={{trials}} cargo test -p verge-host --test power_loss -- --nocapture acknowledged_writes_and_alarms_survive_power_loss

# Every bench for about a second, to check the harness.
bench-smoke:
    cargo build --release -p verge-host -p verge-benches
    cargo run --release -p verge-benches --bin bench -- --smoke

# Criterion micro-benches only.
bench-micro:
    cargo bench -p verge-benches

# Fuzz each target for `secs` seconds (cargo-fuzz on stable via RUSTC_BOOTSTRAP).
# New corpus entries stay in host/fuzz/corpus/<target>; a crash stops that
# target (its input lands in host/fuzz/artifacts/<target>/) and fails the
# recipe at the end. Logs: host/fuzz/artifacts/<target>.log.
fuzz secs="60":
    #!/usr/bin/env bash
    set -uo pipefail
    export RUSTC_BOOTSTRAP=1
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || exit 1
    cd host
    # No sanitizer: the targets are safe Rust, and wasmtime's trap
    # handling and address-space reservations do not mix with ASan.
    cargo fuzz build --sanitizer none || exit 1
    failed=()
    # target:max_len
    for spec in worker_config:4096 outbound_rule:1024 routes:2048 object_id:256 admin_upload:65536 front_door:4096; do
        target=${spec%%:*}
        max_len=${spec#*:}
        mkdir -p fuzz/artifacts
        log=fuzz/artifacts/$target.log
        echo "== $target: {{secs}} s"
        if ! cargo fuzz run --sanitizer none "$target" -- \
            -max_total_time={{secs}} -max_len="$max_len" -rss_limit_mb=4096 -timeout=60 \
            -dict="$PWD/fuzz/dicts/$target.dict" -print_final_stats=1 >"$log" 2>&1; then
            failed+=("$target")
            grep -E -A30 'ERROR: libFuzzer|panicked at|==[0-9]+==' "$log" | head -60
        fi
        grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' "$log"
        echo "corpus: $(ls fuzz/corpus/$target | wc -l) files"
    done
    if [ ${#failed[@]} -gt 0 ]; then
        echo "crashed: ${failed[*]} (inputs in host/fuzz/artifacts/)"
        exit 1
    fi

# The hostile-guest cases too big for CI: eight 900 MiB memory bombs
# (about 4 GiB free) and 40,000 WebSockets (an open-files limit of 45,000:
# run as root, or raise `ulimit -Hn`). `cargo test` runs the small versions.
hostile-big:
    cargo test -p verge-host --test hostile --test hostile_network -- --ignored --nocapture
