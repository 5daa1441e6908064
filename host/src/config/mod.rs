//! `verge.toml`: a worker's configuration, the part wrangler.toml plays for
//! Cloudflare. Parsed and validated once, at upload; the host never serves a
//! worker whose config did not pass [`WorkerConfig::parse`].

mod d1;
mod durable_objects;
mod kv_namespaces;
mod limits;
mod outbound;
mod r2;
mod routes;
mod triggers;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

pub(crate) use d1::D1Binding;
pub(crate) use d1::{validate_database_name, validate_migrations_table};
pub(crate) use durable_objects::{DurableObjects, Migration};
pub(crate) use kv_namespaces::{KvBinding, check_namespace_id};
pub(crate) use limits::{D1_DATABASE_MB_CEILING, Limits};
pub(crate) use outbound::OutboundRule;
pub(crate) use r2::{R2Binding, validate_bucket_name};
pub(crate) use routes::{RouteConflict, RoutePattern, RouteTable};
pub(crate) use triggers::CronSchedule;
use triggers::Triggers;

/// A worker's validated `verge.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    pub name: String,
    pub routes: Vec<RoutePattern>,
    pub vars: BTreeMap<String, String>,
    pub allowed_outbound_hosts: Vec<OutboundRule>,
    pub limits: Limits,
    pub build: BuildConfig,
    pub durable_objects: DurableObjects,
    pub migrations: Vec<Migration>,
    pub kv_namespaces: Vec<KvBinding>,
    /// `[triggers] crons`, parsed.
    pub crons: Vec<CronSchedule>,
    /// The Durable Object classes this worker defines, after every
    /// migration.
    pub classes: BTreeSet<String>,
    /// `[[d1_databases]]`.
    pub d1_databases: Vec<D1Binding>,
    /// `[[r2_buckets]]`.
    pub r2_buckets: Vec<R2Binding>,
}

/// How `verge dev` and `verge deploy` build the worker. The host ignores it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// A shell command that builds the component; by default
    /// `cargo build --release --target wasm32-wasip2`.
    pub command: Option<String>,
    /// Where the command leaves the component, relative to verge.toml; by
    /// default the crate's cdylib as cargo reports it.
    pub component: Option<String>,
}

/// The file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    build: BuildConfig,
    #[serde(default)]
    durable_objects: DurableObjects,
    #[serde(default)]
    migrations: Vec<Migration>,
    #[serde(default)]
    kv_namespaces: Vec<KvBinding>,
    #[serde(default)]
    triggers: Triggers,
    #[serde(default)]
    d1_databases: Vec<D1Binding>,
    #[serde(default)]
    r2_buckets: Vec<R2Binding>,
}

/// A `verge.toml` that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("verge.toml: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl WorkerConfig {
    /// Parses and validates the text of a `verge.toml`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::new(e.to_string()))?;
        validate_name(&raw.name)?;
        let routes = raw
            .routes
            .iter()
            .map(|r| r.parse())
            .collect::<Result<_, _>>()?;
        let allowed_outbound_hosts = raw
            .allowed_outbound_hosts
            .iter()
            .map(|r| r.parse())
            .collect::<Result<_, _>>()?;
        raw.limits.validate()?;
        let classes = durable_objects::validate(&raw.durable_objects, &raw.migrations)?;
        kv_namespaces::validate(&raw.kv_namespaces)?;
        d1::validate(&raw.d1_databases)?;
        r2::validate(&raw.r2_buckets)?;
        let crons = triggers::parse(&raw.triggers)?;
        let bindings = raw
            .durable_objects
            .bindings
            .iter()
            .map(|b| b.name.as_str())
            .chain(raw.kv_namespaces.iter().map(|b| b.binding.as_str()))
            .chain(raw.d1_databases.iter().map(|b| b.binding.as_str()))
            .chain(raw.r2_buckets.iter().map(|b| b.binding.as_str()));
        check_unique_bindings(bindings)?;
        let vars = raw
            .vars
            .into_iter()
            .map(|(key, value)| (key, var_text(value)))
            .collect();
        Ok(Self {
            name: raw.name,
            routes,
            vars,
            allowed_outbound_hosts,
            limits: raw.limits,
            build: raw.build,
            durable_objects: raw.durable_objects,
            migrations: raw.migrations,
            kv_namespaces: raw.kv_namespaces,
            crons,
            classes,
            d1_databases: raw.d1_databases,
            r2_buckets: raw.r2_buckets,
        })
    }
}

/// Worker names become URL path segments and file names, so they are kept
/// to what a DNS label allows.
pub(crate) fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "name {name:?} is not valid: use 1 to 63 lower-case letters, digits, `-` or `_`, not starting with `-`"
        )))
    }
}

/// Binding names are what code passes to `env.kv(..)`,
/// `env.durable_object(..)` and the like: letters, digits and `_`, not
/// starting with a digit.
pub(crate) fn check_binding_name(name: &str) -> Result<(), ConfigError> {
    if is_identifier(name) {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "binding {name:?} is not valid: use letters, digits and `_`, not starting with a digit"
        )))
    }
}

/// Letters, digits and `_`, not starting with a digit: what code and SQL
/// can name.
fn is_identifier(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One name reaches one binding, whatever its kind.
fn check_unique_bindings<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ConfigError::new(format!(
                "binding {name:?} is used twice: every binding needs its own name"
            )));
        }
    }
    Ok(())
}

/// `[vars]` values reach the guest as text: strings as they are, other TOML
/// values (numbers, booleans, tables) as JSON, the way wrangler passes them.
fn var_text(value: toml::Value) -> String {
    match value {
        toml::Value::String(s) => s,
        other => serde_json::to_string(&other).unwrap_or_else(|_| other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let config = WorkerConfig::parse(
            r#"
            name = "shop"
            routes = ["/shop/*", "api.example.com/*"]
            allowed_outbound_hosts = ["https://*.stripe.com"]
            [vars]
            REGION = "eu"
            RETRIES = 3
            [limits]
            cpu_ms = 100
            "#,
        )
        .unwrap();
        assert_eq!(config.name, "shop");
        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.vars["RETRIES"], "3");
        assert_eq!(config.limits.cpu_ms, 100);
        assert_eq!(config.limits.memory_mb, Limits::default().memory_mb);
    }

    /// docs/config.md opens with a verge.toml that shows every section
    /// and every limit: it must parse, and must not leave one out.
    #[test]
    fn the_reference_example_parses_and_shows_every_key() {
        let docs = include_str!("../../../docs/config.md");
        let example = docs
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/config.md starts with a toml example");
        let config = WorkerConfig::parse(example).unwrap();
        assert!(!config.crons.is_empty() && !config.kv_namespaces.is_empty());
        assert!(!config.d1_databases.is_empty() && !config.r2_buckets.is_empty());
        let table: toml::Table = toml::from_str(example).unwrap();
        let limits = table["limits"].as_table().unwrap();
        let every_limit = toml::Value::try_from(Limits::default()).unwrap();
        for key in every_limit.as_table().unwrap().keys() {
            assert!(
                limits.contains_key(key),
                "docs/config.md's example has no limits.{key}"
            );
        }
    }

    #[test]
    fn rejects_unknown_keys_and_bad_names() {
        let err = WorkerConfig::parse("name = \"a\"\nroutez = []").unwrap_err();
        assert!(err.to_string().contains("unknown field `routez`"), "{err}");
        let err = WorkerConfig::parse("name = \"Bad Name\"").unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
    }
}
