//! Flash-sale stock, one Durable Object per SKU. Every reservation goes
//! through the object one at a time, so no two buyers get the last item.
//!
//! - `POST /inventory/:sku/restock?quantity=N` adds stock;
//! - `POST /inventory/:sku/reserve` takes one (409 when sold out);
//! - `GET /inventory/:sku` shows what is left.

use serde::{Deserialize, Serialize};
use serde_json::json;
use verge::{Env, Request, Response, Result, RouteContext, Router, State, Storage};

/// The answer to a reservation.
#[derive(Serialize, Deserialize)]
pub struct Reservation {
    pub success: bool,
    pub remaining: u64,
}

/// The stock of one SKU, kept in the object's key-value storage.
pub struct Inventory {
    storage: Storage,
}

#[verge::durable_object]
impl Inventory {
    fn new(state: State, _env: Env) -> Self {
        Self {
            storage: state.storage(),
        }
    }

    /// Takes one item, if there is one left.
    #[rpc]
    fn reserve(&mut self) -> Result<Reservation> {
        let stock = self.stock()?;
        if stock == 0 {
            return Ok(Reservation {
                success: false,
                remaining: 0,
            });
        }
        self.storage.put("stock", &(stock - 1))?;
        Ok(Reservation {
            success: true,
            remaining: stock - 1,
        })
    }

    /// How many items are left.
    #[rpc]
    fn stock(&self) -> Result<u64> {
        Ok(self.storage.get("stock")?.unwrap_or(0))
    }

    /// Adds `quantity` items; returns the new stock.
    #[rpc]
    fn restock(&mut self, quantity: u64) -> Result<u64> {
        let stock = self.stock()? + quantity;
        self.storage.put("stock", &stock)?;
        Ok(stock)
    }

    /// The seed article's HTTP interface, for clients that talk to the
    /// object directly: `/reserve` and `/stock`.
    fn fetch(&mut self, req: Request) -> Result<Response> {
        match req.path().rsplit('/').next() {
            Some("reserve") => Response::json(&self.reserve()?),
            Some("stock") => Response::json(&json!({ "stock": self.stock()? })),
            _ => Ok(Response::not_found()),
        }
    }
}

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    Router::new()
        .get("/inventory/:sku", |_, ctx| {
            Response::json(&json!({ "stock": item(&ctx)?.stock()? }))
        })
        .post("/inventory/:sku/reserve", |_, ctx| {
            let reservation = item(&ctx)?.reserve()?;
            let status = if reservation.success { 200 } else { 409 };
            Ok(Response::json(&reservation)?.with_status(status))
        })
        .post("/inventory/:sku/restock", |req, ctx| {
            let quantity: u64 = req
                .query_param("quantity")
                .and_then(|q| q.parse().ok())
                .ok_or_else(|| verge::Error::BadRequest("pass ?quantity=N".into()))?;
            Response::json(&json!({ "stock": item(&ctx)?.restock(quantity)? }))
        })
        .run(req, env)
}

/// The object for the SKU in the path, through its typed RPC client.
fn item(ctx: &RouteContext) -> Result<InventoryClient> {
    let sku = ctx.param("sku").unwrap_or_default();
    Ok(ctx
        .env
        .durable_object("INVENTORY")?
        .get_by_name(sku)?
        .typed::<Inventory>())
}
