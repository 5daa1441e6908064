//! `verge:platform/kv-namespace`: the worker's KV namespace bindings. Keys,
//! values and options are checked against the worker's limits here; the
//! SQLite work runs on the blocking pool.

use std::sync::Arc;

use super::verge::platform::kv_namespace::{
    Entry, Error, Host, KeyInfo, ListOptions, ListResult, PutOptions,
};
use crate::clock::unix_now;
use crate::runtime::HostState;
use crate::storage::kv::{self, KvNamespace, Put};

/// Cloudflare's limit on a key's metadata, serialized.
const MAX_METADATA_BYTES: usize = 1024;

/// Cloudflare's limit on one page of `list`.
const MAX_LIST_LIMIT: u32 = 1000;

impl HostState {
    /// The namespace bound as `binding`, opened if it was not. The future
    /// borrows nothing from `self`.
    fn kv_namespace(
        &self,
        binding: &str,
    ) -> Result<impl Future<Output = Result<Arc<KvNamespace>, Error>> + Send + 'static, Error> {
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
        Ok(blocking(move || namespaces.namespace(&id)))
    }

    fn check_key(&self, key: &str) -> Result<(), Error> {
        let limit = self.worker().config.limits.kv_key_bytes as usize;
        if key.is_empty() || key == "." || key == ".." {
            return Err(Error::Invalid(format!(
                "key {key:?} is not allowed: keys must not be empty, `.` or `..`"
            )));
        }
        if key.len() > limit {
            return Err(Error::Invalid(format!(
                "key of {} bytes is longer than the limit of {limit} bytes (limits.kv_key_bytes)",
                key.len()
            )));
        }
        Ok(())
    }
}

/// Runs blocking SQLite work off the async threads, turning a storage
/// failure into the guest's error (and the host's log line).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Error> {
    let result = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow::anyhow!("KV work did not finish: {e}"))
        .and_then(|r| r);
    result.map_err(|error| {
        tracing::error!("KV namespace: {error:#}");
        Error::Storage(format!("{error:#}"))
    })
}

/// When a put's options say the key expires, in Unix seconds.
fn expiration(options: &PutOptions, now: i64) -> Result<Option<i64>, Error> {
    let seconds = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    match (options.expiration, options.expiration_ttl) {
        (Some(_), Some(_)) => Err(Error::Invalid(
            "give expiration or expiration_ttl, not both".into(),
        )),
        (Some(at), None) if seconds(at) <= now => Err(Error::Invalid(format!(
            "expiration {at} is not in the future (now is {now}, in seconds since the Unix epoch)"
        ))),
        (Some(at), None) => Ok(Some(seconds(at))),
        (None, Some(0)) => Err(Error::Invalid(
            "expiration_ttl must be at least 1 second".into(),
        )),
        (None, Some(ttl)) => Ok(Some(now.saturating_add(seconds(ttl)))),
        (None, None) => Ok(None),
    }
}

fn check_metadata(metadata: Option<&str>) -> Result<(), Error> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(Error::Invalid(format!(
            "metadata of {} bytes is over the limit of {MAX_METADATA_BYTES} bytes",
            metadata.len()
        )));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(metadata)
        .map(drop)
        .map_err(|e| Error::Invalid(format!("metadata is not JSON: {e}")))
}

impl Host for HostState {
    async fn get(&mut self, binding: String, key: String) -> Result<Option<Entry>, Error> {
        self.check_key(&key)?;
        let namespace = self.kv_namespace(&binding)?.await?;
        let entry = blocking(move || namespace.get(&key, unix_now())).await?;
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
        self.check_key(&key)?;
        let limit = self.worker().config.limits.kv_value_bytes();
        if value.len() > limit {
            return Err(Error::Invalid(format!(
                "value of {} bytes is over the limit of {} MiB (limits.kv_value_mb)",
                value.len(),
                limit >> 20
            )));
        }
        check_metadata(options.metadata.as_deref())?;
        let now = unix_now();
        let expiration = expiration(&options, now)?;
        let namespace = self.kv_namespace(&binding)?.await?;
        blocking(move || {
            let put = Put {
                key: &key,
                value: &value,
                metadata: options.metadata.as_deref(),
                expiration,
            };
            namespace.put(&put, now)
        })
        .await
    }

    async fn delete(&mut self, binding: String, key: String) -> Result<(), Error> {
        self.check_key(&key)?;
        let namespace = self.kv_namespace(&binding)?.await?;
        blocking(move || namespace.delete(&key)).await
    }

    async fn list(&mut self, binding: String, options: ListOptions) -> Result<ListResult, Error> {
        let limit = options.limit.unwrap_or(MAX_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(Error::Invalid(format!(
                "list limit {limit} is out of range (1 to {MAX_LIST_LIMIT})"
            )));
        }
        let namespace = self.kv_namespace(&binding)?.await?;
        let prefix = options.prefix.unwrap_or_default();
        let cursor = options.cursor;
        let listing =
            blocking(move || namespace.list(&prefix, cursor.as_deref(), limit, unix_now()))
                .await?
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
