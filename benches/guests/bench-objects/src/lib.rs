//! `SqlLoop::select(n)` runs `SELECT ?` n times from guest code: the
//! benchmark divides the difference between n = 1000 and n = 0 by 1000 to
//! get one guest → SQLite round trip. `first(store, n)` does the same with
//! a primary-key lookup, on the object's SQL or on the D1 database.
//! `StorageLoop::run(op, n)` does the same for one key-value operation, on
//! a KV namespace or on the object's own storage. `BlobStore` moves 1 MiB
//! values in and out of R2, key-value storage and SQL.

use verge::{Env, Error, KvStore, Result, SqlStorage, State, Storage};

/// Rows in the `items` table the lookups read.
const ITEMS: i64 = 1000;

/// Runs SQL in a loop.
pub struct SqlLoop {
    sql: SqlStorage,
    env: Env,
}

#[verge::durable_object]
impl SqlLoop {
    fn new(state: State, env: Env) -> Self {
        Self {
            sql: state.storage().sql(),
            env,
        }
    }

    /// Fills `items` in the object's database and in the D1 database.
    #[rpc]
    fn seed(&mut self) -> Result<()> {
        let schema = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, stock INTEGER NOT NULL)";
        let fill = "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < ?)
                    INSERT OR IGNORE INTO items SELECT v, 'item ' || v, v % 7 FROM n";
        self.sql.exec(schema, ())?;
        self.sql.exec(fill, (ITEMS,))?;
        let db = self.env.d1("DB")?;
        db.exec(schema)?;
        db.prepare(fill).bind((ITEMS,))?.run()?;
        Ok(())
    }

    /// Looks up `n` items by primary key, with `first`, on `store`
    /// (`"sql"` or `"d1"`); returns the sum of their stock.
    #[rpc]
    fn first(&mut self, store: String, n: u32) -> Result<i64> {
        const QUERY: &str = "SELECT id, name, stock FROM items WHERE id = ?";
        let db = self.env.d1("DB")?;
        let mut sum = 0;
        for i in 0..i64::from(n) {
            let id = i % ITEMS + 1;
            let stock: Option<i64> = match store.as_str() {
                "d1" => db.prepare(QUERY).bind((id,))?.first(Some("stock"))?,
                _ => self
                    .sql
                    .exec(QUERY, (id,))?
                    .raw()
                    .first()
                    .and_then(|row| match row[2] {
                        verge::SqlValue::Integer(stock) => Some(stock),
                        _ => None,
                    }),
            };
            sum += stock.unwrap_or(0);
        }
        Ok(sum)
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

/// Key-value operations in a loop: a KV namespace's and the object's own.
pub struct StorageLoop {
    namespace: KvStore,
    storage: Storage,
}

#[verge::durable_object]
impl StorageLoop {
    fn new(state: State, env: Env) -> Result<Self> {
        Ok(Self {
            namespace: env.kv("BENCH_KV")?,
            storage: state.storage(),
        })
    }

    /// Runs `op` `n` times on one key holding `size` bytes: `namespace-get`,
    /// `namespace-put`, `object-get` or `object-put`. Gets read a value the
    /// first call stored.
    #[rpc]
    fn run(&mut self, op: String, n: u32, size: u32) -> Result<u64> {
        let value = vec![7u8; size as usize];
        if self.storage.get::<Vec<u8>>("key")?.is_none() {
            self.storage.put("key", &value)?;
            self.namespace.put("key", &value)?.execute()?;
        }
        let mut read = 0;
        for _ in 0..n {
            match op.as_str() {
                "namespace-get" => {
                    read += self.namespace.get("key").bytes()?.map_or(0, |v| v.len())
                }
                "namespace-put" => self.namespace.put("key", &value)?.execute()?,
                "object-get" => read += self.storage.get::<Vec<u8>>("key")?.map_or(0, |v| v.len()),
                "object-put" => self.storage.put("key", &value)?,
                other => return Err(Error::msg(format!("no operation {other}"))),
            }
        }
        Ok(read as u64)
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
