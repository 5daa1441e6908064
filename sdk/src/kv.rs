//! KV namespaces: key-value stores on the host, shared by every worker
//! bound to the same namespace, for configuration, feature flags and
//! cached values.
//!
//! ```no_run
//! # fn handler(env: verge::Env) -> verge::Result<()> {
//! let kv = env.kv("CONFIG")?;
//! kv.put("greeting", "hello")?.expiration_ttl(3600).execute()?;
//! let greeting: Option<String> = kv.get("greeting").text()?;
//! # Ok(()) }
//! ```
//!
//! Unlike a Durable Object's storage, a KV write belongs to no
//! transaction: it is durable when `execute` returns, and every later read
//! on the host sees it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::verge::platform::kv_namespace as host;
use crate::{Env, Error, Result};

/// Why a KV call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// No `[[kv_namespaces]]` entry with this binding name.
    #[error("no KV namespace bound as `{0}`")]
    UnknownBinding(String),
    /// A key, value, metadata or option the host refused: too long, empty,
    /// an expiration in the past. The message says which limit.
    #[error("{0}")]
    Invalid(String),
    /// The namespace could not be read or written.
    #[error("KV storage failed: {0}")]
    Storage(String),
}

impl From<host::Error> for Error {
    fn from(error: host::Error) -> Self {
        Error::Kv(match error {
            host::Error::UnknownBinding(binding) => KvError::UnknownBinding(binding),
            host::Error::Invalid(why) => KvError::Invalid(why),
            host::Error::Storage(why) => KvError::Storage(why),
        })
    }
}

impl Env {
    /// The KV namespace bound as `binding` in verge.toml's
    /// `[[kv_namespaces]]`. An unknown binding shows up as
    /// [`KvError::UnknownBinding`] on first use.
    pub fn kv(&self, binding: &str) -> Result<KvStore> {
        Ok(KvStore {
            binding: binding.to_owned(),
        })
    }
}

/// A KV namespace, reached through its binding.
#[derive(Debug, Clone)]
pub struct KvStore {
    binding: String,
}

impl KvStore {
    /// Starts reading `key`: finish with [`GetBuilder::text`],
    /// [`json`](GetBuilder::json) or [`bytes`](GetBuilder::bytes), or
    /// their `_with_metadata` forms.
    pub fn get(&self, key: &str) -> GetBuilder {
        GetBuilder {
            binding: self.binding.clone(),
            key: key.to_owned(),
        }
    }

    /// Starts writing `value` (text or bytes) under `key`: set options on
    /// the builder, then [`execute`](PutBuilder::execute) it.
    pub fn put(&self, key: &str, value: impl AsRef<[u8]>) -> Result<PutBuilder> {
        Ok(self.builder(key, value.as_ref().to_vec()))
    }

    /// Like [`put`](Self::put), with `value` stored as JSON.
    pub fn put_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<PutBuilder> {
        Ok(self.builder(key, serde_json::to_vec(value)?))
    }

    fn builder(&self, key: &str, value: Vec<u8>) -> PutBuilder {
        PutBuilder {
            binding: self.binding.clone(),
            key: key.to_owned(),
            value,
            options: host::PutOptions {
                expiration: None,
                expiration_ttl: None,
                metadata: None,
            },
        }
    }

    /// Removes `key`. Removing a key that does not exist is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        Ok(host::delete(&self.binding, key)?)
    }

    /// Starts listing keys: set options on the builder, then
    /// [`execute`](ListBuilder::execute) it.
    pub fn list(&self) -> ListBuilder {
        ListBuilder {
            binding: self.binding.clone(),
            options: host::ListOptions {
                prefix: None,
                limit: None,
                cursor: None,
            },
        }
    }
}

/// A read of one key; see [`KvStore::get`].
#[derive(Debug)]
pub struct GetBuilder {
    binding: String,
    key: String,
}

impl GetBuilder {
    fn entry(&self) -> Result<Option<host::Entry>> {
        Ok(host::get(&self.binding, &self.key)?)
    }

    /// The value as bytes, or `None` when the key does not exist or has
    /// expired.
    pub fn bytes(self) -> Result<Option<Vec<u8>>> {
        Ok(self.entry()?.map(|e| e.value))
    }

    /// The value as text.
    pub fn text(self) -> Result<Option<String>> {
        self.entry()?.map(|e| text(e.value)).transpose()
    }

