//! Host side of the `verge:platform` WIT contract: one module per imported
//! interface, each implementing exactly that interface's generated `Host`
//! trait for [`HostState`](crate::runtime::HostState).

mod alarm;
mod d1;
mod env;
mod fetch;
pub(crate) mod http_types;
mod kv;
mod kv_namespace;
mod log;
mod objects;
mod sql;
mod websocket;

wasmtime::component::bindgen!({
    // The SDK's copy is the only one: guest and host compile the same files.
    path: "../sdk/wit",
    world: "verge:platform/app",
    imports: {
        "verge:platform/d1.query": async,
        "verge:platform/d1.batch": async,
        "verge:platform/d1.exec": async,
        "verge:platform/fetch.fetch": async,
        "verge:platform/objects.fetch": async,
        "verge:platform/objects.rpc": async,
        "verge:platform/kv-namespace": async,
    },
    exports: { default: async },
});

pub(crate) use fetch::{AddressGuard, LOOP_HEADER, LOOP_TOKEN, OutboundHttp};
pub use verge::platform::http_types::{Method, Request, Response};
