//! The native baselines for `GET /hello`, answering the hello example's
//! JSON (serialized per request, as the guest does):
//! - `native-hello ADDR`: a plain axum server; prints `listening on ADDR`.
//! - `native-hello --cgi`: one CGI-style response on stdout, then exit, as
//!   a process spawned per request would.

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

fn hello() -> Value {
    json!({ "message": "Hello from Verge!", "path": "/hello" })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    if arg == "--cgi" {
        print!(
            "Status: 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
            hello()
        );
        return Ok(());
    }
    let app = Router::new().route("/hello", get(|| async { axum::Json(hello()) }));
    let listener = tokio::net::TcpListener::bind(&arg).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
