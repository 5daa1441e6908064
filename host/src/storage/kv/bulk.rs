//! Many writes or deletes at once, in the JSON that `wrangler kv bulk`
//! and Cloudflare's API take: an array of `{"key", "value", "expiration",
//! "expiration_ttl", "metadata", "base64"}` to write, an array of keys to
//! delete. All are checked before any is applied.

use base64::Engine as _;
use serde::Deserialize;

use super::checks::{self, KvLimits};
use super::namespace::OwnedPut;

/// Cloudflare's limit on one bulk request.
const MAX_PAIRS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pair {
    key: String,
    value: String,
    #[serde(default)]
    expiration: Option<u64>,
    #[serde(default)]
    expiration_ttl: Option<u64>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    /// `value` is base64 of the bytes to store.
    #[serde(default)]
    base64: bool,
}

/// The writes `json` asks for, each checked against `limits` at `now`.
pub(crate) fn puts(json: &[u8], limits: KvLimits, now: i64) -> Result<Vec<OwnedPut>, String> {
    let pairs: Vec<Pair> =
        serde_json::from_slice(json).map_err(|e| format!("not a bulk write: {e}"))?;
    check_count(pairs.len())?;
    pairs
        .into_iter()
        .enumerate()
        .map(|(n, pair)| {
            let at = |why: String| format!("entry {n} ({:?}): {why}", pair.key);
            limits.check_key(&pair.key).map_err(at)?;
            let value = if pair.base64 {
                base64::engine::general_purpose::STANDARD
                    .decode(&pair.value)
                    .map_err(|e| at(format!("value is not base64: {e}")))?
            } else {
                pair.value.clone().into_bytes()
            };
            limits.check_value(&value).map_err(at)?;
            let metadata = pair.metadata.as_ref().map(|m| m.to_string());
            checks::check_metadata(metadata.as_deref()).map_err(at)?;
            let expiration =
                checks::expiration(pair.expiration, pair.expiration_ttl, now).map_err(at)?;
            Ok(OwnedPut {
                key: pair.key,
                value,
                metadata,
                expiration,
            })
        })
        .collect()
}

/// The keys `json`, an array of them, asks to delete.
pub(crate) fn deletes(json: &[u8], limits: KvLimits) -> Result<Vec<String>, String> {
    let keys: Vec<String> =
        serde_json::from_slice(json).map_err(|e| format!("not a list of keys: {e}"))?;
    check_count(keys.len())?;
    for key in &keys {
        limits.check_key(key)?;
    }
    Ok(keys)
}

fn check_count(count: usize) -> Result<(), String> {
    if count > MAX_PAIRS {
        return Err(format!(
            "{count} entries is more than one bulk request takes ({MAX_PAIRS})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> KvLimits {
        KvLimits {
            key_bytes: 512,
            value_bytes: 1024,
        }
    }

    #[test]
    fn parses_text_base64_metadata_and_ttls() {
        let json = br#"[
            {"key": "a", "value": "text"},
            {"key": "b", "value": "AAH/", "base64": true, "expiration_ttl": 60, "metadata": {"v": 1}}
        ]"#;
        let puts = puts(json, limits(), 1000).unwrap();
        assert_eq!(puts[0].as_put().value, b"text");
        let b = puts[1].as_put();
        assert_eq!(b.value, [0, 1, 255]);
        assert_eq!(b.expiration, Some(1060));
        assert_eq!(b.metadata, Some(r#"{"v":1}"#));
    }

    #[test]
    fn one_bad_entry_refuses_the_whole_request_and_names_it() {
        let json = br#"[{"key": "fine", "value": "x"}, {"key": "", "value": "x"}]"#;
        let error = puts(json, limits(), 0).err().unwrap();
        assert!(error.starts_with("entry 1"), "{error}");
        let big = format!(r#"[{{"key": "k", "value": "{}"}}]"#, "x".repeat(1025));
        assert!(puts(big.as_bytes(), limits(), 0).is_err());
        assert!(deletes(br#"["a", ""]"#, limits()).is_err());
        assert_eq!(deletes(br#"["a", "b"]"#, limits()).unwrap(), ["a", "b"]);
    }
}
