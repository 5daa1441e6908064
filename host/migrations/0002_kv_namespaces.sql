-- KV namespaces in a cluster (storage/kv/cluster.rs): the same rows as a
-- single host's kv/<id>.sqlite, one table for every namespace.

-- Every namespace that was ever opened, whether or not it holds keys:
-- what `verge kv namespace list` shows, as a host lists its files.
CREATE TABLE kv_namespaces (
    id         TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Keys are the UTF-8 bytes of the key, as BYTEA: Postgres compares them
-- byte by byte (the order SQLite's BINARY collation lists them in,
-- whatever the database's collation), and unlike TEXT they may hold NUL.
-- `expiration` is in Unix seconds; reads skip expired rows, writes sweep
-- a few of them.
CREATE TABLE kv_entries (
    namespace  TEXT NOT NULL,
    key        BYTEA NOT NULL,
    value      BYTEA NOT NULL,
    metadata   TEXT,
    expiration BIGINT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX kv_entries_expiration ON kv_entries (namespace, expiration)
    WHERE expiration IS NOT NULL;
