//! The native baseline: the hello example's `GET /hello` as a plain axum
//! handler, with the same JSON body. Prints `listening on ADDR` when ready.

use axum::Router;
use axum::routing::get;
use serde_json::json;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new().route(
        "/hello",
        get(|| async { axum::Json(json!({ "message": "Hello from Verge!", "path": "/hello" })) }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
