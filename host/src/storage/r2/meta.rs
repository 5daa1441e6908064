//! An object's metadata and the conditions (`onlyIf`) checked against it.

use serde::{Deserialize, Serialize};

use super::{R2Error, R2Result};

/// The most metadata (HTTP and custom, names and values) one object may
/// carry, as R2 allows.
pub(crate) const MAX_METADATA_BYTES: usize = 8 << 10;

/// The headers an object is served with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct HttpMetadata {
    pub(crate) content_type: Option<String>,
    pub(crate) content_language: Option<String>,
    pub(crate) content_disposition: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) cache_control: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub(crate) cache_expiry: Option<u64>,
}

impl HttpMetadata {
    fn text_bytes(&self) -> usize {
        [
            &self.content_type,
            &self.content_language,
            &self.content_disposition,
            &self.content_encoding,
            &self.cache_control,
        ]
        .into_iter()
        .flatten()
        .map(String::len)
        .sum()
    }
}

/// What an object is written with besides its body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct WriteMetadata {
    pub(crate) http: HttpMetadata,
    pub(crate) custom: Vec<(String, String)>,
}

impl WriteMetadata {
    /// Refuses metadata past [`MAX_METADATA_BYTES`] or with duplicate
    /// custom names.
    pub(crate) fn check(&self) -> R2Result<()> {
        let custom: usize = self.custom.iter().map(|(k, v)| k.len() + v.len()).sum();
        let total = custom + self.http.text_bytes();
        if total > MAX_METADATA_BYTES {
            return Err(R2Error::TooLarge(format!(
                "{total} bytes of metadata, more than the {MAX_METADATA_BYTES} an object may carry"
            )));
        }
        let mut names: Vec<&str> = self.custom.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(R2Error::InvalidArgument(format!(
                "custom metadata names {:?} twice",
                pair[0]
            )));
        }
        Ok(())
    }
}

/// A stored object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ObjectMeta {
    pub(crate) key: String,
    /// A fresh id per write; also names the blob holding the body.
    pub(crate) version: String,
    pub(crate) size: u64,
    pub(crate) etag: String,
    /// Milliseconds since the Unix epoch.
    pub(crate) uploaded: u64,
    #[serde(flatten)]
    pub(crate) metadata: WriteMetadata,
}

/// Conditions an operation runs under (R2's `onlyIf`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct Conditional {
    pub(crate) etag_matches: Option<String>,
    pub(crate) etag_does_not_match: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub(crate) uploaded_before: Option<u64>,
    pub(crate) uploaded_after: Option<u64>,
}

impl Conditional {
    /// Whether the conditions hold for `object` (`None`: no object under
    /// the key, which only an `etag_matches` condition fails on, as for
    /// HTTP's `If-Match`).
    pub(crate) fn holds(&self, object: Option<&ObjectMeta>) -> bool {
        let Some(object) = object else {
            return self.etag_matches.is_none();
        };
        self.etag_matches
            .as_deref()
            .is_none_or(|list| etag_listed(list, &object.etag))
            && self
                .etag_does_not_match
                .as_deref()
                .is_none_or(|list| !etag_listed(list, &object.etag))
            && self.uploaded_before.is_none_or(|t| object.uploaded < t)
            && self.uploaded_after.is_none_or(|t| object.uploaded > t)
    }
}

/// Whether `etag` is in `list`: etags separated by commas, quoted or not,
/// weak (`W/`) or not, or `*` for any.
fn etag_listed(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|entry| {
        let entry = entry.strip_prefix("W/").unwrap_or(entry);
        entry == "*" || entry.trim_matches('"') == etag
    })
}

/// The part of an object a `get` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// From `offset`, `length` bytes or to the end.
    Offset { offset: u64, length: Option<u64> },
    /// The last this many bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The bytes this range covers of an object of `size` bytes, as
    /// `start..end`; a range starting past the end is refused.
    pub(crate) fn resolve(self, size: u64) -> R2Result<std::ops::Range<u64>> {
        match self {
            Self::Suffix(n) => Ok(size.saturating_sub(n)..size),
            Self::Offset { offset, length } => {
                if offset > size || (offset == size && size > 0) {
                    return Err(R2Error::InvalidArgument(format!(
                        "range starts at byte {offset} of a {size}-byte object"
                    )));
                }
                let end = length.map_or(size, |len| offset.saturating_add(len).min(size));
                Ok(offset..end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(etag: &str, uploaded: u64) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            version: "v".into(),
            size: 1,
            etag: etag.into(),
            uploaded,
            metadata: WriteMetadata::default(),
        }
    }

    #[test]
    fn conditions_follow_http_semantics() {
        let o = object("abc", 100);
        let matches = |list: &str| Conditional {
            etag_matches: Some(list.into()),
            ..Default::default()
        };
        assert!(matches("\"abc\"").holds(Some(&o)));
        assert!(matches("x, W/\"abc\"").holds(Some(&o)));
        assert!(matches("*").holds(Some(&o)));
        assert!(!matches("abd").holds(Some(&o)));
        assert!(!matches("*").holds(None));
        let not = Conditional {
            etag_does_not_match: Some("abc".into()),
            ..Default::default()
        };
        assert!(!not.holds(Some(&o)));
        assert!(not.holds(None));
        let before = Conditional {
            uploaded_before: Some(100),
            ..Default::default()
        };
        assert!(!before.holds(Some(&o)));
        let after = Conditional {
            uploaded_after: Some(99),
            ..Default::default()
        };
        assert!(after.holds(Some(&o)));
    }

    #[test]
    fn ranges_clamp_to_the_object() {
        let r = |offset, length| ByteRange::Offset { offset, length };
        assert_eq!(r(2, Some(3)).resolve(10).unwrap(), 2..5);
        assert_eq!(r(8, Some(30)).resolve(10).unwrap(), 8..10);
        assert_eq!(r(0, None).resolve(0).unwrap(), 0..0);
        assert!(r(10, None).resolve(10).is_err());
        assert_eq!(ByteRange::Suffix(4).resolve(10).unwrap(), 6..10);
        assert_eq!(ByteRange::Suffix(40).resolve(10).unwrap(), 0..10);
    }

    #[test]
    fn metadata_is_bounded() {
        let big = WriteMetadata {
            custom: vec![("a".into(), "x".repeat(MAX_METADATA_BYTES))],
            ..Default::default()
        };
        assert!(matches!(big.check(), Err(R2Error::TooLarge(_))));
        let twice = WriteMetadata {
            custom: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            ..Default::default()
        };
        assert!(matches!(twice.check(), Err(R2Error::InvalidArgument(_))));
    }
}
