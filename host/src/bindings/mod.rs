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
mod r2;
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
        "verge:platform/r2.get": async,
        "verge:platform/r2.head": async,
        "verge:platform/r2.put": async,
        "verge:platform/r2.delete": async,
        "verge:platform/r2.list": async,
        "verge:platform/r2.create-multipart-upload": async,
        "verge:platform/r2.upload-part": async,
        "verge:platform/r2.complete-multipart-upload": async,
        "verge:platform/r2.abort-multipart-upload": async,
        "verge:platform/r2.[method]object-body.read": async,
    },
    with: {
        "verge:platform/r2.object-body": crate::storage::r2::ObjectBody,
    },
    exports: { default: async },
});

pub(crate) use fetch::{AddressGuard, LOOP_HEADER, LOOP_TOKEN, OutboundHttp};
pub use verge::platform::http_types::{Method, Request, Response};
