//! The Verge host: serves WebAssembly workers built against the
//! `verge:platform` contract.
//!
//! Follow a request from [`server`] (the axum front door and the admin API)
//! through [`platform`] (which worker version serves it) into [`runtime`]
//! (a fresh instance under limits) or [`objects`] (Durable Objects: one
//! actor and one SQLite database per object), and [`bindings`] (the host
//! side of each WIT interface). `storage` keeps deployments across
//! restarts, and holds KV namespaces, D1 databases and R2 buckets; `cron`
//! runs cron triggers; `config` reads verge.toml; [`telemetry`] is request logs,
//! `verge tail` and metrics; [`cli`] is the `verge` command.
//!
//! The public surface is what the `verge` binary, the tests and the
//! benchmarks need; everything else is `pub(crate)`, and the lint below
//! keeps it so.

#![warn(unreachable_pub)]

pub mod bindings;
pub mod cli;
mod clock;
pub mod cluster;
pub(crate) mod config;
pub(crate) mod cron;
mod files;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod objects;
pub mod platform;
pub mod runtime;
pub mod server;
pub(crate) mod storage;
pub mod telemetry;
pub mod toolchain;
