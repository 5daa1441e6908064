//! `SqlLoop::select(n)` runs `SELECT ?` n times from guest code: the
//! benchmark divides the difference between n = 1000 and n = 0 by 1000 to
//! get one guest → SQLite round trip.

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
