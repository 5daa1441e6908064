//! `verge:platform/objects`: reaching Durable Objects through a binding.
//! Calls carry the chain of objects they pass through, so a call that would
//! re-enter one of them fails at once instead of deadlocking.

use std::time::Duration;

use super::verge::platform::objects::{Error, Host};
use super::{Request, Response};
use crate::objects::{Event, ObjectError, ObjectId, ObjectKey, Reply};
use crate::runtime::HostState;

impl HostState {
    /// Notes an overloaded object before the error goes to the guest: if
    /// the request then fails, it fails as a 503 to retry.
    fn noting_overload<T>(&mut self, result: Result<T, ObjectError>) -> Result<T, Error> {
        if matches!(result, Err(ObjectError::Overloaded(_))) {
            self.object_overloaded = true;
        }
        result.map_err(Error::from)
    }
}

impl From<ObjectError> for Error {
    fn from(error: ObjectError) -> Self {
        match error {
            ObjectError::UnknownBinding(binding) => Error::UnknownBinding(binding),
            ObjectError::InvalidId(why) => Error::InvalidId(why),
            ObjectError::Cycle(object) => Error::Cycle(object),
            ObjectError::Timeout => Error::Timeout,
            // The contract has one case for every other failure; its text
            // says which.
            other => Error::Failed(other.to_string()),
        }
    }
}

impl HostState {
    /// The object `id` names in the namespace bound as `binding`.
    fn object_key(&self, binding: &str, id: &str) -> Result<ObjectKey, ObjectError> {
        let worker = self.worker();
        let namespace = worker
            .objects
            .resolve(&worker.name, &worker.config, binding)?;
        Ok(ObjectKey {
            namespace: namespace.id,
            id: ObjectId::parse(id).map_err(ObjectError::InvalidId)?,
        })
    }

    /// Sends an event and waits for its reply, for at most this worker's
    /// wall-clock limit. The returned future borrows nothing from `self`.
    fn call_object(
        &mut self,
        binding: &str,
        id: &str,
        name: Option<String>,
        event: Event,
    ) -> Result<impl Future<Output = Result<Reply, ObjectError>> + Send + 'static, ObjectError>
    {
        let key = self.object_key(binding, id)?;
        self.first_object
            .get_or_insert_with(|| format!("{binding}:{}", name.as_deref().unwrap_or(id)));
        let timeout = Duration::from_millis(self.worker().config.limits.wall_ms);
        let (objects, path) = (self.worker().objects.clone(), self.call_path());
        Ok(async move { objects.call(key, name, event, path, timeout).await })
    }
}

impl Host for HostState {
    fn id_from_name(&mut self, binding: String, name: String) -> Result<String, Error> {
        let worker = self.worker();
        let namespace = worker
            .objects
            .resolve(&worker.name, &worker.config, &binding)?;
        Ok(worker.objects.id_from_name(&namespace, &name).to_string())
    }

    fn new_unique_id(&mut self, binding: String) -> Result<String, Error> {
        let worker = self.worker();
        worker
            .objects
            .resolve(&worker.name, &worker.config, &binding)?;
        Ok(ObjectId::unique().to_string())
    }

    fn id_from_string(&mut self, binding: String, id: String) -> Result<String, Error> {
        Ok(self.object_key(&binding, &id)?.id.to_string())
    }

    async fn fetch(
        &mut self,
        binding: String,
        id: String,
        name: Option<String>,
        request: Request,
    ) -> Result<Response, Error> {
        let call = self.call_object(&binding, &id, name, Event::Fetch(request))?;
        let reply = call.await;
        match self.noting_overload(reply)? {
            Reply::Fetch(response) => Ok(response),
            Reply::Rpc(_) | Reply::Done => Err(Error::Failed(
                "the object answered a fetch with an RPC result".into(),
            )),
        }
    }

    async fn rpc(
        &mut self,
        binding: String,
        id: String,
        name: Option<String>,
        method: String,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let call = self.call_object(&binding, &id, name, Event::Rpc { method, args })?;
        let reply = call.await;
        match self.noting_overload(reply)? {
            Reply::Rpc(bytes) => Ok(bytes),
            Reply::Fetch(_) | Reply::Done => Err(Error::Failed(
                "the object answered an RPC with a response".into(),
            )),
        }
    }
}
