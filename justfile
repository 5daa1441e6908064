# Recipes for contributors. The README's two commands need none of this.

default:
    @just --list

# Build every guest example for wasm32-wasip2.
build-guests:
    rustup target add wasm32-wasip2
    cd guest-examples && cargo build --release
    cd host/tests/guests && cargo build --release

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
