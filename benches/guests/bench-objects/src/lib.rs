//! `SqlLoop::select(n)` runs `SELECT ?` n times from guest code: the
//! benchmark divides the difference between n = 1000 and n = 0 by 1000 to
//! get one guest → SQLite round trip. `first(store, n)` does the same with
//! a primary-key lookup, on the object's SQL or on the D1 database.

use verge::{Env, Result, SqlStorage, State};

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
