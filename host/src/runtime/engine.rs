//! The one wasmtime [`Engine`] of a host: pooling allocator, copy-on-write
//! memory images, epoch interruption.

use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. CPU time is counted in these ticks, and a
/// running guest yields to the async runtime at every tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Sizing of the instance pool, fixed for the life of the host.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Requests (and object events) that may run at once; the one past it
    /// gets a 503.
    pub max_instances: u32,
    /// Durable Objects that may be active (holding a warm instance) at once.
    pub max_objects: u32,
    /// The largest `limits.memory_mb` a worker may ask for.
    pub max_memory_mb: u64,
    /// Requests of one worker that may run at once; more get a 503 with
    /// `retry-after`, while other workers keep their share of the pool.
    pub max_instances_per_worker: u32,
    /// What every instance's memory and every buffered body may add up to,
    /// host-wide, in MiB.
    pub memory_budget_mb: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_objects: 1000,
            max_memory_mb: 1024,
            max_instances_per_worker: 250,
            memory_budget_mb: (super::MemoryBudget::default_limit() >> 20) as u64,
        }
    }
}

/// Builds the engine and starts the thread that advances its epoch.
pub fn new_engine(options: &EngineOptions) -> Result<Engine> {
    // Warm objects hold an instance (and its memory) between events, and
    // each may be in the middle of a call, as may each request.
    let n = options.max_instances.saturating_add(options.max_objects);
    let mut pool = PoolingAllocationConfig::new();
    // A component built by rustc holds its own core module plus a few small
    // shim modules (no memories), so instances outnumber components.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(4))
        .total_memories(n)
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size((options.max_memory_mb as usize) << 20)
        // A recycled slot keeps up to this much of its memory resident, and
        // PAGEMAP_SCAN (Linux 6.7+) resets only the pages a request
        // dirtied: no page faults on the next request, no full memset.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10);

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .wasm_component_model(true);
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")?;
    spawn_epoch_ticker(&engine);
    Ok(engine)
}

/// Advances the epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("verge-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
