//! A small catalogue API on `verge::Router`: path parameters, query
//! strings, JSON in and out, and the status codes that go with them.

use serde::{Deserialize, Serialize};
use serde_json::json;
use verge::{Env, Request, Response, Result, RouteContext, Router};

#[derive(Clone, Serialize)]
struct Item {
    id: u32,
    name: &'static str,
    price_cents: u32,
}

const CATALOGUE: &[Item] = &[
    Item {
        id: 1,
        name: "kettle",
        price_cents: 2_499,
    },
    Item {
        id: 2,
        name: "teapot",
        price_cents: 1_850,
    },
    Item {
        id: 3,
        name: "mug",
        price_cents: 650,
    },
    Item {
        id: 4,
        name: "strainer",
        price_cents: 399,
    },
];

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .get("/router", |_, _| {
            Response::json(&json!({
                "endpoints": [
                    "GET /router/items?offset=0&limit=2",
                    "GET /router/items/:id",
                    "POST /router/items {\"name\": \"...\", \"price_cents\": 100}",
                    "DELETE /router/items/:id",
                    "GET /router/status/:code",
                ]
            }))
        })
        .get("/router/items", list_items)
        .get("/router/items/:id", get_item)
        .post("/router/items", create_item)
        .delete("/router/items/:id", |_, ctx| match find(&ctx) {
            Some(_) => Ok(Response::empty()),
            None => not_found(&ctx),
        })
        .get("/router/status/:code", |_, ctx| {
            let code = ctx.param("code").unwrap_or_default();
            match code.parse::<u16>() {
                Ok(code @ 200..=599) => {
                    Ok(Response::text(format!("status {code}\n")).with_status(code))
                }
                _ => Err(verge::Error::BadRequest(format!(
                    "{code:?} is not a status code from 200 to 599"
                ))),
            }
        })
        .run(req, env)
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

fn list_items(req: Request, _: RouteContext) -> Result<Response> {
    let page: Page = req.query()?;
    let items: Vec<&Item> = CATALOGUE
        .iter()
        .skip(page.offset)
        .take(page.limit.unwrap_or(usize::MAX))
        .collect();
    Response::json(&json!({ "items": items, "total": CATALOGUE.len() }))
}

fn get_item(_: Request, ctx: RouteContext) -> Result<Response> {
    match find(&ctx) {
        Some(item) => Response::json(item),
        None => not_found(&ctx),
    }
}

/// The catalogue item named by `:id`.
fn find(ctx: &RouteContext) -> Option<&'static Item> {
    let id = ctx.param("id")?;
    CATALOGUE.iter().find(|item| item.id.to_string() == id)
}

fn not_found(ctx: &RouteContext) -> Result<Response> {
    let id = ctx.param("id").unwrap_or_default();
    Ok(Response::json(&json!({ "error": format!("no item {id}") }))?.with_status(404))
}

#[derive(Deserialize)]
struct NewItem {
    name: String,
    price_cents: u32,
}

fn create_item(req: Request, _: RouteContext) -> Result<Response> {
    let new: NewItem = req.json()?;
    if new.name.trim().is_empty() {
        return Ok(Response::json(&json!({ "error": "name must not be empty" }))?.with_status(422));
    }
    let id = CATALOGUE.len() as u32 + 1;
    Response::json(&json!({ "id": id, "name": new.name, "price_cents": new.price_cents }))?
        .with_status(201)
        .with_header("location", &format!("/router/items/{id}"))
}
