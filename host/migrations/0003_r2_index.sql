-- R2 bucket indexes in a cluster (storage/r2/cluster_index.rs): the same
-- rows as a single host's r2/<bucket>.index, one set of tables for every
-- bucket. Bodies are not here: they live in the bucket's shared blob
-- store (--r2-bucket NAME=URL or --r2-root URL), under random version ids.

-- Every bucket that was ever created or used.
CREATE TABLE r2_buckets (
    name       TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Keys as BYTEA: byte order, which is the order R2 lists keys in.
CREATE TABLE r2_objects (
    bucket   TEXT NOT NULL,
    key      BYTEA NOT NULL,
    -- Names the body's blob, data/<version>.
    version  TEXT NOT NULL,
    size     BIGINT NOT NULL,
    etag     TEXT NOT NULL,
    -- Milliseconds since the Unix epoch.
    uploaded BIGINT NOT NULL,
    -- HTTP and custom metadata, JSON (storage/r2/meta.rs WriteMetadata).
    metadata TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE TABLE r2_uploads (
    bucket   TEXT NOT NULL,
    id       TEXT NOT NULL,
    key      BYTEA NOT NULL,
    metadata TEXT NOT NULL,
    created  BIGINT NOT NULL,
    PRIMARY KEY (bucket, id)
);

CREATE TABLE r2_parts (
    bucket TEXT NOT NULL,
    upload TEXT NOT NULL,
    number INTEGER NOT NULL,
    etag   TEXT NOT NULL,
    size   BIGINT NOT NULL,
    PRIMARY KEY (bucket, upload, number),
    FOREIGN KEY (bucket, upload) REFERENCES r2_uploads (bucket, id) ON DELETE CASCADE
);
