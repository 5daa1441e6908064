//! D1 databases in a cluster: each is owned by one host, exactly like an
//! object. A database is the object `d1/<sha-256 of its name>` (real
//! namespaces are 32 hexadecimal characters, so `d1` is never one), so
//! claims, fencing epochs, leases, the durable history and `verge cluster
//! status` work for it unchanged. Its name goes in the row's `name`, for
//! `verge d1 list`.
//!
//! Calls on a host that does not own the database go to the owner over
//! the cluster listener (`POST /d1`, `server/peers.rs`), as JSON: what
//! the request is and what it answered are `storage/d1/remote.rs`'s.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::Cluster;
use super::forward::PEER_SECRET_HEADER;
use crate::objects::{ObjectId, ObjectKey};

/// The reserved namespace of D1 databases' ownership rows.
pub(crate) const D1_NAMESPACE: &str = "d1";

/// The cluster listener's path for forwarded D1 calls.
pub(crate) const D1_PATH: &str = "/d1";

/// The ownership key of the D1 database `name`.
pub(crate) fn d1_key(name: &str) -> ObjectKey {
    ObjectKey {
        namespace: D1_NAMESPACE.into(),
        id: ObjectId::from_bytes(Sha256::digest(name.as_bytes()).into()),
    }
}

/// What happened to a D1 call sent to a peer.
pub(crate) enum PeerDelivery<T> {
    /// The peer answered this.
    Answered(T),
    /// Nothing ran there (it could not be reached): look again.
    NotThere(String),
    /// Whether it ran is unknown (the peer died or answered badly).
    Unknown(String),
}

impl Cluster {
    /// Whether the D1 database behind `key` was ever created in the
    /// cluster (its row exists once a host has claimed it).
    pub(crate) async fn d1_exists(&self, key: &ObjectKey) -> Result<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM objects WHERE namespace = $1 AND object_id = $2")
                .bind(&*key.namespace)
                .bind(key.id.to_string())
                .fetch_optional(&self.pool)
                .await
                .context("looking up the D1 database in the cluster")?;
        Ok(found.is_some())
    }

    /// Records the name of the D1 database behind `key` (which this host
    /// just claimed), for listing.
    pub(crate) async fn d1_name(&self, key: &ObjectKey, name: &str) -> Result<()> {
        sqlx::query(
            "UPDATE objects SET name = $3
             WHERE namespace = $1 AND object_id = $2 AND name IS DISTINCT FROM $3",
        )
        .bind(&*key.namespace)
        .bind(key.id.to_string())
        .bind(name)
        .execute(&self.pool)
        .await
        .context("recording the D1 database's name in the cluster")?;
        Ok(())
    }

    /// The names of every D1 database of the cluster.
    pub(crate) async fn d1_names(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT name FROM objects WHERE namespace = $1 AND name IS NOT NULL ORDER BY name",
        )
        .bind(D1_NAMESPACE)
        .fetch_all(&self.pool)
        .await
        .context("listing the cluster's D1 databases")
    }

    /// Sends `request` for the D1 database `key` to its owner `host` at
    /// `address`, and reads its JSON answer.
    ///
    /// As for objects (`forward.rs`), a paused owner accepts the
    /// connection and never answers, so the wait also ends when its lease
    /// runs out.
    pub(crate) async fn forward_d1<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        host: &str,
        address: &str,
        key: &ObjectKey,
        request: &Req,
        timeout: Duration,
    ) -> PeerDelivery<Resp> {
        let body = match serde_json::to_vec(request) {
            Ok(body) => body,
            Err(e) => return PeerDelivery::Unknown(format!("encoding the call: {e}")),
        };
        let sent = self
            .peers
            .post(format!("{address}{D1_PATH}"))
            .header(PEER_SECRET_HEADER, &self.options.secret)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send();
        let response = tokio::select! {
            sent = sent => sent,
            () = self.lease_lapses(host) => {
                self.forget_owner(key);
                return PeerDelivery::Unknown(format!(
                    "the database's host {address} stopped answering and its lease lapsed; \
                     the call may or may not have run"
                ));
            }
        };
        let response = match response {
            Ok(response) => response,
            Err(e) if e.is_connect() => return PeerDelivery::NotThere(format!("{e}")),
            Err(e) => {
                self.forget_owner(key);
                let why = if e.is_timeout() {
                    "did not answer in time".to_owned()
                } else {
                    format!("did not answer: {e}")
                };
                return PeerDelivery::Unknown(format!(
                    "the database's host {address} {why}; the call may or may not have run"
                ));
            }
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return PeerDelivery::Unknown(format!(
                    "reading the answer of {address}: {e}; the call may or may not have run"
                ));
            }
        };
        if !status.is_success() {
            return PeerDelivery::Unknown(format!(
                "the database's host {address} refused the call ({status}): {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        match serde_json::from_slice(&body) {
            Ok(answer) => PeerDelivery::Answered(answer),
            Err(e) => {
                PeerDelivery::Unknown(format!("the database's host {address} answered badly: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_keys_are_stable_distinct_and_never_a_real_namespace() {
        let notes = d1_key("notes");
        assert_eq!(notes, d1_key("notes"));
        assert_ne!(notes, d1_key("notes2"));
        assert_eq!(&*notes.namespace, "d1");
        // Real namespaces are 32 hexadecimal characters.
        assert_ne!(notes.namespace.len(), 32);
        assert_eq!(
            notes.id.to_string(),
            hex::encode(Sha256::digest(b"notes")),
            "the id is the SHA-256 of the name"
        );
    }
}
