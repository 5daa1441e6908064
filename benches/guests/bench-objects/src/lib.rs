//! `SqlLoop::select(n)` runs `SELECT ?` n times from guest code: the
//! benchmark divides the difference between n = 1000 and n = 0 by 1000 to
//! get one guest → SQLite round trip. `BlobStore` moves 1 MiB values in
//! and out of R2, key-value storage and SQL, for `benches/benches/r2.rs`.

use verge::{Env, Result, SqlStorage, State};

/// Runs SQL in a loop.
pub struct SqlLoop {
    sql: SqlStorage,
}

#[verge::durable_object]
impl SqlLoop {
    fn new(state: State, _env: Env) -> Self {
        Self {
            sql: state.storage().sql(),
        }
    }

    /// Runs `SELECT ?` `n` times; returns the sum of what came back.
    #[rpc]
    fn select(&mut self, n: u32) -> Result<i64> {
        let mut sum = 0;
        for i in 0..n {
            let row = self.sql.exec("SELECT ? AS v", (i64::from(i),))?;
            if let Some(verge::SqlValue::Integer(v)) = row.raw().first().and_then(|r| r.first()) {
                sum += v;
            }
        }
        Ok(sum)
    }
}

/// Writes and reads 1 MiB values in the places a worker can keep them: an
/// R2 bucket, the object's key-value storage, a BLOB in its SQL database.
/// `benches/benches/r2.rs` times one `put` or `get` per call.
pub struct BlobStore {
    state: State,
    env: Env,
}

#[verge::durable_object]
impl BlobStore {
    fn new(state: State, env: Env) -> Result<Self> {
        state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS blobs (k TEXT PRIMARY KEY, v BLOB NOT NULL)",
            (),
        )?;
        Ok(Self { state, env })
    }

    /// Stores `bytes` bytes under one key in `place` (`r2`, `kv`, `sql`).
    #[rpc]
    fn put(&mut self, place: String, bytes: u32) -> Result<()> {
        let value = vec![b'x'; bytes as usize];
        match place.as_str() {
            "r2" => {
                self.env.r2("BLOBS")?.put("blob", value).execute()?;
            }
            "kv" => self.state.storage().put(
                "blob",
                &String::from_utf8(value).map_err(verge::Error::msg)?,
            )?,
            _ => {
                self.state.storage().sql().exec(
                    "INSERT OR REPLACE INTO blobs (k, v) VALUES ('blob', ?)",
                    (value,),
                )?;
            }
        }
        Ok(())
    }

    /// Reads the value back from `place` into guest memory; returns its
    /// length.
    #[rpc]
    fn get(&mut self, place: String) -> Result<u64> {
        let len = match place.as_str() {
            "r2" => {
                let mut object = self.env.r2("BLOBS")?.get("blob").execute()?;
                let body = object.as_mut().and_then(|o| o.body());
                body.map_or(Ok(Vec::new()), |b| b.bytes())?.len()
            }
            "kv" => self
                .state
                .storage()
                .get::<String>("blob")?
                .map_or(0, |v| v.len()),
            _ => {
                let cursor = self
                    .state
                    .storage()
                    .sql()
                    .exec("SELECT v FROM blobs WHERE k = 'blob'", ())?;
                match cursor.raw().first().and_then(|r| r.first()) {
                    Some(verge::SqlValue::Blob(b)) => b.len(),
                    _ => 0,
                }
            }
        };
        Ok(len as u64)
    }
}
