//! Object ids: 32 bytes, written as 64 hexadecimal characters.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One object's id within its namespace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// The id for `name` in `namespace`: an HMAC-SHA256 under the host's
    /// secret key, so the same name always reaches the same object, and
    /// nobody without the key can tell which names exist from the ids.
    pub fn from_name(key: &[u8], namespace: &str, name: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(namespace.as_bytes());
        mac.update(&[0]);
        mac.update(name.as_bytes());
        Self(mac.finalize().into_bytes().into())
    }

    /// The id made of these 32 bytes: for keys the host derives itself
    /// (a D1 database's, in a cluster).
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// 256 random bits.
    pub fn unique() -> Self {
        Self(rand::random())
    }

    /// Parses 64 hexadecimal characters (either case).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        if text.len() != 64 || hex::decode_to_slice(text, &mut bytes).is_err() {
            return Err(format!(
                "{text:?} is not an object id: expected 64 hexadecimal characters"
            ));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

/// An object, host-wide: its namespace and its id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ObjectKey {
    pub namespace: Arc<str>,
    pub id: ObjectId,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.id)
    }
}

#[cfg(test)]
impl ObjectKey {
    /// Object `n` of a test namespace.
    pub(crate) fn numbered(n: u8) -> Self {
        Self {
            namespace: Arc::from("ns"),
            id: ObjectId([n; 32]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_stable_distinct_ids() {
        let key = [7u8; 32];
        let a = ObjectId::from_name(&key, "ns", "alice");
        assert_eq!(a, ObjectId::from_name(&key, "ns", "alice"));
        assert_ne!(a, ObjectId::from_name(&key, "ns", "bob"));
        assert_ne!(a, ObjectId::from_name(&key, "other", "alice"));
        assert_ne!(a, ObjectId::from_name(&[8u8; 32], "ns", "alice"));
        assert_eq!(ObjectId::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn parsing_rejects_anything_but_64_hex_characters() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert!(ObjectId::parse(bad).is_err(), "{bad}");
        }
        assert!(ObjectId::parse(&"AB".repeat(32)).is_ok());
        assert_ne!(ObjectId::unique(), ObjectId::unique());
    }
}
