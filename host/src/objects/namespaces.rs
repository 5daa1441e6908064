//! Namespaces (one class of one worker each) and how a worker's binding
//! and an object's name lead to an object.

use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use super::error::ObjectError;
use super::id::ObjectId;
use crate::config::WorkerConfig;
use crate::storage::{ControlStore, NamespaceRecord};

/// A namespace as the host resolved it.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub id: Arc<str>,
    pub worker: String,
    pub class: String,
}

impl From<&NamespaceRecord> for Namespace {
    fn from(record: &NamespaceRecord) -> Self {
        Self {
            id: record.id.as_str().into(),
            worker: record.worker.clone(),
            class: record.class.clone(),
        }
    }
}

/// The setting holding the key object names are turned into ids with.
const ID_KEY_SETTING: &str = "object_id_key";

/// A new id key, as the setting stores it: every host of a cluster must
/// use the same one, so the cluster's first host makes it.
pub(crate) fn new_id_key_setting() -> (&'static str, String) {
    (ID_KEY_SETTING, hex::encode(rand::random::<[u8; 32]>()))
}

/// Every namespace, as of the last migration, and the key that turns
/// object names into ids.
pub(crate) struct Namespaces {
    records: ArcSwap<Vec<NamespaceRecord>>,
    id_key: Vec<u8>,
}

impl Namespaces {
    /// Loads the namespaces, creating the host's id key on first start.
    pub(crate) fn load(control: &ControlStore) -> Result<Self> {
        let id_key = control.setting_or_init(ID_KEY_SETTING, || new_id_key_setting().1)?;
        Ok(Self {
            records: ArcSwap::from_pointee(control.namespaces()?),
            id_key: hex::decode(id_key).context("the stored object id key is not hex")?,
        })
    }

    /// Reloads them after migrations changed them.
    pub(crate) fn reload(&self, control: &ControlStore) -> Result<()> {
        self.records.store(Arc::new(control.namespaces()?));
        Ok(())
    }

    /// The namespace of `class` defined by `worker`.
    pub(crate) fn of_class(&self, worker: &str, class: &str) -> Option<Namespace> {
        self.records
            .load()
            .iter()
            .find(|ns| ns.worker == worker && ns.class == class)
            .map(Namespace::from)
    }

    pub(crate) fn by_id(&self, id: &str) -> Option<Namespace> {
        self.records
            .load()
            .iter()
            .find(|ns| ns.id == id)
            .map(Namespace::from)
    }

    /// The namespace the worker `name` (configured as `config`) reaches as
    /// `binding`.
    pub(crate) fn resolve(
        &self,
        name: &str,
        config: &WorkerConfig,
        binding: &str,
    ) -> Result<Namespace, ObjectError> {
        let declared = config
            .durable_objects
            .bindings
            .iter()
            .find(|b| b.name == binding)
            .ok_or_else(|| ObjectError::UnknownBinding(binding.to_owned()))?;
        let script = declared.script_name.as_deref().unwrap_or(name);
        self.of_class(script, &declared.class_name).ok_or_else(|| {
            ObjectError::NotDeployed(format!(
                "class `{}` of worker `{script}` does not exist (is that worker deployed with a migration creating it?)",
                declared.class_name
            ))
        })
    }

    /// The id `name` has in `namespace`.
    pub(crate) fn id_from_name(&self, namespace: &Namespace, name: &str) -> ObjectId {
        ObjectId::from_name(&self.id_key, &namespace.id, name)
    }
}
