use serde::Deserialize;

use super::ConfigError;

/// Per-request resource limits, `[limits]` in verge.toml. Breaching one ends
/// the request with a clear HTTP error; none can crash or wedge the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// CPU time the guest's own code may use, in milliseconds, read off
    /// the thread's CPU clock. Host calls (SQL, fetch, logging) and time
    /// spent waiting for a core do not count.
    pub cpu_ms: u64,
    /// Linear memory the guest may grow to, in MiB.
    pub memory_mb: u64,
    /// Wall-clock time for the whole request, in milliseconds.
    pub wall_ms: u64,
    /// Largest request body accepted (413 beyond it) and largest response
    /// body `fetch` reads, in MiB.
    pub body_mb: u64,
    /// Outbound `fetch` calls per request.
    pub subrequests: u32,
    /// Largest database of one Durable Object, in MiB.
    pub object_storage_mb: u64,
    /// Time one object event (or request) may spend running SQL, in
    /// milliseconds; a statement still running when it is spent is
    /// interrupted with an error.
    pub sql_ms: u64,
    /// Longest KV namespace key, in bytes (Cloudflare's limit, 512, by
    /// default).
    pub kv_key_bytes: u32,
    /// Largest KV namespace value, in MiB (Cloudflare's limit, 25, by
    /// default).
    pub kv_value_mb: u64,
    /// Largest D1 database a worker may write to, in MiB. A database is
    /// shared, so each write is held to the limit of the worker making it.
    pub d1_database_mb: u64,
    /// Longest SQL text of one D1 statement (and of one `exec` script), in
    /// KiB; Cloudflare's limit is 100 KB.
    pub d1_statement_kb: u64,
    /// Most parameters bound to one D1 statement; Cloudflare's is 100.
    pub d1_params: u64,
    /// Largest R2 object this worker may write (one `put`, or a completed
    /// multipart upload), in MiB.
    pub r2_object_mb: u64,
}

/// The largest `d1_database_mb` a worker may ask for, and the cap of the
/// operator's own D1 commands (`verge d1 execute`, `import`, migrations).
pub(crate) const D1_DATABASE_MB_CEILING: u64 = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_ms: 50,
            memory_mb: 128,
            wall_ms: 30_000,
            body_mb: 16,
            subrequests: 50,
            object_storage_mb: 10 << 10,
            sql_ms: 2_000,
            kv_key_bytes: 512,
            kv_value_mb: 25,
            d1_database_mb: 10 << 10,
            d1_statement_kb: 100,
            d1_params: 100,
            r2_object_mb: 5 << 10,
        }
    }
}

impl Limits {
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb as usize) << 20
    }

    pub fn object_storage_bytes(&self) -> u64 {
        self.object_storage_mb << 20
    }

    pub fn kv_value_bytes(&self) -> usize {
        (self.kv_value_mb as usize) << 20
    }

    pub fn d1_database_bytes(&self) -> u64 {
        self.d1_database_mb << 20
    }

    pub fn body_bytes(&self) -> usize {
        (self.body_mb as usize) << 20
    }

    pub fn r2_object_bytes(&self) -> u64 {
        self.r2_object_mb << 20
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            ("cpu_ms", self.cpu_ms, 1, 300_000),
            ("memory_mb", self.memory_mb, 1, 4096),
            ("wall_ms", self.wall_ms, 1, 3_600_000),
            ("body_mb", self.body_mb, 1, 1024),
            ("subrequests", u64::from(self.subrequests), 0, 10_000),
            ("object_storage_mb", self.object_storage_mb, 1, 1 << 20),
            ("sql_ms", self.sql_ms, 1, 300_000),
            ("kv_key_bytes", u64::from(self.kv_key_bytes), 1, 2048),
            ("kv_value_mb", self.kv_value_mb, 1, 128),
            (
                "d1_database_mb",
                self.d1_database_mb,
                1,
                D1_DATABASE_MB_CEILING,
            ),
            // SQLite's own limits for guest SQL: 1 MiB of SQL, 1000 variables.
            ("d1_statement_kb", self.d1_statement_kb, 1, 1024),
            ("d1_params", self.d1_params, 0, 1000),
            // R2's own ceiling: 5 TiB.
            ("r2_object_mb", self.r2_object_mb, 1, 5 << 20),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::new(format!(
                    "limits.{key} = {value} is out of range ({min} to {max})"
                )));
            }
        }
        Ok(())
    }
}
