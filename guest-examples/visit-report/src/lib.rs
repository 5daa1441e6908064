//! A cron job that compacts and reports. Each visit is one raw row in a
//! Durable Object (cheap to write, costly to keep); every minute a cron
//! trigger folds the rows from before its scheduled time into daily
//! totals, then publishes the top pages to a KV namespace, where reading
//! the report never wakes the object.
//!
//! - `POST /visits/hit?page=/home` records a visit.
//! - `GET /visits/live` counts from the object itself, raw rows included.
//! - `GET /visits/report` reads the latest published report.

use serde::{Deserialize, Serialize};
use verge::{Env, Error, Request, Response, Result, Router, ScheduledEvent, State};

/// The report's key in the REPORTS namespace.
const REPORT_KEY: &str = "visits:latest";

/// Pages a report lists.
const TOP: usize = 10;

#[derive(Debug, Serialize, Deserialize)]
pub struct PageHits {
    page: String,
    hits: i64,
}

/// What one compaction did and found.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// The cron run's scheduled time, in ms since the Unix epoch.
    generated_for: i64,
    /// Raw rows folded into the daily totals by this run.
    compacted: i64,
    top: Vec<PageHits>,
}

/// The site's visits: raw rows as they arrive, daily totals once compacted.
pub struct VisitLog {
    state: State,
}

#[verge::durable_object]
impl VisitLog {
    fn new(state: State, _env: Env) -> Result<Self> {
        state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS hits (page TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS daily (
                 page TEXT NOT NULL, day TEXT NOT NULL, hits INTEGER NOT NULL,
                 PRIMARY KEY (page, day));",
            (),
        )?;
        Ok(Self { state })
    }

    #[rpc]
    fn record(&mut self, page: String, at: i64) -> Result<()> {
        self.state
            .storage()
            .sql()
            .exec("INSERT INTO hits (page, at) VALUES (?, ?)", (page, at))?;
        Ok(())
    }

    /// Folds the raw rows from before `before` (ms) into the daily totals,
    /// in one atomic event, and reports the top pages.
    #[rpc]
    fn compact(&mut self, before: i64) -> Result<Report> {
        let sql = self.state.storage().sql();
        sql.exec(
            "INSERT INTO daily (page, day, hits)
               SELECT page, date(at / 1000, 'unixepoch'), COUNT(*) FROM hits WHERE at < ?
               GROUP BY 1, 2
             ON CONFLICT (page, day) DO UPDATE SET hits = hits + excluded.hits",
            (before,),
        )?;
        let compacted = sql
            .exec("DELETE FROM hits WHERE at < ?", (before,))?
            .rows_written() as i64;
        let top = sql
            .exec(
                "SELECT page, SUM(hits) AS hits FROM daily GROUP BY page ORDER BY hits DESC, page LIMIT ?",
                (TOP as i64,),
            )?
            .to_array()?;
        Ok(Report {
            generated_for: before,
            compacted,
            top,
        })
    }

    /// Totals straight from the object: compacted days plus raw rows.
    #[rpc]
    fn live(&self) -> Result<Vec<PageHits>> {
        self.state
            .storage()
            .sql()
            .exec(
                "SELECT page, SUM(hits) AS hits FROM (
                     SELECT page, hits FROM daily UNION ALL SELECT page, 1 FROM hits)
                 GROUP BY page ORDER BY hits DESC, page",
                (),
            )?
            .to_array()
    }
}

fn site(env: &Env) -> Result<VisitLogClient> {
    Ok(env
        .durable_object("VISITS")?
        .get_by_name("site")?
        .typed::<VisitLog>())
}

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .post("/visits/hit", |req, ctx| {
            let page = req
                .query_param("page")
                .ok_or_else(|| Error::BadRequest("give ?page=/path".into()))?;
            site(&ctx.env)?.record(page.clone(), now_ms())?;
            Response::json(&serde_json::json!({ "recorded": page }))
        })
        .get("/visits/live", |_, ctx| Response::json(&site(&ctx.env)?.live()?))
        .get("/visits/report", |_, ctx| {
            let report: Option<Report> = ctx.env.kv("REPORTS")?.get(REPORT_KEY).json()?;
            Response::json(&serde_json::json!({
                "report": report,
                "schedule": "every minute; under verge dev, GET /__scheduled?worker=visit-report runs it now",
            }))
        })
        .run(req, env)
}

#[verge::scheduled]
fn scheduled(event: ScheduledEvent, env: Env) -> Result<()> {
    let report = site(&env)?.compact(event.scheduled_time())?;
    verge::info!(
        "cron {:?}: compacted {} visits, {} pages in the report",
        event.cron(),
        report.compacted,
        report.top.len()
    );
    env.kv("REPORTS")?.put_json(REPORT_KEY, &report)?.execute()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
