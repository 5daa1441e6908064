use crate::__private::bindings::verge::platform::env as host;
use crate::{Error, ObjectNamespace, Result};

/// The worker's environment: `[vars]` from verge.toml and secrets.
///
/// Secrets are set with `verge secret put` (or `.dev.vars` under
/// `verge dev`) and never appear in verge.toml.
///
/// ```no_run
/// # fn handler(env: verge::Env) -> verge::Result<()> {
/// let region = env.var("REGION")?;
/// let api_key = env.secret("API_KEY")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Env {
    _private: (),
}

impl Env {
    pub(crate) fn new() -> Self {
        Self { _private: () }
    }

    /// The variable `name` from `[vars]`, or [`Error::MissingBinding`].
    pub fn var(&self, name: &str) -> Result<String> {
        host::var(name).ok_or_else(|| Error::MissingBinding(name.to_owned()))
    }

    /// The Durable Object namespace bound as `binding` in verge.toml's
    /// `[[durable_objects.bindings]]`. An unknown binding shows up as
    /// [`ObjectError::UnknownBinding`](crate::ObjectError::UnknownBinding)
    /// on first use.
    pub fn durable_object(&self, binding: &str) -> Result<ObjectNamespace> {
        Ok(ObjectNamespace::new(binding))
    }

    /// The secret `name`, or [`Error::MissingBinding`].
    pub fn secret(&self, name: &str) -> Result<String> {
        host::secret(name).ok_or_else(|| Error::MissingBinding(name.to_owned()))
    }
}
