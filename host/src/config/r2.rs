//! `[[r2_buckets]]`: the R2 buckets a worker is bound to, as wrangler.toml
//! writes them.
//!
//! ```toml
//! [[r2_buckets]]
//! binding = "BUCKET"
//! bucket_name = "assets"
//! ```

use serde::Deserialize;

use super::ConfigError;

/// One `[[r2_buckets]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct R2Binding {
    /// The name the worker uses: `env.r2("BUCKET")`.
    pub binding: String,
    /// The bucket, shared by every worker bound to it; created on first
    /// use.
    pub bucket_name: String,
}

/// Checks binding and bucket names.
pub(super) fn validate(buckets: &[R2Binding]) -> Result<(), ConfigError> {
    for bucket in buckets {
        super::check_binding_name(&bucket.binding)?;
        validate_bucket_name(&bucket.bucket_name).map_err(ConfigError::new)?;
    }
    Ok(())
}

/// R2's rule for bucket names: 3 to 63 lower-case letters, digits and
/// `-`, not starting or ending with `-`. They are directory and file names
/// on the host, so the rule also keeps them safe there.
pub(crate) fn validate_bucket_name(name: &str) -> Result<(), String> {
    let valid = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "bucket name {name:?} is not valid: use 3 to 63 lower-case letters, digits or `-`, not starting or ending with `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::WorkerConfig;

    #[test]
    fn parses_buckets_and_refuses_bad_names() {
        let config = WorkerConfig::parse(
            "name = \"w\"\n[[r2_buckets]]\nbinding = \"BUCKET\"\nbucket_name = \"assets\"",
        )
        .unwrap();
        assert_eq!(config.r2_buckets[0].bucket_name, "assets");
        let bad = |toml: &str| WorkerConfig::parse(toml).unwrap_err().to_string();
        let err = bad("name = \"w\"\n[[r2_buckets]]\nbinding = \"B\"\nbucket_name = \"../etc\"");
        assert!(err.contains("bucket name \"../etc\" is not valid"), "{err}");
        let err = bad(
            "name = \"w\"\n[[r2_buckets]]\nbinding = \"B\"\nbucket_name = \"abc\"\n\
             [[r2_buckets]]\nbinding = \"B\"\nbucket_name = \"def\"",
        );
        assert!(err.contains("binding \"B\" is used twice"), "{err}");
        let err = bad("name = \"w\"\n[[r2_buckets]]\nbinding = \"B\"\nbucket = \"abc\"");
        assert!(err.contains("unknown field `bucket`"), "{err}");
    }
}
