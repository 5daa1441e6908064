//! The running host: which worker versions exist, which serve, and how that
//! changes. The admin API, `verge up` and `verge dev` all go through
//! [`Platform`]; the front door asks it which worker serves a request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::bindings::{AddressGuard, OutboundHttp};
use crate::cluster::{Cluster, ControlChange};
use crate::config::{ConfigError, RouteConflict, RoutePattern, RouteTable, WorkerConfig};
use crate::objects::{ActiveCode, ObjectOptions, ObjectStats, ObjectSystem};
use crate::runtime::{
    self, ArtifactCache, ArtifactStats, EngineOptions, HostState, LinkError, LoadedWorker,
    MemoryBudget, WorkerContext, content_hash,
};
use crate::storage::d1::D1Store;
use crate::storage::kv::KvNamespaces;
pub use crate::storage::r2::R2Store;
use crate::storage::{Activation, ControlStore, NamespaceMigration, VersionRecord, WorkerRecord};
use crate::telemetry::{Snapshot, Telemetry};

/// How a host is set up.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    pub data_dir: PathBuf,
    pub engine: EngineOptions,
    pub objects: ObjectOptions,
    /// Development mode (`verge dev`, `verge up`): error responses carry the
    /// trap message, and when only one worker is deployed it answers every
    /// request no route claims.
    pub dev: bool,
    /// The cluster this host is a member of (`verge serve --cluster`).
    pub cluster: Option<Arc<Cluster>>,
}

/// Why a deploy, activation or deletion was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid component: {0:#}")]
    Component(anyhow::Error),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    RouteConflict(#[from] RouteConflict),
    /// verge.toml's Durable Object classes and the component disagree.
    #[error("{0}")]
    Classes(String),
    #[error("no worker named `{0}`")]
    UnknownWorker(String),
    #[error("worker `{worker}` has no version {version}")]
    UnknownVersion { worker: String, version: u32 },
    #[error("worker `{0}` has no earlier version to roll back to")]
    NothingToRollBack(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The outcome of a successful deploy.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub worker: String,
    pub version: u32,
    pub component_hash: String,
    pub routes: Vec<String>,
    pub active: bool,
    /// The upload was identical to the active version, so nothing changed.
    pub unchanged: bool,
    /// What deployed but will not work as the author likely meant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What `GET /v1/status` and `verge status` report: the host at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// This build of Verge.
    pub version: &'static str,
    pub uptime_secs: u64,
    pub workers: Vec<WorkerStatus>,
    pub objects: ObjectStats,
    /// The serving workers' cron triggers.
    pub triggers: Vec<TriggerStatus>,
}

/// One cron trigger in a [`HostStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct TriggerStatus {
    pub worker: String,
    pub cron: String,
    /// The matching time the latest run was for, in ms since the Unix
    /// epoch; when it has not run yet, when the host started counting.
    pub last_ms: Option<i64>,
    /// The next matching time.
    pub next_ms: Option<i64>,
}

/// One worker in a [`HostStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub active_version: Option<u32>,
    /// False when the active version could not be loaded (see the log), so
    /// nothing of this worker answers requests.
    pub serving: bool,
}

/// A control change in progress (see [`Platform::begin_change`]).
struct Change<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    cluster: Option<ControlChange>,
}

/// What serves requests right now; replaced whole on every change, so a
/// request sees either the old state or the new one, never a mix.
#[derive(Default)]
struct Serving {
    workers: HashMap<String, Arc<LoadedWorker>>,
    routes: RouteTable,
}

/// The current [`Serving`], shared with the object system: objects find
/// the active version of their worker here, without a way back to the
/// platform.
#[derive(Default)]
struct Deployed(ArcSwap<Serving>);

impl ActiveCode for Deployed {
    fn active(&self, worker: &str) -> Option<Arc<LoadedWorker>> {
        self.0.load().workers.get(worker).cloned()
    }
}

