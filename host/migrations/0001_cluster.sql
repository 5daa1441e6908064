-- Cluster mode's shared state. Every host of a cluster runs these
-- migrations on start (sqlx serializes them with an advisory lock).

-- Hosts and their leases. A host that stops renewing its lease loses its
-- objects to whichever host reaches them next. Times are Postgres's own
-- (`now()`), so hosts' clocks never have to agree.
CREATE TABLE hosts (
    id            TEXT PRIMARY KEY,
    -- Where peers forward object traffic: http://ip:port of its cluster listener.
    address       TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    renewed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_expires TIMESTAMPTZ NOT NULL
);

-- The control plane, a copy of each host's control.db tables of the same
-- names (storage/control.rs). Changes happen under an advisory lock and
-- bump `control_revision`; hosts hear of them by NOTIFY verge_control.
CREATE TABLE control_revision (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision  BIGINT NOT NULL
);
INSERT INTO control_revision (revision) VALUES (0);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE workers (
    name           TEXT PRIMARY KEY,
    active_version BIGINT,
    created_at     BIGINT NOT NULL
);
CREATE TABLE versions (
    worker         TEXT NOT NULL,
    version        BIGINT NOT NULL,
    component_hash TEXT NOT NULL,
    config         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (worker, version)
);
CREATE TABLE deployments (
    id          BIGINT PRIMARY KEY,
    worker      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    deployed_at BIGINT NOT NULL,
    parent      BIGINT
);
CREATE TABLE secrets (
    worker TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (worker, name)
);
CREATE TABLE namespaces (
    id         TEXT PRIMARY KEY,
    worker     TEXT NOT NULL,
    class      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE applied_migrations (
    worker     TEXT NOT NULL,
    tag        TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (worker, tag)
);
-- Uploaded components by content hash, so any host can load any version.
CREATE TABLE components (
    hash  TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL
);

-- Every object the cluster has seen: who owns it, under which fencing
-- epoch, and how far its change history goes. Ownership changes only by
-- compare-and-swap on this row (cluster/ownership.rs), and every commit
-- of a batch checks the epoch under a row lock (cluster/history.rs).
CREATE TABLE objects (
    namespace   TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    name        TEXT,
    owner       TEXT,
    epoch       BIGINT NOT NULL,
    -- The sequence number of the newest change in object_changes.
    head_seq    BIGINT NOT NULL DEFAULT 0,
    last_active BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, object_id)
);
CREATE INDEX objects_by_owner ON objects (owner);

-- Each object's durable history: a snapshot of its SQLite file now and
-- then, and after it the pages every committed batch changed, in order.
-- The state at change `seq` is the newest snapshot at or below `seq` with
-- the changes after it applied: what a new owner rebuilds, and what a
-- point-in-time restore will replay up to a chosen `committed_at`.
CREATE TABLE object_changes (
    namespace    TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    epoch        BIGINT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- An encoded page set (objects/storage/wal.rs).
    pages        BYTEA NOT NULL,
    PRIMARY KEY (namespace, object_id, seq)
);
-- A snapshot is stored in chunks: bytea values past 1 GiB are refused,
-- and smaller rows stream without holding a whole database in memory.
CREATE TABLE object_snapshots (
    namespace TEXT NOT NULL,
    object_id TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    chunk     INTEGER NOT NULL,
    taken_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    bytes     BYTEA NOT NULL,
    PRIMARY KEY (namespace, object_id, seq, chunk)
);

-- When each object's alarms are due, cluster-wide: the owner fires them,
-- and an alarm whose object has no live owner makes a host take it.
CREATE TABLE alarms (
    namespace TEXT NOT NULL,
    object_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    at_ms     BIGINT NOT NULL,
    PRIMARY KEY (namespace, object_id, name)
);
CREATE INDEX alarms_by_time ON alarms (at_ms);

-- The latest time each cron trigger ran for, cluster-wide: the host that
-- advances a row runs that time, so each match runs once in the cluster.
CREATE TABLE cron_runs (
    worker       TEXT NOT NULL,
    cron         TEXT NOT NULL,
    scheduled_ms BIGINT NOT NULL,
    PRIMARY KEY (worker, cron)
);
