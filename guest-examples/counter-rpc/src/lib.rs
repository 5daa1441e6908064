//! Typed RPC: the worker calls `Counter` objects through the generated
//! `CounterClient`, and the `Tally` object calls several counters itself.
//!
//! - `POST /counter/:name?by=N` adds to a counter;
//! - `GET /counter/:name` reads it;
//! - `GET /counters?names=a,b,c` asks the tally object, which asks each
//!   counter (object-to-object RPC) and records the total it saw.

use serde::{Deserialize, Serialize};
use serde_json::json;
use verge::{Env, Error, Request, Response, Result, Router, State, Storage};

/// One named counter.
pub struct Counter {
    storage: Storage,
}

#[verge::durable_object]
impl Counter {
    fn new(state: State, _env: Env) -> Self {
        Self {
            storage: state.storage(),
        }
    }

    /// Adds `by` and returns the new value.
    #[rpc]
    fn increment(&mut self, by: i64) -> Result<i64> {
        let value = self.get()? + by;
        self.storage.put("value", &value)?;
        Ok(value)
    }

    /// The current value.
    #[rpc]
    fn get(&self) -> Result<i64> {
        Ok(self.storage.get("value")?.unwrap_or(0))
    }
}

/// The sum of several counters, as one tally object saw it.
#[derive(Serialize, Deserialize)]
pub struct Total {
    pub total: i64,
    pub counters: Vec<(String, i64)>,
    /// How many totals this tally has computed.
    pub computed: i64,
}

/// Sums counters by calling them, object to object.
pub struct Tally {
    state: State,
    env: Env,
}

#[verge::durable_object]
impl Tally {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    /// Reads each counter over RPC and adds them up.
    #[rpc]
    fn sum(&mut self, names: Vec<String>) -> Result<Total> {
        let counters = self.env.durable_object("COUNTER")?;
        let mut seen = Vec::new();
        for name in names {
            let value = counters.get_by_name(&name)?.typed::<Counter>().get()?;
            seen.push((name, value));
        }
        let storage = self.state.storage();
        let computed = storage.get::<i64>("computed")?.unwrap_or(0) + 1;
        storage.put("computed", &computed)?;
        Ok(Total {
            total: seen.iter().map(|(_, v)| v).sum(),
            counters: seen,
            computed,
        })
    }
}

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .get("/counter/:name", |_, ctx| {
            let counter = counter(&ctx.env, ctx.param("name").unwrap_or_default())?;
            Response::json(&json!({ "value": counter.get()? }))
        })
        .post("/counter/:name", |req, ctx| {
            let by = match req.query_param("by") {
                Some(by) => by
                    .parse()
                    .map_err(|_| Error::BadRequest("?by= takes an integer".into()))?,
                None => 1,
            };
            let counter = counter(&ctx.env, ctx.param("name").unwrap_or_default())?;
            Response::json(&json!({ "value": counter.increment(by)? }))
        })
        .get("/counters", |req, ctx| {
            let names: Vec<String> = req
                .query_param("names")
                .unwrap_or_default()
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            let tally = ctx
                .env
                .durable_object("TALLY")?
                .get_by_name("main")?
                .typed::<Tally>();
            Response::json(&tally.sum(names)?)
        })
        .run(req, env)
}

fn counter(env: &Env, name: &str) -> Result<CounterClient> {
    Ok(env
        .durable_object("COUNTER")?
        .get_by_name(name)?
        .typed::<Counter>())
}