    /// The value, stored as JSON, as a `T`.
    pub fn json<T: DeserializeOwned>(self) -> Result<Option<T>> {
        self.entry()?
            .map(|e| Ok(serde_json::from_slice(&e.value)?))
            .transpose()
    }

    /// The value as bytes, with the metadata stored beside it.
    pub fn bytes_with_metadata<M: DeserializeOwned>(self) -> Result<(Option<Vec<u8>>, Option<M>)> {
        self.with_metadata(Ok)
    }

    /// The value as text, with the metadata stored beside it.
    pub fn text_with_metadata<M: DeserializeOwned>(self) -> Result<(Option<String>, Option<M>)> {
        self.with_metadata(text)
    }

    /// The value as a `T`, with the metadata stored beside it.
    pub fn json_with_metadata<T: DeserializeOwned, M: DeserializeOwned>(
        self,
    ) -> Result<(Option<T>, Option<M>)> {
        self.with_metadata(|value| Ok(serde_json::from_slice(&value)?))
    }

    fn with_metadata<T, M: DeserializeOwned>(
        self,
        decode: impl FnOnce(Vec<u8>) -> Result<T>,
    ) -> Result<(Option<T>, Option<M>)> {
        let Some(entry) = self.entry()? else {
            return Ok((None, None));
        };
        Ok((Some(decode(entry.value)?), metadata(entry.metadata)?))
    }
}

fn text(value: Vec<u8>) -> Result<String> {
    String::from_utf8(value).map_err(|_| Error::msg("the KV value is not UTF-8 text"))
}

fn metadata<M: DeserializeOwned>(metadata: Option<String>) -> Result<Option<M>> {
    metadata.map(|m| Ok(serde_json::from_str(&m)?)).transpose()
}

/// A write of one key; see [`KvStore::put`].
#[derive(Debug)]
pub struct PutBuilder {
    binding: String,
    key: String,
    value: Vec<u8>,
    options: host::PutOptions,
}

impl PutBuilder {
    /// Expire the key at `seconds` since the Unix epoch.
    pub fn expiration(mut self, seconds: u64) -> Self {
        self.options.expiration = Some(seconds);
        self
    }

    /// Expire the key `seconds` from now.
    pub fn expiration_ttl(mut self, seconds: u64) -> Self {
        self.options.expiration_ttl = Some(seconds);
        self
    }

    /// Stores `metadata` (at most 1024 bytes as JSON) with the key;
    /// `get` and `list` return it.
    pub fn metadata<M: Serialize + ?Sized>(mut self, metadata: &M) -> Result<Self> {
        self.options.metadata = Some(serde_json::to_string(metadata)?);
        Ok(self)
    }

    /// Writes the key; it is durable when this returns.
    pub fn execute(self) -> Result<()> {
        Ok(host::put(
            &self.binding,
            &self.key,
            &self.value,
            &self.options,
        )?)
    }
}

/// A listing of keys; see [`KvStore::list`].
#[derive(Debug)]
pub struct ListBuilder {
    binding: String,
    options: host::ListOptions,
}

impl ListBuilder {
    /// Only keys that start with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.options.prefix = Some(prefix.into());
        self
    }

    /// At most `limit` keys (1 to 1000; 1000 by default).
    pub fn limit(mut self, limit: u32) -> Self {
        self.options.limit = Some(limit);
        self
    }

    /// Continues where the page that returned `cursor` ended.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.options.cursor = Some(cursor.into());
        self
    }

    /// One page of keys, in lexicographic order of their UTF-8 bytes.
    pub fn execute(self) -> Result<ListResponse> {
        let page = host::list(&self.binding, &self.options)?;
        let keys = page
            .keys
            .into_iter()
            .map(|key| {
                Ok(Key {
                    name: key.name,
                    expiration: key.expiration,
                    metadata: metadata(key.metadata)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ListResponse {
            keys,
            list_complete: page.list_complete,
            cursor: page.cursor,
        })
    }
}

/// One page of a [`KvStore::list`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListResponse {
    /// The keys of this page.
    pub keys: Vec<Key>,
    /// Whether no keys follow.
    pub list_complete: bool,
    /// Pass to [`ListBuilder::cursor`] for the next page.
    pub cursor: Option<String>,
}

/// A key in a [`ListResponse`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Key {
    /// The key.
    pub name: String,
    /// When it expires, in seconds since the Unix epoch.
    pub expiration: Option<u64>,
    /// The metadata stored with it.
    pub metadata: Option<serde_json::Value>,
}
