//! The Verge host: serves WebAssembly workers built against the
//! `verge:platform` contract.
//!
//! Follow a request from [`server`] (the axum front door and the admin API)
//! through [`platform`] (which worker version serves it) into [`runtime`]
//! (a fresh instance under limits) and [`bindings`] (the host side of each
//! WIT interface). [`storage`] keeps deployments across restarts; [`config`]
//! reads verge.toml; [`cli`] is the `verge` command.

pub mod bindings;
pub mod cli;
pub mod config;
pub mod objects;
pub mod platform;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod toolchain;
