//! The imports Verge offers guests, and the check that a component needs
//! nothing else.

use anyhow::Result;
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, LinkerInstance, ResourceType};

use crate::bindings::App;
use crate::bindings::exports::verge::platform::{handler, object, object_events, scheduled};

use super::HostState;

/// Why an uploaded component cannot run as a worker.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "the component imports what Verge does not provide: {}. \
         Verge provides verge:platform@0.1.0 and WASI 0.2 (cli, clocks, io, random, filesystem, sockets)",
        .0.join(", ")
    )]
    UnsatisfiedImports(Vec<String>),
    #[error(
        "the component exports neither a fetch handler (verge:platform/handler) nor \
         Durable Object classes (verge:platform/object): build it with the verge SDK and \
         mark a function #[verge::worker] or an impl #[verge::durable_object]"
    )]
    NotAWorker,
    #[error("the component's imports do not match what Verge provides: {0}")]
    Mismatch(String),
}

/// A linker with WASI 0.2 and every `verge:platform` interface.
pub fn new_linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    App::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    Ok(linker)
}

/// A component linked against the host, and the entry points it exports.
pub struct Prepared {
    pub pre: InstancePre<HostState>,
    pub handler: Option<handler::GuestIndices>,
    pub object: Option<object::GuestIndices>,
    pub events: Option<object_events::GuestIndices>,
    pub scheduled: Option<scheduled::GuestIndices>,
}

/// Resolves a component's imports against `linker` and finds its exports,
/// naming every unsatisfied import when some are missing.
pub fn prepare(linker: &Linker<HostState>, component: &Component) -> Result<Prepared, LinkError> {
    let missing = unsatisfied_imports(linker, component);
    if !missing.is_empty() {
        return Err(LinkError::UnsatisfiedImports(missing));
    }
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| LinkError::Mismatch(format!("{e:#}")))?;
    let handler = handler::GuestIndices::new(&pre).ok();
    let object = object::GuestIndices::new(&pre).ok();
    let events = object_events::GuestIndices::new(&pre).ok();
    let scheduled = scheduled::GuestIndices::new(&pre).ok();
    if handler.is_none() && object.is_none() {
        return Err(LinkError::NotAWorker);
    }
    Ok(Prepared {
        pre,
        handler,
        object,
        events,
        scheduled,
    })
}

/// Every import of `component` that `linker` cannot satisfy, each with the
/// reason.
///
/// wasmtime's type check stops at the first failing import. To name them
/// all, each failing import is stubbed out on a scratch copy of the linker
/// (as `define_unknown_imports_as_traps` would) and the check runs again,
/// so the answer follows wasmtime's own resolution rules, semver matching
/// included.
fn unsatisfied_imports(linker: &Linker<HostState>, component: &Component) -> Vec<String> {
    let engine = component.engine();
    let component_type = component.component_type();
    let imports: Vec<(&str, ComponentItem)> = component_type
        .imports(engine)
        .map(|(name, item)| (name, item.ty))
        .collect();
    let mut scratch = linker.clone();
    scratch.allow_shadowing(true);
    let mut unsatisfied = Vec::new();
    for _ in 0..imports.len() {
        let Err(error) = scratch.instantiate_pre(component) else {
            break;
        };
        let failing = error.to_string();
        let Some((name, item)) = imports
            .iter()
            .find(|(name, _)| failing.contains(&format!("`{name}`")))
        else {
            break;
        };
        let reason = error.root_cause().to_string();
        unsatisfied.push(
            if reason.contains("not found") || reason.contains("not defined") {
                name.to_string()
            } else {
                format!("{name} ({reason})")
            },
        );
        if stub(&mut scratch.root(), engine, name, item).is_err() {
            break;
        }
    }
    unsatisfied
}

/// Defines `name` with placeholder functions and resources of the right
/// shape, so the type check moves on to the next import.
fn stub(
    linker: &mut LinkerInstance<'_, HostState>,
    engine: &Engine,
    name: &str,
    item: &ComponentItem,
) -> wasmtime::Result<()> {
    match item {
        ComponentItem::ComponentFunc(_) => linker.func_new(name, |_, _, _, _| Ok(())),
        ComponentItem::Resource(_) => {
            linker.resource(name, ResourceType::host::<()>(), |_, _| Ok(()))
        }
        ComponentItem::ComponentInstance(instance) => {
            let mut inner = linker.instance(name)?;
            for (export, item) in instance.exports(engine) {
                stub(&mut inner, engine, export, &item.ty)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
