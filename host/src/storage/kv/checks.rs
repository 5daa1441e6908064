//! What a KV namespace accepts: key, value and metadata sizes, and
//! expirations. The guest binding and the admin API both check here, each
//! turning the reason into its own error.

use crate::config::Limits;

/// Cloudflare's limit on a key's metadata, serialized.
const MAX_METADATA_BYTES: usize = 1024;

/// Cloudflare's limit on one page of `list`.
pub(crate) const MAX_LIST_LIMIT: u32 = 1000;

/// How long keys and values may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvLimits {
    pub(crate) key_bytes: usize,
    pub(crate) value_bytes: usize,
}

impl KvLimits {
    /// What a worker with `limits` may store.
    pub(crate) fn of(limits: &Limits) -> Self {
        Self {
            key_bytes: limits.kv_key_bytes as usize,
            value_bytes: limits.kv_value_bytes(),
        }
    }

    /// What a write from outside any worker (the admin API, `verge kv`)
    /// may store: a worker's defaults, so a worker can read it back.
    pub(crate) fn operator() -> Self {
        Self::of(&Limits::default())
    }

    pub(crate) fn check_key(&self, key: &str) -> Result<(), String> {
        if key.is_empty() || key == "." || key == ".." {
            return Err(format!(
                "key {key:?} is not allowed: keys must not be empty, `.` or `..`"
            ));
        }
        if key.len() > self.key_bytes {
            return Err(format!(
                "key of {} bytes is longer than the limit of {} bytes (limits.kv_key_bytes)",
                key.len(),
                self.key_bytes
            ));
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), String> {
        if value.len() > self.value_bytes {
            return Err(format!(
                "value of {} bytes is over the limit of {} MiB (limits.kv_value_mb)",
                value.len(),
                self.value_bytes >> 20
            ));
        }
        Ok(())
    }
}

/// Metadata is JSON of at most 1024 bytes.
pub(crate) fn check_metadata(metadata: Option<&str>) -> Result<(), String> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(format!(
            "metadata of {} bytes is over the limit of {MAX_METADATA_BYTES} bytes",
            metadata.len()
        ));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(metadata)
        .map(drop)
        .map_err(|e| format!("metadata is not JSON: {e}"))
}

/// When a put expires, in Unix seconds, from an absolute `expiration` or
/// a `ttl` in seconds from `now`.
pub(crate) fn expiration(
    expiration: Option<u64>,
    ttl: Option<u64>,
    now: i64,
) -> Result<Option<i64>, String> {
    let seconds = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    match (expiration, ttl) {
        (Some(_), Some(_)) => Err("give expiration or expiration_ttl, not both".into()),
        (Some(at), None) if seconds(at) <= now => Err(format!(
            "expiration {at} is not in the future (now is {now}, in seconds since the Unix epoch)"
        )),
        (Some(at), None) => Ok(Some(seconds(at))),
        (None, Some(0)) => Err("expiration_ttl must be at least 1 second".into()),
        (None, Some(ttl)) => Ok(Some(now.saturating_add(seconds(ttl)))),
        (None, None) => Ok(None),
    }
}

/// A list page size, 1000 when none is given.
pub(crate) fn list_limit(limit: Option<u32>) -> Result<u32, String> {
    let limit = limit.unwrap_or(MAX_LIST_LIMIT);
    if (1..=MAX_LIST_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(format!(
            "list limit {limit} is out of range (1 to {MAX_LIST_LIMIT})"
        ))
    }
}
