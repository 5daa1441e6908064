//! `[[kv_namespaces]]`, as wrangler.toml has them: the KV namespaces a
//! worker reaches, under which binding names.

use serde::Deserialize;

use super::ConfigError;

/// One KV namespace the worker reaches as `env.kv(binding)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvBinding {
    /// The name code uses, e.g. `CONFIG`.
    pub binding: String,
    /// The namespace: workers that name the same id share its keys. By
    /// default the binding name in lower case.
    #[serde(default)]
    id: Option<String>,
    /// wrangler's namespace for `wrangler dev`; accepted so a
    /// wrangler.toml section copies over unchanged, and ignored: `verge
    /// dev` keeps its own data directory.
    #[serde(default, rename = "preview_id")]
    _preview_id: Option<String>,
}

impl KvBinding {
    /// The namespace this binding reaches.
    pub fn namespace(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| self.binding.to_ascii_lowercase())
    }
}

/// Checks binding names and namespace ids: ids name files, so they are
/// kept to lower-case letters, digits, `-` and `_`.
pub(super) fn validate(bindings: &[KvBinding]) -> Result<(), ConfigError> {
    for kv in bindings {
        super::check_binding_name(&kv.binding)?;
        check_namespace_id(&kv.namespace()).map_err(|e| {
            ConfigError::new(format!("kv_namespaces: binding {:?}: {e}", kv.binding))
        })?;
    }
    Ok(())
}

/// Namespace ids name files: 1 to 64 lower-case letters, digits, `-` and
/// `_`.
pub(crate) fn check_namespace_id(id: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "namespace id {id:?} is not valid: use 1 to 64 lower-case letters, digits, `-` or `_`"
        ))
    }
}
