use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::project::Project;
use super::{EngineArgs, default_listen, shutdown_signal};
use crate::platform::{Deployment, Platform, PlatformOptions};
use crate::server::{ConnectionLimits, Server, ServerOptions};
use crate::telemetry::flush_log;
use crate::toolchain::Symbols;

#[derive(Args)]
pub(super) struct DevArgs {
    /// The worker crate (the directory holding verge.toml).
    #[arg(default_value = ".")]
    path: PathBuf,
    #[arg(long, default_value_t = default_listen())]
    listen: SocketAddr,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Changes arriving this close together trigger one rebuild.
const DEBOUNCE: Duration = Duration::from_millis(200);

pub(super) async fn run(args: DevArgs) -> Result<()> {
    let project = Project::open(&args.path)?;
    let dir = project.dir.clone();
    let platform = Platform::open(PlatformOptions {
        data_dir: dir.join(".verge"),
        engine: args.engine.engine(),
        objects: args.engine.objects(),
        dev: true,
        cluster: None,
    })
    .await?;
    // Listening first: a taken port fails at once, not after the build.
    let server = Server::start(
        platform.clone(),
        ServerOptions {
            listen: args.listen,
            admin: None,
            index: None,
            limits: ConnectionLimits::default(),
        },
    )
    .await?;
    let deployment = build_and_deploy(&platform, &dir).await?;
    flush_log();
    let (changed, mut changes) = mpsc::unbounded_channel();
    let watch_root = dir.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, EventKind::Access(_))
        {
            let sources: Vec<PathBuf> = event
                .paths
                .into_iter()
                .filter(|p| is_source(&watch_root, p))
                .collect();
            if !sources.is_empty() {
                let _ = changed.send(sources);
            }
        }
    })
    .context("starting the file watcher")?;
    watch_sources(&mut watcher, &dir)?;
    // Announced only once watching: a save right after the banner is seen.
    eprintln!(
        "\nverge dev: serving `{}` on http://{}/ (version {}); watching {} for changes. Ctrl-C stops.\n",
        deployment.worker,
        server.addr(),
        deployment.version,
        dir.display()
    );
    let crons = &project.config.crons;
    if !crons.is_empty() {
        let crons: Vec<_> = crons
            .iter()
            .map(|c| format!("{:?}", c.expression))
            .collect();
        eprintln!(
            "verge dev: cron triggers {} run on schedule; GET http://{}/__scheduled runs one now.\n",
            crons.join(", "),
            server.addr()
        );
    }

    let reload = async {
        while let Some(mut paths) = changes.recv().await {
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(more) = changes.try_recv() {
                paths.extend(more);
            }
            // A directory made at the top (say, `assets/`) is watched from now on.
            for path in paths
                .iter()
                .filter(|p| p.parent() == Some(&*dir) && p.is_dir())
            {
                let _ = watcher.watch(path, RecursiveMode::Recursive);
            }
            eprintln!("verge dev: change detected, rebuilding");
            let rebuilt = build_and_deploy(&platform, &dir).await;
            flush_log();
            match rebuilt {
                Ok(d) if d.unchanged => eprintln!("verge dev: nothing changed"),
                Ok(d) => eprintln!("verge dev: now serving version {}", d.version),
                Err(e) => {
                    eprintln!("verge dev: {e:#}\nverge dev: still serving the previous version")
                }
            }
        }
    };
    tokio::select! {
        () = reload => Ok(()),
        result = server.run_until(shutdown_signal()) => result,
    }
}

/// Builds the crate, deploys it, and syncs secrets from `.dev.vars`.
async fn build_and_deploy(platform: &Arc<Platform>, dir: &Path) -> Result<Deployment> {
    let project = Project::open(dir)?;
    let (project, bytes) = tokio::task::spawn_blocking(move || {
        // Symbols kept: a trap in development names the guest's functions.
        let bytes = project.build(Symbols::Keep);
        (project, bytes)
    })
    .await?;
    let (name, bytes) = (project.config.name.clone(), bytes?);
    // Local databases follow the migrations directory (a new file applies
    // at the rebuild its creation triggers), before the code that needs
    // them is served.
    super::d1::apply_project_migrations(
        platform.d1().clone(),
        &project.dir,
        &project.config,
        "verge dev",
    )
    .await
    .context("applying D1 migrations")?;
    let deployment = platform
        .deploy(&name, bytes, &project.config_text, true)
        .await?;
    sync_dev_vars(platform, &name, &dir.join(".dev.vars")).await?;
    for warning in &deployment.warnings {
        eprintln!("verge dev: warning: {warning}");
    }
    Ok(deployment)
}

/// Makes the worker's secrets exactly what `.dev.vars` says (wrangler's
/// format: `KEY=value` lines, `#` comments, optional quotes).
async fn sync_dev_vars(platform: &Arc<Platform>, worker: &str, path: &Path) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let vars = parse_dev_vars(&text);
    for stale in platform.secret_names(worker)? {
        if !vars.iter().any(|(key, _)| *key == stale) {
            platform.delete_secret(worker, &stale).await?;
        }
    }
    for (key, value) in vars {
        platform.put_secret(worker, key, value).await?;
    }
    Ok(())
}

fn parse_dev_vars(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
            (key.trim(), unquoted.unwrap_or(value))
        })
        .collect()
}

/// Watches the project's sources: its top directory, and every directory in
/// it but build output and local state. Watching `target/` too would cost
/// a watch per build directory, and warnings as cargo deletes them.
fn watch_sources(watcher: &mut impl Watcher, dir: &Path) -> Result<()> {
    let mut watch = |path: &Path, mode| {
        watcher
            .watch(path, mode)
            .with_context(|| format!("watching {}", path.display()))
    };
    watch(dir, RecursiveMode::NonRecursive)?;
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() && is_source(dir, &path) {
            watch(&path, RecursiveMode::Recursive)?;
        }
    }
    Ok(())
}

/// Whether a changed path is source the worker is built from, rather than
/// build output or local state.
fn is_source(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    !relative.components().any(|c| {
        matches!(c, Component::Normal(name) if name == "target" || name == ".verge" || name == ".git")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_vars_accept_comments_and_quotes() {
        let vars = parse_dev_vars("# comment\nA=1\nB = \"two words\"\nC='x=y'\n\nnot a pair\n");
        assert_eq!(vars, [("A", "1"), ("B", "two words"), ("C", "x=y")]);
    }

    #[test]
    fn build_output_is_not_source() {
        let root = Path::new("/w");
        assert!(is_source(root, Path::new("/w/src/lib.rs")));
        assert!(is_source(root, Path::new("/w/verge.toml")));
        assert!(!is_source(root, Path::new("/w/target/release/x.wasm")));
        assert!(!is_source(root, Path::new("/w/.verge/control.db")));
    }
}
