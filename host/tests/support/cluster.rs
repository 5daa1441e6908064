//! A cluster of real `verge serve --cluster` processes on loopback, sharing
//! a throwaway PostgreSQL server.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::VergeProcess;
use super::postgres::Postgres;

pub const SECRET: &str = "cluster-test-secret-0123456789";
/// Short, so failover tests do not wait long for a dead host's lease.
pub const LEASE_SECS: &str = "1.5";

/// A cluster of `verge serve` processes and its database.
pub struct TestCluster {
    pub db: Postgres,
    pub hosts: Vec<Option<VergeProcess>>,
    _dirs: Vec<tempfile::TempDir>,
    pub client: reqwest::Client,
}

impl TestCluster {
    pub fn start(size: usize) -> Self {
        Self::start_with(size, &[])
    }

    /// A cluster whose hosts all get `flags` besides the cluster's own
    /// (a shared `--r2-root`, say).
    pub fn start_with(size: usize, flags: &[&str]) -> Self {
        let db = Postgres::start();
        let mut dirs = Vec::new();
        let mut hosts = Vec::new();
        for _ in 0..size {
            let dir = tempfile::tempdir().unwrap();
            super::seed_artifacts(dir.path());
            hosts.push(Some(start_host_with(db.url(), dir.path(), flags)));
            dirs.push(dir);
        }
        Self {
            db,
            hosts,
            _dirs: dirs,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    pub fn host(&self, i: usize) -> &VergeProcess {
        self.hosts[i].as_ref().expect("that host was killed")
    }

    pub fn live(&self) -> impl Iterator<Item = (usize, &VergeProcess)> {
        self.hosts
            .iter()
            .enumerate()
            .filter_map(|(i, host)| host.as_ref().map(|host| (i, host)))
    }

    pub async fn cluster_status(&self, i: usize) -> Value {
        super::admin_json(
            &self.client,
            &self.host(i).admin_url,
            reqwest::Method::GET,
            "/v1/cluster",
        )
        .await
    }

    /// Deploys `guest` through host 0 and waits until every live host
    /// answers `path` with a body containing `needle`.
    pub async fn deploy_everywhere(&self, guest: &super::Guest, path: &str, needle: &str) {
        assert_eq!(self.host(0).deploy(&self.client, guest).await, 201);
        for (_, host) in self.live() {
            until_served(&self.client, &format!("{}{path}", host.url), needle).await;
        }
    }

    /// The index of the host that owns the cluster's only object.
    pub async fn owner(&self) -> usize {
        let status = self.cluster_status(self.live().next().unwrap().0).await;
        let owner = status["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|host| host["objects"].as_i64() == Some(1) && host["alive"] == true)
            .unwrap_or_else(|| panic!("no host owns the object: {status:#}"));
        let address = owner["address"].as_str().unwrap();
        self.live()
            .find(|(_, host)| host.log().contains(address))
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no live host listens on {address}"))
    }
}

pub fn start_host(database: &str, data: &std::path::Path) -> VergeProcess {
    start_host_with(database, data, &[])
}

/// A cluster host with `flags` besides the cluster's own.
pub fn start_host_with(database: &str, data: &std::path::Path, flags: &[&str]) -> VergeProcess {
    let mut all = vec![
        "--cluster",
        database,
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-lease-secs",
        LEASE_SECS,
        // Objects idle for a second close, so reopening an object from
        // the file it left runs in every test.
        "--object-idle-secs",
        "1",
    ];
    all.extend_from_slice(flags);
    VergeProcess::serve_with(data, &all, &[("VERGE_CLUSTER_SECRET", SECRET)])
}

/// Polls `url` until it answers 200 with a body containing `needle`;
/// returns how long that took.
pub async fn until_served(client: &reqwest::Client, url: &str, needle: &str) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == 200
            && response.text().await.unwrap_or_default().contains(needle)
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} never served {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
