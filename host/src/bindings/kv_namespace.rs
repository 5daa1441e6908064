//! `verge:platform/kv-namespace`: the worker's KV namespace bindings. Keys,
//! values and options are checked against the worker's limits; the
//! namespace itself is a SQLite file of the host or, in a cluster, rows in
//! the cluster's database (`storage::kv`).

use super::verge::platform::kv_namespace::{
    Entry, Error, Host, KeyInfo, ListOptions, ListResult, PutOptions,
};
use crate::clock::unix_now;
use crate::runtime::HostState;
use crate::storage::kv::{self, KvLimits, KvNamespace, OwnedPut, checks};

impl HostState {
    /// The namespace bound as `binding`, opened if it was not. The future
    /// borrows nothing from `self`.
    fn kv_namespace(
        &self,
        binding: &str,
    ) -> Result<impl Future<Output = Result<KvNamespace, Error>> + Send + 'static, Error> {
        let worker = self.worker();
        let Some(bound) = worker
            .config
            .kv_namespaces
            .iter()
            .find(|kv| kv.binding == binding)
        else {
            return Err(Error::UnknownBinding(binding.to_owned()));
        };
        let (namespaces, id) = (worker.kv.clone(), bound.namespace());
        Ok(async move { namespaces.namespace(&id).await.map_err(storage) })
    }

    fn kv_limits(&self) -> KvLimits {
        KvLimits::of(&self.worker().config.limits)
    }
}

/// A storage failure: logged in full on the host, told to the guest.
fn storage(error: anyhow::Error) -> Error {
    tracing::error!("KV namespace: {error:#}");
    Error::Storage(format!("{error:#}"))
}

impl Host for HostState {
    async fn get(&mut self, binding: String, key: String) -> Result<Option<Entry>, Error> {
        self.kv_limits().check_key(&key).map_err(Error::Invalid)?;
        let namespace = self.kv_namespace(&binding)?.await?;
        let entry = namespace.get(key, unix_now()).await.map_err(storage)?;
        Ok(entry.map(|e| Entry {
            value: e.value,
            metadata: e.metadata,
            expiration: e.expiration.map(|at| at as u64),
        }))
    }

    async fn put(
        &mut self,
        binding: String,
        key: String,
        value: Vec<u8>,
        options: PutOptions,
    ) -> Result<(), Error> {
        let limits = self.kv_limits();
        limits.check_key(&key).map_err(Error::Invalid)?;
        limits.check_value(&value).map_err(Error::Invalid)?;
        checks::check_metadata(options.metadata.as_deref()).map_err(Error::Invalid)?;
        let now = unix_now();
        let expiration = checks::expiration(options.expiration, options.expiration_ttl, now)
            .map_err(Error::Invalid)?;
        let namespace = self.kv_namespace(&binding)?.await?;
        let put = OwnedPut {
            key,
            value,
            metadata: options.metadata,
            expiration,
        };
        namespace.put(vec![put], now).await.map_err(storage)
    }

    async fn delete(&mut self, binding: String, key: String) -> Result<(), Error> {
        self.kv_limits().check_key(&key).map_err(Error::Invalid)?;
        let namespace = self.kv_namespace(&binding)?.await?;
        namespace.delete(vec![key]).await.map_err(storage)
    }

    async fn list(&mut self, binding: String, options: ListOptions) -> Result<ListResult, Error> {
        let limit = checks::list_limit(options.limit).map_err(Error::Invalid)?;
        let namespace = self.kv_namespace(&binding)?.await?;
        let prefix = options.prefix.unwrap_or_default();
        let cursor = options.cursor;
        let listing = namespace
            .list(prefix, cursor, limit, unix_now())
            .await
            .map_err(storage)?
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(ListResult {
            list_complete: listing.cursor.is_none(),
            cursor: listing.cursor,
            keys: listing.keys.into_iter().map(key_info).collect(),
        })
    }
}

fn key_info(key: kv::KeyInfo) -> KeyInfo {
    KeyInfo {
        name: key.name,
        expiration: key.expiration.map(|at| at as u64),
        metadata: key.metadata,
    }
}
