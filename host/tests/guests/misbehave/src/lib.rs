//! Each path breaks one rule, so the tests can check the host survives it.

use std::hint::black_box;
use verge::{Env, Error, Request, Response, Result};

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    match req.path() {
        "/ok" => Ok(Response::text("ok")),
        "/loop" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "/spin" => {
            // A fixed amount of pure computation: the tests calibrate how
            // much CPU time an iteration takes.
            let iterations: u64 = req
                .query_param("iterations")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut x: u64 = 1;
            for i in 0..iterations {
                x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
            }
            Ok(Response::text(x.to_string()))
        }
        "/alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        "/panic" => panic!("deliberate panic for the tests"),
        "/error" => Err(Error::msg("deliberate handler error")),
        "/sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(60));
            Ok(Response::text("woke up"))
        }
        "/log" => {
            verge::info!("info line from the guest");
            println!("stdout line from the guest");
            eprintln!("stderr line from the guest");
            Ok(Response::text("logged"))
        }
        "/secret" => Ok(
            match env.secret(&req.query_param("name").unwrap_or_default()) {
                Ok(value) => Response::text(value),
                Err(e) => Response::error(e.to_string(), 404),
            },
        ),
        "/body-size" => Ok(Response::text(req.bytes().len().to_string())),
        "/fetch" => {
            let url = req.query_param("url").unwrap_or_default();
            let times: usize = req
                .query_param("times")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1);
            let mut statuses = Vec::new();
            for _ in 0..times {
                match verge::fetch(Request::get(&url)?) {
                    Ok(response) => statuses.push(response.status().to_string()),
                    Err(e) => statuses.push(e.to_string()),
                }
            }
            Ok(Response::text(statuses.join("\n")))
        }
        _ => Ok(Response::not_found()),
    }
}
