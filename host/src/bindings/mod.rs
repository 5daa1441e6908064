//! Host side of the `verge:platform` WIT contract: one module per imported
//! interface, each implementing exactly that interface's generated `Host`
//! trait for [`HostState`](crate::runtime::HostState).

mod env;
mod fetch;
pub(crate) mod http_types;
mod log;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "verge:platform/worker",
    imports: {
        "verge:platform/fetch.fetch": async,
    },
    exports: { default: async },
});

pub use fetch::OutboundHttp;
pub use verge::platform::http_types::{Method, Request, Response};
