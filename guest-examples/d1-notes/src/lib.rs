//! Notes with tags on a D1 database: the seed's "CRUD apps, relational
//! data". The schema lives in `migrations/` (applied by `verge up` and
//! `verge dev`, or `verge d1 migrations apply DB`).
//!
//! - `POST /notes` `{"title": "...", "body": "...", "tags": ["..."]}`
//!   creates a note and its tags in one atomic batch;
//! - `GET /notes` lists notes with their tags (a join), `?tag=T` only
//!   those tagged T;
//! - `GET /notes/:id`, `PUT /notes/:id` (any of title, body, tags),
//!   `DELETE /notes/:id` (its tags go with it: `ON DELETE CASCADE`);
//! - `GET /notes/tags` counts the notes of each tag.

use serde::{Deserialize, Serialize};
use serde_json::json;
use verge::{
    D1Database, D1PreparedStatement, Env, Error, Request, Response, Result, RouteContext, Router,
};

/// A note as the API shows it, tags as a list.
#[derive(Serialize)]
struct Note {
    id: i64,
    title: String,
    body: String,
    tags: Vec<String>,
    created_at: i64,
    updated_at: i64,
}

/// A row of the notes-with-tags join: tags comma-separated.
#[derive(Deserialize)]
struct NoteRow {
    id: i64,
    title: String,
    body: String,
    tags: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<NoteRow> for Note {
    fn from(row: NoteRow) -> Self {
        Note {
            id: row.id,
            title: row.title,
            body: row.body,
            tags: row
                .tags
                .map(|t| t.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Deserialize)]
struct NewNote {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct NoteChange {
    title: Option<String>,
    body: Option<String>,
    tags: Option<Vec<String>>,
}

/// Every note with its tags, sorted; `WHERE` clauses go in `{filter}`.
const SELECT_NOTES: &str = "SELECT n.id, n.title, n.body, n.created_at, n.updated_at,
            (SELECT group_concat(tag, ',') FROM (SELECT tag FROM note_tags WHERE note_id = n.id ORDER BY tag)) AS tags
     FROM notes n {filter} ORDER BY n.id";

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    let db = env.d1("DB")?;
    Router::with_data(db)
        .get("/notes", list)
        .post("/notes", create)
        .get("/notes/tags", |_, ctx| {
            let tags: Vec<serde_json::Value> = ctx
                .data
                .prepare("SELECT tag, count(*) AS notes FROM note_tags GROUP BY tag ORDER BY tag")
                .all()?
                .results()?;
            Response::json(&json!({ "tags": tags }))
        })
        .get("/notes/:id", |_, ctx| match find(&ctx.data, id(&ctx)?)? {
            Some(note) => Response::json(&note),
            None => Ok(Response::error("no such note", 404)),
        })
        .put("/notes/:id", update)
        .delete("/notes/:id", |_, ctx| {
            let deleted = ctx
                .data
                .prepare("DELETE FROM notes WHERE id = ?")
                .bind((id(&ctx)?,))?
                .run()?;
            match deleted.meta().changes {
                0 => Ok(Response::error("no such note", 404)),
                _ => Ok(Response::empty()),
            }
        })
        .run(req, env)
}

fn list(req: Request, ctx: RouteContext<D1Database>) -> Result<Response> {
    let statement = match req.query_param("tag") {
        Some(tag) => ctx
            .data
            .prepare(SELECT_NOTES.replace(
                "{filter}",
                "WHERE n.id IN (SELECT note_id FROM note_tags WHERE tag = ?)",
            ))
            .bind((tag,))?,
        None => ctx.data.prepare(SELECT_NOTES.replace("{filter}", "")),
    };
    let notes: Vec<NoteRow> = statement.all()?.results()?;
    let notes: Vec<Note> = notes.into_iter().map(Note::from).collect();
    Response::json(&json!({ "notes": notes }))
}

/// The note and its tags go in together or not at all: one batch.
fn create(req: Request, ctx: RouteContext<D1Database>) -> Result<Response> {
    let new: NewNote = req.json()?;
    let db = &ctx.data;
    let mut statements = vec![
        db.prepare("INSERT INTO notes (title, body) VALUES (?, ?)")
            .bind((new.title, new.body))?,
    ];
    statements.extend(tag_inserts(db, "last_insert_rowid()", &new.tags)?);
    let results = db.batch(statements).map_err(bad_input)?;
    let id = results[0].meta().last_row_id;
    let note = find(db, id)?.ok_or("the new note vanished")?;
    Ok(Response::json(&note)?.with_status(201))
}

/// Changes what the body names; new tags replace the old ones, in the
/// same transaction.
fn update(req: Request, ctx: RouteContext<D1Database>) -> Result<Response> {
    let change: NoteChange = req.json()?;
    let (db, id) = (&ctx.data, id(&ctx)?);
    let mut statements = vec![
        db.prepare(
            "UPDATE notes SET title = coalesce(?, title), body = coalesce(?, body), updated_at = unixepoch()
             WHERE id = ?",
        )
        .bind((change.title, change.body, id))?,
    ];
    if let Some(tags) = &change.tags {
        statements.push(
            db.prepare("DELETE FROM note_tags WHERE note_id = ?")
                .bind((id,))?,
        );
        statements.extend(tag_inserts(db, &id.to_string(), tags)?);
    }
    let results = db.batch(statements).map_err(bad_input)?;
    if results[0].meta().changes == 0 {
        return Ok(Response::error("no such note", 404));
    }
    Response::json(&find(db, id)?.ok_or("the note vanished")?)
}

/// One insert per tag, for the note whose id is the SQL expression `note`.
fn tag_inserts(db: &D1Database, note: &str, tags: &[String]) -> Result<Vec<D1PreparedStatement>> {
    tags.iter()
        .map(|tag| {
            db.prepare(format!(
                "INSERT INTO note_tags (note_id, tag) VALUES ({note}, ?) ON CONFLICT DO NOTHING"
            ))
            .bind((tag.trim().to_lowercase(),))
        })
        .collect()
}

fn find(db: &D1Database, id: i64) -> Result<Option<Note>> {
    let row: Option<NoteRow> = db
        .prepare(SELECT_NOTES.replace("{filter}", "WHERE n.id = ?"))
        .bind((id,))?
        .first(None)?;
    Ok(row.map(Note::from))
}

fn id<D>(ctx: &RouteContext<D>) -> Result<i64> {
    ctx.param("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| Error::BadRequest("a note id is a number".into()))
}

/// A note that breaks the schema's rules (an empty title, say) is the
/// client's mistake: a 400 with SQLite's reason.
fn bad_input(error: Error) -> Error {
    match error {
        Error::D1(verge::D1Error::Constraint(why)) => Error::BadRequest(why),
        other => other,
    }
}