pub struct Platform {
    engine: Engine,
    linker: Linker<HostState>,
    artifacts: ArtifactCache,
    control: Arc<ControlStore>,
    /// Where guests' outbound requests may not go.
    guard: Arc<AddressGuard>,
    objects: Arc<ObjectSystem>,
    kv: Arc<KvNamespaces>,
    d1: Arc<D1Store>,
    r2: Arc<R2Store>,
    request_slots: Arc<tokio::sync::Semaphore>,
    memory: Arc<MemoryBudget>,
    options: PlatformOptions,
    serving: Arc<Deployed>,
    /// Woken whenever what serves changes (the cron scheduler waits on it).
    deployed_changed: Arc<tokio::sync::Notify>,
    /// Serializes deploys, activations and deletions.
    changes: tokio::sync::Mutex<()>,
    telemetry: Arc<Telemetry>,
    started: Instant,
}

impl Platform {
    /// Opens (or creates) the data directory and brings back every worker's
    /// active version, from cached artifacts where possible.
    pub async fn open(options: PlatformOptions) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("creating data directory {}", options.data_dir.display()))?;
        let engine = runtime::new_engine(&options.engine)?;
        let linker = runtime::new_linker(&engine)?;
        let artifacts = ArtifactCache::open(&engine, &options.data_dir)?;
        let control = Arc::new(ControlStore::open(&options.data_dir.join("control.db"))?);
        if let Some(cluster) = &options.cluster {
            // Before the object system reads the id key and namespaces.
            let (key, value) = crate::objects::new_id_key_setting();
            cluster.seed_setting(key, &value).await?;
            cluster.pull_control(&control).await?;
        }
        let serving = Arc::new(Deployed::default());
        let telemetry = Arc::new(Telemetry::default());
        let objects = ObjectSystem::new(
            control.clone(),
            &options.data_dir,
            options.objects.clone(),
            options.engine.max_objects as usize,
            serving.clone(),
            telemetry.clone(),
            options.cluster.clone(),
        )?;
        let platform = Arc::new(Self {
            engine,
            linker,
            artifacts,
            control,
            guard: Arc::default(),
            objects,
            kv: Arc::new(KvNamespaces::with_cluster(
                &options.data_dir,
                options.cluster.clone(),
            )),
            d1: Arc::new(match &options.cluster {
                Some(cluster) => D1Store::clustered(&options.data_dir, cluster.clone()),
                None => D1Store::new(&options.data_dir),
            }),
            r2: Arc::new(R2Store::with_cluster(
                &options.data_dir,
                options.cluster.clone(),
            )),
            memory: MemoryBudget::new((options.engine.memory_budget_mb as usize) << 20),
            request_slots: Arc::new(tokio::sync::Semaphore::new(
                options.engine.max_instances as usize,
            )),
            options,
            serving,
            deployed_changed: Arc::default(),
            changes: tokio::sync::Mutex::new(()),
            telemetry,
            started: Instant::now(),
        });
        platform.restore().await?;
        platform.objects.start_alarms()?;
        crate::cron::start(&platform)?;
        platform.follow_cluster();
        Ok(platform)
    }

    /// In a cluster: serves every control change made on any host, as it
    /// is announced.
    fn follow_cluster(self: &Arc<Self>) {
        let Some(cluster) = &self.options.cluster else {
            return;
        };
        let mut revisions = cluster.watch_control();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while revisions.changed().await.is_ok() {
                // Until it works: the announcement does not come twice.
                loop {
                    let Some(platform) = weak.upgrade() else {
                        return;
                    };
                    match platform.catch_up().await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!("following the cluster's control plane: {e:#}");
                            drop(platform);
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
    }

    /// Pulls the cluster's control plane and serves what it says.
    async fn catch_up(self: &Arc<Self>) -> Result<()> {
        let Some(cluster) = &self.options.cluster else {
            return Ok(());
        };
        let _changes = self.changes.lock().await;
        cluster.pull_control(&self.control).await?;
        self.serve_control().await
    }

    /// Makes what serves match control.db, after a pull brought another
    /// host's changes: versions, secrets and namespaces. Workers already
    /// serving as recorded are kept as they are.
    async fn serve_control(self: &Arc<Self>) -> Result<()> {
        let current = self.serving.0.load_full();
        let mut workers = HashMap::new();
        for record in self.control.active_versions()? {
            let secrets = self.control.secrets(&record.worker)?;
            if let Some(worker) = current.workers.get(&record.worker)
                && worker.context.version == record.version
                && worker.hash == record.component_hash
                && worker.context.secrets == secrets
            {
                workers.insert(record.worker.clone(), worker.clone());
                continue;
            }
            match self.load_version(&record).await {
                Ok(worker) => {
                    tracing::info!(worker = %record.worker, version = record.version, "serving a version deployed in the cluster");
                    workers.insert(record.worker.clone(), Arc::new(worker));
                }
                Err(e) => tracing::error!(
                    worker = %record.worker,
                    version = record.version,
                    "cannot serve a version deployed in the cluster: {e:#}"
                ),
            }
        }
        self.objects.reload_namespaces()?;
        let unchanged = workers.len() == current.workers.len()
            && workers
                .iter()
                .all(|(name, w)| current.workers.get(name).is_some_and(|c| Arc::ptr_eq(c, w)));
        if !unchanged {
            self.swap(workers)?;
        }
        Ok(())
    }

    /// Starts a change of the control plane: one at a time on this host,
    /// and in a cluster one at a time across hosts, starting from the
    /// cluster's latest state.
    async fn begin_change(self: &Arc<Self>) -> Result<Change<'_>, DeployError> {
        let local = self.changes.lock().await;
        let cluster = match &self.options.cluster {
            None => None,
            Some(cluster) => {
                let change = cluster.begin_change(&self.control).await?;
                self.serve_control().await?;
                Some(change)
            }
        };
        Ok(Change {
            _local: local,
            cluster,
        })
    }

    /// Ends a change begun with [`Self::begin_change`]: in a cluster, it
    /// becomes the cluster's, and every host serves it.
    async fn end_change(self: &Arc<Self>, change: Change<'_>) -> Result<(), DeployError> {
        let (Some(cluster), Some(pending)) = (&self.options.cluster, change.cluster) else {
            return Ok(());
        };
        let stored = pending
            .commit(&self.control, |hash| self.artifacts.component(hash))
            .await;
        if let Err(e) = stored {
            // This host changed what it serves; the cluster did not.
            if let Err(again) = async {
                cluster.pull_control(&self.control).await?;
                self.serve_control().await
            }
            .await
            {
                tracing::error!("going back to the cluster's control plane: {again:#}");
            }
            return Err(DeployError::Internal(e));
        }
        Ok(())
    }

    async fn restore(self: &Arc<Self>) -> Result<()> {
        let mut serving = Serving::default();
        for record in self.control.active_versions()? {
            match self.load_version(&record).await {
                Ok(worker) => {
                    serving
                        .workers
                        .insert(record.worker.clone(), Arc::new(worker));
                }
                // One broken worker must not keep the others from serving.
                Err(e) => tracing::error!(
                    worker = %record.worker,
                    version = record.version,
                    "cannot restore worker: {e:#}"
                ),
            }
        }
        serving.routes = serving_routes(&serving.workers)
            .map_err(|e| anyhow::anyhow!("stored routes conflict: {e}"))?;
        tracing::info!(workers = serving.workers.len(), "restored deployed workers");
        self.serving.0.store(Arc::new(serving));
        Ok(())
    }

    pub fn options(&self) -> &PlatformOptions {
        &self.options
    }

    /// The cluster this host is a member of, if any.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.options.cluster.as_ref()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn artifact_stats(&self) -> ArtifactStats {
        self.artifacts.stats()
    }

    /// The size of the stored component with `hash`, as uploaded.
    pub fn component_size(&self, hash: &str) -> Option<u64> {
        self.artifacts.component_size(hash)
    }

    /// The host at a glance: build, uptime, workers and what their objects
    /// hold right now.
    pub fn status(&self) -> Result<HostStatus> {
        let serving = self.serving.0.load();
        let workers = self
            .control
            .workers()?
            .into_iter()
            .map(|w| WorkerStatus {
                serving: serving.workers.contains_key(&w.name),
                name: w.name,
                active_version: w.active_version,
            })
            .collect();
        Ok(HostStatus {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
            workers,
            objects: self.objects.stats(),
            triggers: self.trigger_status()?,
        })
    }

    fn trigger_status(&self) -> Result<Vec<TriggerStatus>> {
        let runs = self.control.cron_runs()?;
        let now = chrono::Utc::now();
        let mut triggers: Vec<TriggerStatus> = self
            .scheduled_workers()
            .iter()
            .flat_map(|worker| {
                let name = &worker.context.name;
                worker.context.config.crons.iter().map(|schedule| {
                    let last_ms = runs
                        .iter()
                        .find(|(w, cron, _)| **w == **name && *cron == schedule.expression)
                        .map(|(_, _, at)| *at);
                    TriggerStatus {
                        worker: name.to_string(),
                        cron: schedule.expression.clone(),
                        last_ms,
                        next_ms: schedule.next(now).map(|at| at.timestamp_millis()),
                    }
                })
            })
            .collect();
        triggers.sort_by(|a, b| (&a.worker, &a.cron).cmp(&(&b.worker, &b.cron)));
        Ok(triggers)
    }

    /// The worker that serves `host` and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<Arc<LoadedWorker>> {
        let serving = self.serving.0.load();
        match serving.routes.lookup(host, path) {
            Some(name) => serving.workers.get(name).cloned(),
            None if self.options.dev && serving.workers.len() == 1 => {
                serving.workers.values().next().cloned()
            }
            None => None,
        }
    }

    /// The serving workers that have cron triggers.
    pub(crate) fn scheduled_workers(&self) -> Vec<Arc<LoadedWorker>> {
        let serving = self.serving.0.load();
        serving
            .workers
            .values()
            .filter(|worker| !worker.context.config.crons.is_empty())
            .cloned()
            .collect()
    }

    /// Notified at every change of what serves.
    pub(crate) fn deployed_changed(&self) -> Arc<tokio::sync::Notify> {
        self.deployed_changed.clone()
    }

    pub(crate) fn kv(&self) -> &Arc<KvNamespaces> {
        &self.kv
    }

    /// The KV namespace bindings of the serving workers: (worker, binding,
    /// namespace id).
    pub(crate) fn kv_bindings(&self) -> Vec<(String, String, String)> {
        let serving = self.serving.0.load();
        let mut bindings: Vec<_> = serving
            .workers
            .iter()
            .flat_map(|(name, worker)| {
                worker
                    .context
                    .config
                    .kv_namespaces
                    .iter()
                    .map(move |kv| (name.clone(), kv.binding.clone(), kv.namespace()))
            })
            .collect();
        bindings.sort();
        bindings
    }

    pub(crate) fn control(&self) -> &ControlStore {
        &self.control
    }

    /// The active version of `name`, if it is deployed.
    pub fn active(&self, name: &str) -> Option<Arc<LoadedWorker>> {
        self.serving.active(name)
    }

    /// Uploads a new version of `name` and, if `activate`, serves it.
    ///
    /// Nothing changes unless every check passes: the config, the component
    /// (it compiles, Verge satisfies its imports, it exports a handler) and
    /// the routes. Uploading exactly the active version again changes
    /// nothing.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        component: Vec<u8>,
        config_text: &str,
        activate: bool,
    ) -> Result<Deployment, DeployError> {
        crate::config::validate_name(name)?;
        let config = self.check_config(name, config_text)?;
        let change = self.begin_change().await?;

        let hash = content_hash(&component);
        if activate && let Some(current) = self.active(name) {
            let record = self.control.version(name, current.context.version)?;
            if current.hash == hash && record.is_some_and(|r| r.config == config_text) {
                return Ok(deployment(&current, true));
            }
        }

        let (compiled, component) = {
            let hash = hash.clone();
            self.blocking(move |this| (this.artifacts.compile(&hash, &component), component))
                .await?
        };
        let compiled = compiled.map_err(DeployError::Component)?;
        let prepared = runtime::prepare(&self.linker, &compiled)?;
        let probe = self.loaded(name, 0, config.clone(), &hash, prepared)?;
        let warnings = self.check_classes(&probe).await?;
        for warning in &warnings {
            tracing::warn!(worker = name, "{warning}");
        }
        if activate {
            self.check_routes(name, &config)?;
        }

        {
            let (hash, compiled) = (hash.clone(), compiled.clone());
            self.blocking(move |this| this.artifacts.persist(&hash, &component, &compiled))
                .await??;
        }
        let version = self.control.add_version(name, &hash, config_text)?;
        let worker = Arc::new(LoadedWorker {
            context: Arc::new(self.context(name, version, config)?),
            ..probe
        });
        if activate {
            self.apply_migrations(&worker).await?;
            self.control.activate(name, version, Activation::Forward)?;
            let mut workers = self.serving.0.load().workers.clone();
            workers.insert(name.to_owned(), worker.clone());
            self.swap(workers)?;
            tracing::info!(worker = name, version, "deployed and activated");
        } else {
            tracing::info!(worker = name, version, "uploaded");
        }
        self.end_change(change).await?;
        let mut outcome = deployment(&worker, false);
        outcome.active = activate;
        outcome.warnings = warnings;
        Ok(outcome)
    }

    /// Serves `version` of `name` from now on. Activating the version that
    /// serves already changes nothing, and leaves no step in the history
    /// for a rollback to land on.
    pub async fn activate(
        self: &Arc<Self>,
        name: &str,
        version: u32,
    ) -> Result<Deployment, DeployError> {
        let change = self.begin_change().await?;
        self.require_worker(name)?;
        if let Some(current) = self.active(name)
            && current.context.version == version
        {
            return Ok(deployment(&current, true));
        }
        let deployed = self
            .activate_locked(name, version, Activation::Forward)
            .await?;
        self.end_change(change).await?;
        Ok(deployed)
    }

    /// Serves the version that was active before the current one in the
    /// deployment history; repeated rollbacks keep walking back (see
    /// [`ControlStore::activate`]).
    pub async fn rollback(self: &Arc<Self>, name: &str) -> Result<Deployment, DeployError> {
        let change = self.begin_change().await?;
        self.require_worker(name)?;
        let version = self
            .control
            .previous_version(name)?
            .ok_or_else(|| DeployError::NothingToRollBack(name.to_owned()))?;
        let deployed = self
            .activate_locked(name, version, Activation::Rollback)
            .await?;
        self.end_change(change).await?;
        Ok(deployed)
    }

    /// The version a rollback of `name` would serve, if any.
    pub fn rollback_target(&self, name: &str) -> Result<Option<u32>, DeployError> {
        self.require_worker(name)?;
        Ok(self.control.previous_version(name)?)
    }

    async fn activate_locked(
        self: &Arc<Self>,
        name: &str,
        version: u32,
        how: Activation,
    ) -> Result<Deployment, DeployError> {
        let record =
            self.control
                .version(name, version)?
                .ok_or_else(|| DeployError::UnknownVersion {
                    worker: name.to_owned(),
                    version,
                })?;
        let worker = Arc::new(self.load_version(&record).await?);
        self.check_routes(name, &worker.context.config)?;
        self.apply_migrations(&worker).await?;
        let mut workers = self.serving.0.load().workers.clone();
        workers.insert(name.to_owned(), worker.clone());
        self.control.activate(name, version, how)?;
        self.swap(workers)?;
        tracing::info!(worker = name, version, "activated");
        Ok(deployment(&worker, false))
    }

    /// Stops serving `name` and removes its versions, secrets and unused
    /// components.
    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), DeployError> {
        let change = self.begin_change().await?;
        self.require_worker(name)?;
        let mut workers = self.serving.0.load().workers.clone();
        workers.remove(name);
        self.swap(workers)?;
        let namespaces: Vec<String> = self
            .control
            .namespaces()?
            .into_iter()
            .filter(|ns| ns.worker == name)
            .map(|ns| ns.id)
            .collect();
        for hash in self.control.delete_worker(name)? {
            self.artifacts.remove(&hash)?;
        }
        self.objects.reload_namespaces()?;
        for namespace in namespaces {
            self.objects.delete_namespace(&namespace).await?;
        }
        self.end_change(change).await?;
        tracing::info!(worker = name, "deleted");
        Ok(())
    }

    pub fn workers(&self) -> Result<Vec<WorkerRecord>> {
        self.control.workers()
    }

    pub fn worker(&self, name: &str) -> Result<WorkerRecord, DeployError> {
        self.require_worker(name)
    }

    pub fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, DeployError> {
        self.require_worker(name)?;
        Ok(self.control.versions(name)?)
    }

    /// Names of the secrets set for `name`; values are never read back.
    pub fn secret_names(&self, name: &str) -> Result<Vec<String>, DeployError> {
        self.require_worker(name)?;
        Ok(self.control.secrets(name)?.into_keys().collect())
    }

    /// Sets a secret; the active version sees it from the next request.
    pub async fn put_secret(
        self: &Arc<Self>,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), DeployError> {
        let change = self.begin_change().await?;
        self.require_worker(name)?;
        self.control.put_secret(name, key, value)?;
        self.reload_context(name)?;
        self.end_change(change).await
    }

    /// Removes a secret; returns whether it existed.
    pub async fn delete_secret(
        self: &Arc<Self>,
        name: &str,
        key: &str,
    ) -> Result<bool, DeployError> {
        let change = self.begin_change().await?;
        self.require_worker(name)?;
        let existed = self.control.delete_secret(name, key)?;
        self.reload_context(name)?;
        self.end_change(change).await?;
        Ok(existed)
    }

    /// Runs compilation or file I/O off the async threads.
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Self) -> R + Send + 'static,
    ) -> Result<R> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .context("a blocking task panicked")
    }

    /// Checks that `name` serving `config`'s routes conflicts with no other
    /// worker.
    fn check_routes(&self, name: &str, config: &WorkerConfig) -> Result<(), DeployError> {
        let serving = self.serving.0.load();
        let others = serving
            .workers
            .iter()
            .filter(|(other, _)| *other != name)
            .map(|(other, worker)| (other.as_str(), &worker.context.config.routes[..]));
        route_table(others.chain([(name, &config.routes[..])]))?;
        Ok(())
    }

    fn require_worker(&self, name: &str) -> Result<WorkerRecord, DeployError> {
        self.control
            .worker(name)?
            .ok_or_else(|| DeployError::UnknownWorker(name.to_owned()))
    }

    fn check_config(&self, name: &str, text: &str) -> Result<WorkerConfig, ConfigError> {
        let config = WorkerConfig::parse(text)?;
        if config.name != name {
            return Err(ConfigError::new(format!(
                "name = {:?} does not match the worker being deployed ({name:?})",
                config.name
            )));
        }
        let max = self.options.engine.max_memory_mb;
        if config.limits.memory_mb > max {
            return Err(ConfigError::new(format!(
                "limits.memory_mb = {} exceeds this host's maximum of {max}",
                config.limits.memory_mb
            )));
        }
        Ok(config)
    }

    fn context(&self, name: &str, version: u32, config: WorkerConfig) -> Result<WorkerContext> {
        Ok(WorkerContext {
            name: name.into(),
            version,
            http: OutboundHttp::new(&config.allowed_outbound_hosts, self.guard.clone()),
            config,
            secrets: self.control.secrets(name)?,
            objects: self.objects.clone(),
            kv: self.kv.clone(),
            d1: self.d1.clone(),
            r2: self.r2.clone(),
            request_slots: self.request_slots.clone(),
            worker_slots: Arc::new(tokio::sync::Semaphore::new(
                self.options.engine.max_instances_per_worker.max(1) as usize,
            )),
            worker_slots_limit: self.options.engine.max_instances_per_worker.max(1),
            memory: self.memory.clone(),
            metrics: self.telemetry.metrics.worker(name),
            telemetry: self.telemetry.clone(),
        })
    }

    fn loaded(
        &self,
        name: &str,
        version: u32,
        config: WorkerConfig,
        hash: &str,
        prepared: runtime::Prepared,
    ) -> Result<LoadedWorker> {
        Ok(LoadedWorker {
            context: Arc::new(self.context(name, version, config)?),
            hash: hash.to_owned(),
            pre: prepared.pre,
            handler: prepared.handler,
            object: prepared.object,
            events: prepared.events,
            scheduled: prepared.scheduled,
        })
    }

    /// Makes the host's own listeners unreachable for guests' requests.
    pub(crate) fn protect_listeners(
        &self,
        listeners: impl IntoIterator<Item = std::net::SocketAddr>,
    ) {
        self.guard.protect(listeners);
    }

    /// The Durable Object system.
    /// The host's D1 databases.
    pub(crate) fn d1(&self) -> &Arc<D1Store> {
        &self.d1
    }

    pub fn objects(&self) -> &Arc<ObjectSystem> {
        &self.objects
    }

    /// The R2 buckets.
    pub fn r2(&self) -> &Arc<R2Store> {
        &self.r2
    }

    /// Request logs, tails and metrics.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The host's state right now, for the metrics' gauges.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            objects: self.objects.stats(),
            memory_reserved_bytes: self.memory.used(),
        }
    }

    /// Checks that the classes verge.toml declares are the ones the
    /// component defines, and that bindings to other workers' classes
    /// resolve. Classes the component defines that verge.toml never
    /// creates come back as warnings: nothing can reach them.
    async fn check_classes(&self, worker: &LoadedWorker) -> Result<Vec<String>, DeployError> {
        let config = &worker.context.config;
        for binding in &config.durable_objects.bindings {
            if let Some(script) = &binding.script_name
                && self
                    .objects
                    .namespace(script, &binding.class_name)
                    .is_none()
            {
                return Err(DeployError::Classes(format!(
                    "binding {:?} uses class {:?} of worker {script:?}, which does not exist",
                    binding.name, binding.class_name
                )));
            }
        }
        if config.classes.is_empty() && worker.object.is_none() {
            return Ok(Vec::new());
        }
        let defined = match runtime::component_classes(worker).await {
            Ok(defined) => defined,
            // Only declared classes must be checked.
            Err(_) if config.classes.is_empty() => return Ok(Vec::new()),
            Err(e) => {
                return Err(DeployError::Classes(format!(
                    "verge.toml declares Durable Object classes, but the component {e}"
                )));
            }
        };
        let missing: Vec<&String> = config
            .classes
            .iter()
            .filter(|c| !defined.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(DeployError::Classes(format!(
                "verge.toml declares classes {missing:?} that the component does not define (it defines {defined:?})"
            )));
        }
        Ok(defined
            .iter()
            .filter(|class| !config.classes.contains(*class))
            .map(|class| {
                format!(
                    "the component defines Durable Object class {class:?}, which verge.toml does not create: \
                     nothing can reach it until [[migrations]] has new_sqlite_classes = [{class:?}] \
                     and a [[durable_objects.bindings]] entry names it"
                )
            })
            .collect())
    }

    /// Applies the migrations of `worker`'s config not applied before, in
    /// order.
    async fn apply_migrations(&self, worker: &LoadedWorker) -> Result<(), DeployError> {
        let name = &*worker.context.name;
        let applied = self.control.applied_migrations(name)?;
        let mut deleted = Vec::new();
        for migration in &worker.context.config.migrations {
            if !applied.contains(&migration.tag) {
                let changes = NamespaceMigration {
                    tag: &migration.tag,
                    new_classes: &migration.new_sqlite_classes,
                    renamed: migration
                        .renamed_classes
                        .iter()
                        .map(|r| (r.from.as_str(), r.to.as_str()))
                        .collect(),
                    deleted: &migration.deleted_classes,
                };
                deleted.extend(self.control.apply_migration(name, &changes)?);
                tracing::info!(worker = name, tag = %migration.tag, "applied migration");
            }
        }
        self.objects.reload_namespaces()?;
        for namespace in deleted {
            self.objects.delete_namespace(&namespace).await?;
        }
        Ok(())
    }

    /// Loads a stored version: artifact from the cache (or recompiled),
    /// linked, with the current secrets.
    async fn load_version(
        self: &Arc<Self>,
        record: &VersionRecord,
    ) -> Result<LoadedWorker, DeployError> {
        let config = WorkerConfig::parse(&record.config)?;
        let hash = record.component_hash.clone();
        if let Some(cluster) = &self.options.cluster
            && self.artifacts.component_size(&hash).is_none()
        {
            let bytes = cluster.component(&hash).await?;
            let hash = hash.clone();
            self.blocking(move |this| {
                let compiled = this.artifacts.compile(&hash, &bytes)?;
                this.artifacts.persist(&hash, &bytes, &compiled)
            })
            .await??;
        }
        let component: Component = self
            .blocking(move |this| this.artifacts.load(&hash))
            .await??;
        let prepared = runtime::prepare(&self.linker, &component)?;
        Ok(self.loaded(
            &record.worker,
            record.version,
            config,
            &record.component_hash,
            prepared,
        )?)
    }

    /// Rebuilds the active version's context, e.g. after a secret changed.
    fn reload_context(&self, name: &str) -> Result<(), DeployError> {
        let Some(current) = self.active(name) else {
            return Ok(());
        };
        let context = &current.context;
        let reloaded = Arc::new(LoadedWorker {
            context: Arc::new(self.context(name, context.version, context.config.clone())?),
            ..(*current).clone()
        });
        let mut workers = self.serving.0.load().workers.clone();
        workers.insert(name.to_owned(), reloaded);
        self.swap(workers)
    }

    fn swap(&self, workers: HashMap<String, Arc<LoadedWorker>>) -> Result<(), DeployError> {
        let routes = serving_routes(&workers)?;
        self.serving.0.store(Arc::new(Serving { workers, routes }));
        self.deployed_changed.notify_waiters();
        Ok(())
    }
}

fn serving_routes(workers: &HashMap<String, Arc<LoadedWorker>>) -> Result<RouteTable, DeployError> {
    route_table(
        workers
            .iter()
            .map(|(name, worker)| (name.as_str(), &worker.context.config.routes[..])),
    )
}

fn route_table<'a>(
    workers: impl Iterator<Item = (&'a str, &'a [RoutePattern])>,
) -> Result<RouteTable, DeployError> {
    RouteTable::new(workers.flat_map(|(name, routes)| {
        routes
            .iter()
            .map(move |route| (route.clone(), name.to_owned()))
    }))
    .map_err(DeployError::from)
}

fn deployment(worker: &LoadedWorker, unchanged: bool) -> Deployment {
    let context = &worker.context;
    Deployment {
        worker: context.name.to_string(),
        version: context.version,
        component_hash: worker.hash.clone(),
        routes: context
            .config
            .routes
            .iter()
            .map(ToString::to_string)
            .collect(),
        active: true,
        unchanged,
        warnings: Vec::new(),
    }
}
