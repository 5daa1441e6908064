//! Durable Objects from the inside (an object's [`State`]) and from the
//! outside (namespaces, ids and stubs).

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::verge::platform::objects as host;
use crate::__private::{request_to_wire, response_from_wire};
use crate::{Error, Request, Response, Result, Storage};

/// What an object knows about itself, given to its constructor.
#[derive(Debug, Clone)]
pub struct State {
    id: String,
    name: Option<String>,
}

impl State {
    pub(crate) fn new(id: String, name: Option<String>) -> Self {
        Self { id, name }
    }

    /// The object's id: 64 hexadecimal characters.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name the object was reached by, when it was reached by name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The object's storage.
    pub fn storage(&self) -> Storage {
        Storage::new()
    }
}

/// Why a call to an object failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// No `[[durable_objects.bindings]]` entry with this name.
    #[error("no Durable Object binding named `{0}`")]
    UnknownBinding(String),
    /// The text is not an object id.
    #[error("{0}")]
    InvalidId(String),
    /// The call would re-enter an object already waiting on this call chain
    /// (A calls B calls A): it fails at once rather than deadlock.
    #[error("call cycle: {0}")]
    Cycle(String),
    /// The object did not answer within the caller's wall-clock limit.
    #[error("the object did not answer in time")]
    Timeout,
    /// The object failed: it returned an error, trapped, or could not
    /// commit its writes.
    #[error("the object failed: {0}")]
    Failed(String),
}

impl From<host::Error> for Error {
    fn from(error: host::Error) -> Self {
        Error::Object(match error {
            host::Error::UnknownBinding(b) => ObjectError::UnknownBinding(b),
            host::Error::InvalidId(why) => ObjectError::InvalidId(why),
            host::Error::Cycle(object) => ObjectError::Cycle(object),
            host::Error::Timeout => ObjectError::Timeout,
            host::Error::Failed(why) => ObjectError::Failed(why),
        })
    }
}

/// A namespace of objects: one class, reached through a binding from
/// `[[durable_objects.bindings]]` in verge.toml.
///
/// ```no_run
/// # fn demo(env: verge::Env, req: verge::Request) -> verge::Result<verge::Response> {
/// let counters = env.durable_object("COUNTER")?;
/// let stub = counters.get_by_name("page:/home")?;
/// stub.fetch(req)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ObjectNamespace {
    binding: String,
}

impl ObjectNamespace {
    pub(crate) fn new(binding: &str) -> Self {
        Self {
            binding: binding.to_owned(),
        }
    }

    /// The id for `name`: the same name always reaches the same object.
    pub fn id_from_name(&self, name: &str) -> Result<ObjectId> {
        Ok(ObjectId {
            binding: self.binding.clone(),
            hex: host::id_from_name(&self.binding, name)?,
            name: Some(name.to_owned()),
        })
    }

    /// A new random id, for an object nothing else will find by name.
    pub fn unique_id(&self) -> Result<ObjectId> {
        Ok(ObjectId {
            binding: self.binding.clone(),
            hex: host::new_unique_id(&self.binding)?,
            name: None,
        })
    }

    /// An id received as text (from a URL, a database): 64 hexadecimal
    /// characters, or [`ObjectError::InvalidId`].
    pub fn id_from_string(&self, id: &str) -> Result<ObjectId> {
        Ok(ObjectId {
            binding: self.binding.clone(),
            hex: host::id_from_string(&self.binding, id)?,
            name: None,
        })
    }

    /// Shorthand for `id_from_name(name)?.get_stub()`.
    pub fn get_by_name(&self, name: &str) -> Result<Stub> {
        Ok(self.id_from_name(name)?.get_stub())
    }
}

/// An object's id within its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectId {
    binding: String,
    hex: String,
    name: Option<String>,
}

impl ObjectId {
    /// A stub to send the object requests and RPC calls.
    pub fn get_stub(&self) -> Stub {
        Stub { id: self.clone() }
    }

    /// The name this id was made from, if it was.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex)
    }
}

/// A way to reach one object. Calls block until the object answers; calls
/// through one stub arrive in the order they are made.
#[derive(Debug, Clone)]
pub struct Stub {
    id: ObjectId,
}

impl Stub {
    /// Sends `request` to the object's `fetch`.
    pub fn fetch(&self, request: Request) -> Result<Response> {
        let id = &self.id;
        let response = host::fetch(
            &id.binding,
            &id.hex,
            id.name.as_deref(),
            &request_to_wire(request),
        )?;
        Ok(response_from_wire(response))
    }

    /// The typed client of class `C`, whose methods are `C`'s `#[rpc]`
    /// methods.
    ///
    /// ```no_run
    /// # use verge::{DurableObjectClass, Stub};
    /// # fn demo<Counter: DurableObjectClass>(stub: Stub) {
    /// let counter = stub.typed::<Counter>();
    /// # }
    /// ```
    pub fn typed<C: DurableObjectClass>(self) -> C::Client {
        C::client(self)
    }

    /// Calls RPC method `method` with `args` (a tuple of the parameters).
    /// Generated clients call this; prefer them.
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        let id = &self.id;
        let bytes = host::rpc(
            &id.binding,
            &id.hex,
            id.name.as_deref(),
            method,
            &serde_json::to_vec(args)?,
        )?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Rpc(format!("bad result from `{method}`: {e}")))
    }

    /// The id of the object this stub reaches.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }
}

/// Implemented by `#[verge::durable_object]` for each class: ties the class
/// to its generated RPC client.
pub trait DurableObjectClass {
    /// The client whose methods call the class's `#[rpc]` methods.
    type Client;
    /// Wraps a stub in the client.
    fn client(stub: Stub) -> Self::Client;
}
