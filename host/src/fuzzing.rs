//! Entry points for the cargo-fuzz targets in `host/fuzz/`.
//!
//! Built only with the `fuzzing` feature, which nothing but the fuzz crate
//! turns on: it reaches crate-private parsers that the public API hides,
//! and its server entry points start a real host (in a temporary data
//! directory, on loopback ports) the first time they run. It is never part
//! of the `verge` binary.
//!
//! Each function takes the fuzzer's raw input, does with it what untrusted
//! input can make the host do, and panics when a property the host
//! promises does not hold. A panic anywhere is a crash, including one in a
//! server task that tokio would otherwise swallow: libFuzzer's panic hook
//! aborts the process.
//!
//! | target | input | drives |
//! |---|---|---|
//! | `worker_config` | verge.toml text | [`WorkerConfig::parse`] |
//! | `outbound_rule` | a rule, then URLs, one a line | `OutboundRule` parsing and matching |
//! | `routes` | `pattern\tworker` and `>host\tpath` lines | `RoutePattern`, `RouteTable` |
//! | `object_id` | bytes | [`ObjectId::parse`], [`ObjectId::from_name`] |
//! | `admin_upload` | a Content-Type line, then the body | `POST /v1/workers/{name}/versions` |
//! | `front_door` | raw bytes on a TCP connection | the front door's listener and router |

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{OutboundRule, RoutePattern, RouteTable, WorkerConfig, validate_name};
use crate::objects::{ObjectId, ObjectKey, ObjectOptions};
use crate::platform::{Platform, PlatformOptions};
use crate::runtime::EngineOptions;
use crate::server::{
    AdminOptions, ConnectionLimits, ExampleRequest, IndexEntry, IndexPage, Server, ServerOptions,
};

/// Fuzzes `verge.toml` parsing and validation ([`WorkerConfig::parse`]).
///
/// Asserts, for every config that parses: its name is valid, each route's
/// text parses back to the same route, the limits' byte sizes compute
/// without overflow, and parsing the same text again gives the same config.
pub fn worker_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = WorkerConfig::parse(text) else {
        return;
    };
    assert!(
        validate_name(&config.name).is_ok(),
        "accepted the invalid name {:?}",
        config.name
    );
    for route in &config.routes {
        let again = route.to_string().parse::<RoutePattern>();
        assert_eq!(again.ok().as_ref(), Some(route), "route {route} re-parses");
    }
    let limits = config.limits;
    let _ = (
        limits.memory_bytes(),
        limits.body_bytes(),
        limits.object_storage_bytes(),
    );
    assert_eq!(
        WorkerConfig::parse(text).ok().as_ref(),
        Some(&config),
        "parsing is a function of the text"
    );
}

/// Fuzzes `allowed_outbound_hosts` rules: parsing (`OutboundRule::from_str`)
/// and matching a URL against them (`OutboundRule::allows`, as `fetch`
/// checks each hop, and `names_address`, as the address guard does).
///
/// The input is a rule on its first line, then URLs, one a line. Asserts
/// that a rule naming an address also allows a URL with that address as
/// its host, that host names match regardless of ASCII case, and that a
/// rule written from a URL's own origin (`scheme://host:port`, and with
/// port `*`), when it parses, allows that URL (and names its address).
pub fn outbound_rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let rule_text = lines.next().unwrap_or_default();
    let rule = rule_text.parse::<OutboundRule>().ok();
    if let Some(rule) = &rule {
        assert_eq!(
            rule_text.parse::<OutboundRule>().ok().as_ref(),
            Some(rule),
            "parsing is a function of the text"
        );
    }
    for line in lines {
        let Ok(url) = url::Url::parse(line) else {
            continue;
        };
        let Some(host) = url.host() else {
            continue;
        };
        let scheme = url.scheme();
        // As `fetch` reads them.
        let port = url.port_or_known_default().unwrap_or(80);
        let address = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::from(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::from(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(rule) = &rule {
            let allowed = rule.allows(scheme, &host, port);
            if let Some(ip) = address
                && rule.names_address(scheme, ip, port)
            {
                assert!(
                    allowed,
                    "{rule_text:?} names {ip} but does not allow {url} ({scheme}, {host}, {port})"
                );
            }
            if let url::Host::Domain(name) = host {
                let upper = name.to_ascii_uppercase();
                assert_eq!(
                    rule.allows(scheme, &url::Host::Domain(upper.as_str()), port),
                    allowed,
                    "{rule_text:?} matches {name:?} and {upper:?} differently"
                );
            }
        }
        if !matches!(scheme, "http" | "https") {
            continue;
        }
        for origin in [
            format!("{scheme}://{host}:{port}"),
            format!("{scheme}://{host}:*"),
        ] {
            let Ok(exact) = origin.parse::<OutboundRule>() else {
                continue;
            };
            assert!(
                exact.allows(scheme, &host, port),
                "the rule {origin:?} does not allow {url} ({scheme}, {host:?}, {port})"
            );
            if let Some(ip) = address {
                assert!(
                    exact.names_address(scheme, ip, port),
                    "the rule {origin:?} does not name {ip} port {port}"
                );
            }
        }
    }
}

/// Fuzzes route patterns and the route table: `RoutePattern` parsing,
/// `RouteTable::new` and `RouteTable::lookup`.
///
/// The input is lines: `pattern\tworker` adds a route, `>host\tpath` is a
/// lookup, any other line is a pattern only parsed. Asserts that a
/// pattern's text parses back to the same pattern and that its `link`, if
/// any, matches on any host; that the table is refused exactly when two
/// workers list the same pattern; and, for each lookup (the input's, and
/// one aimed at each route), that the worker found has a pattern matching
/// the request, that nothing is found only when no pattern matches, and
/// that the answer does not depend on the order the routes were listed in.
pub fn routes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut routes: Vec<(RoutePattern, String)> = Vec::new();
    let mut lookups: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        if let Some(lookup) = line.strip_prefix('>') {
            let (host, path) = lookup.split_once('\t').unwrap_or((lookup, "/"));
            lookups.push((host.to_owned(), path.to_owned()));
            continue;
        }
        let (pattern_text, worker) = match line.split_once('\t') {
            Some((pattern, worker)) => (pattern, Some(worker)),
            None => (line, None),
        };
        let Ok(pattern) = pattern_text.parse::<RoutePattern>() else {
            continue;
        };
        assert_eq!(pattern.to_string(), pattern_text);
        assert_eq!(
            pattern_text.parse::<RoutePattern>().ok().as_ref(),
            Some(&pattern)
        );
        if let Some(worker) = worker {
            // A request aimed at this route: its host (a `*.` host with a
            // subdomain) and its literal path.
            let (host, path) = pattern_text.split_at(pattern_text.find('/').unwrap_or(0));
            let host = match host.strip_prefix("*.") {
                Some(suffix) => format!("sub.{suffix}"),
                None if host.is_empty() || host == "*" => "localhost:8787".to_owned(),
                None => host.to_owned(),
            };
            lookups.push((host, path.trim_end_matches('*').to_owned()));
            routes.push((pattern, worker.to_owned()));
        }
    }
    let conflict = routes
        .iter()
        .enumerate()
        .any(|(i, (pattern, worker))| routes[..i].iter().any(|(p, w)| p == pattern && w != worker));
    let table = RouteTable::new(routes.iter().cloned());
    assert_eq!(
        table.is_err(),
        conflict,
        "a conflict is reported exactly when two workers list the same pattern: {routes:?}"
    );
    let Ok(table) = table else {
        return;
    };
    let reversed = RouteTable::new(routes.iter().rev().cloned()).expect("no conflict either way");
    for (host, path) in &lookups {
        let found = table.lookup(host, path);
        let bare = host
            .rsplit_once(':')
            .map_or(host.as_str(), |(h, _)| h)
            .to_ascii_lowercase();
        let mut matching = routes.iter().filter(|(p, _)| p.matches(&bare, path));
        match found {
            None => assert!(
                matching.next().is_none(),
                "nothing serves {host}{path} though a route matches: {routes:?}"
            ),
            Some(worker) => assert!(
                matching.any(|(_, w)| w == worker),
                "{worker} serves {host}{path} without a matching route: {routes:?}"
            ),
        }
        assert_eq!(
            reversed.lookup(host, path),
            found,
            "which worker serves {host:?} {path:?} depends on the order of the routes: {routes:?}"
        );
    }
}

/// Fuzzes object ids: [`ObjectId::parse`] on the input as text, and
/// [`ObjectId::from_name`] with a key, namespace and name cut from it (the
/// key is the first 32 bytes, the namespace runs to the first NUL, the
/// name is the rest; namespaces never hold a NUL).
///
/// Asserts that a parsed id displays as the lower-case input and parses
/// back to itself; that anything else was refused; that a named id is
/// stable, displays as 64 lower-case hex digits and parses back (in either
/// case) to itself; and that moving bytes from the name to the namespace
/// gives another id.
pub fn object_id(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        match ObjectId::parse(text) {
            Ok(id) => {
                let shown = id.to_string();
                assert_eq!(shown, text.to_ascii_lowercase());
                assert_eq!(ObjectId::parse(&shown), Ok(id));
            }
            Err(_) => assert!(
                text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()),
                "refused the id {text:?}"
            ),
        }
    }
    let (key, rest) = data.split_at(data.len().min(32));
    let rest = String::from_utf8_lossy(rest);
    let rest: &str = &rest;
    let (namespace, name) = rest.split_once('\0').unwrap_or((rest, ""));
    let id = ObjectId::from_name(key, namespace, name);
    assert_eq!(id, ObjectId::from_name(key, namespace, name));
    let shown = id.to_string();
    assert!(
        shown.len() == 64
            && shown
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{shown:?}"
    );
    assert_eq!(ObjectId::parse(&shown), Ok(id));
    assert_eq!(ObjectId::parse(&shown.to_ascii_uppercase()), Ok(id));
    let object = ObjectKey {
        namespace: namespace.into(),
        id,
    };
    assert_eq!(object.to_string(), format!("{namespace}/{shown}"));
    // The same bytes cut elsewhere: another (namespace, name) pair.
    if let Some(first) = name.chars().next()
        && first != '\0'
    {
        let (moved, name2) = name.split_at(first.len_utf8());
        let namespace2 = format!("{namespace}{moved}");
        assert_ne!(
            ObjectId::from_name(key, &namespace2, name2),
            id,
            "({namespace:?}, {name:?}) and ({namespace2:?}, {name2:?}) share an id"
        );
    }
}

/// The token the fuzzed hosts' admin API requires.
const ADMIN_TOKEN: &str = "fuzzing-admin-token-0123456789";

/// The greeting the `hello` example answers `GET /hello` with (its
/// verge.toml's `GREETING`).
const HELLO_GREETING: &str = "Hello from Verge!";

/// A host started once per fuzzing process: a tokio runtime, a platform
/// in a temporary data directory with the `hello` example deployed, and
/// the real server (front door and admin API) on loopback ports.
struct FuzzHost {
    runtime: tokio::runtime::Runtime,
    front: SocketAddr,
    admin: SocketAddr,
    client: reqwest::Client,
    data_dir: PathBuf,
    /// Kept so the server's tasks live as long as the process.
    _server: Mutex<Server>,
    /// Inputs the front door has been sent.
    inputs: AtomicU64,
}

static HOST: OnceLock<FuzzHost> = OnceLock::new();

impl FuzzHost {
    fn get() -> &'static Self {
        HOST.get_or_init(Self::start)
    }

    fn start() -> Self {
        // libFuzzer's `main` is not Rust's: a write to a closed socket
        // would kill the process instead of failing.
        // SAFETY: ignoring SIGPIPE is what Rust's own runtime does at start.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let data_dir = std::env::temp_dir().join(format!("verge-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        extern "C" fn remove_data_dir() {
            if let Some(host) = HOST.get() {
                let _ = std::fs::remove_dir_all(&host.data_dir);
            }
        }
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(remove_data_dir) };

        // `just fuzz` sets RUSTC_BOOTSTRAP for cargo-fuzz's own build; the
        // guests' build must not see it (nor rebuild because of it).
        // SAFETY: no other thread of this process reads the environment
        // yet: the runtime starts below, and libFuzzer's threads do not.
        unsafe { std::env::remove_var("RUSTC_BOOTSTRAP") };
        let guests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guest-examples");
        let hello = crate::toolchain::build(&guests, crate::toolchain::Symbols::Strip)
            .expect("building guest-examples")
            .into_iter()
            .find(|c| c.name == "hello")
            .expect("guest-examples has `hello`");
        let wasm = std::fs::read(&hello.wasm).expect("reading hello's component");
        let config = std::fs::read_to_string(hello.package_dir.join("verge.toml"))
            .expect("reading hello's verge.toml");

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = runtime.block_on(async {
            let platform = Platform::open(PlatformOptions {
                data_dir: data_dir.clone(),
                engine: EngineOptions {
                    max_instances: 16,
                    max_objects: 16,
                    max_memory_mb: 256,
                    ..EngineOptions::default()
                },
                objects: ObjectOptions::default(),
                dev: false,
                cluster: None,
            })
            .await
            .expect("opening the platform");
            platform
                .deploy("hello", wasm, &config, true)
                .await
                .expect("deploying hello");
            let index = IndexPage::new(&[IndexEntry {
                name: "hello".into(),
                description: "the hello example".into(),
                routes: vec!["/hello".into(), "/hello/*".into()],
                requests: vec![ExampleRequest {
                    method: "GET".into(),
                    path: "/hello".into(),
                    body: None,
                    network: false,
                }],
            }]);
            Server::start(
                platform,
                ServerOptions {
                    listen: "127.0.0.1:0".parse().expect("an address"),
                    admin: Some(AdminOptions {
                        listen: "127.0.0.1:0".parse().expect("an address"),
                        token: ADMIN_TOKEN.into(),
                        hosts: Vec::new(),
                    }),
                    index: Some(index),
                    limits: ConnectionLimits {
                        // An input that stops halfway through its headers
                        // costs a second, not ten.
                        header_timeout: Duration::from_secs(1),
                        ..ConnectionLimits::default()
                    },
                },
            )
            .await
            .expect("starting the server")
        });
        Self {
            front: server.addr(),
            admin: server.admin_addr().expect("the admin API listens"),
            client: reqwest::Client::new(),
            runtime,
            data_dir,
            _server: Mutex::new(server),
            inputs: AtomicU64::new(0),
        }
    }

    /// `GET /hello` on a fresh connection answers 200 with the greeting.
    fn check_hello(&self) {
        let request = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let response = self.runtime.block_on(exchange(
            self.front,
            request,
            false,
            Duration::from_secs(10),
        ));
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 200") && response.contains(HELLO_GREETING),
            "the front door no longer serves GET /hello: {response:?}"
        );
    }
}

/// Writes `request` on a new connection to `addr` and reads the answer
/// until the server closes the connection or `patience` runs out. Returns
/// the start of what was read.
///
/// With `then_close`, the writing side is closed once the answer starts
/// (or [`ANSWER_WAIT`] passes without one), so that a server waiting for
/// more of the request, or for the next one, sees the end of the input.
/// Not sooner: an end of input read while a request is being served makes
/// hyper drop the connection, answer and all (it does not allow half-closed
/// connections by default).
async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    then_close: bool,
    patience: Duration,
) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("the server accepts connections");
    // Closing with a reset leaves no TIME_WAIT behind: thousands of
    // connections a second would otherwise use up the ephemeral ports.
    let _ = stream.set_zero_linger();
    // The server may answer and close before reading everything: fine.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 << 10];
    if then_close {
        match tokio::time::timeout(ANSWER_WAIT, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return response,
            Ok(Ok(n)) => response.extend_from_slice(&buffer[..n]),
            Err(_) => {}
        }
        let _ = stream.shutdown().await;
    }
    let _ = tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                // Keep the start; a big response is only drained.
                Ok(n) if response.len() < 64 << 10 => response.extend_from_slice(&buffer[..n]),
                Ok(_) => {}
            }
        }
    })
    .await;
    response
}

/// How long the front door target waits for an answer to start before it
/// closes its side of the connection.
const ANSWER_WAIT: Duration = Duration::from_millis(20);

/// Fuzzes the admin API's upload: the input's first line is the request's
/// `Content-Type` (a multipart boundary, or not), the rest its body,
/// POSTed to `/v1/workers/fuzz/versions` of a real host (over loopback,
/// through its listener, router, token check, multipart reading, config
/// validation and component checks and compilation) with the admin token
/// and `Host: localhost`. The `hello` example is deployed on `/hello`, so
/// a config claiming its routes meets a conflict.
///
/// Asserts that the API answers, and never with a server error (5xx), a
/// refusal of the token or host (401, 421) or an unknown route (404, 405):
/// whatever is wrong with an upload is the client's error, said as such.
/// An accepted upload is deleted again, so each input starts from the
/// same state.
pub fn admin_upload(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(content_type) = HeaderValue::from_bytes(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default().to_vec();
    let host = FuzzHost::get();
    let url = format!("http://{}/v1/workers/fuzz/versions", host.admin);
    host.runtime.block_on(async {
        let response = host
            .client
            .post(&url)
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, content_type)
            .bearer_auth(ADMIN_TOKEN)
            .body(body)
            .send()
            .await
            .expect("the admin API answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            !status.is_server_error()
                && ![
                    StatusCode::UNAUTHORIZED,
                    StatusCode::MISDIRECTED_REQUEST,
                    StatusCode::NOT_FOUND,
                    StatusCode::METHOD_NOT_ALLOWED,
                ]
                .contains(&status),
            "upload answered {status}: {text}"
        );
        if status.is_success() {
            let deleted = host
                .client
                .delete(format!("http://{}/v1/workers/fuzz", host.admin))
                .header(header::HOST, "localhost")
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("the admin API answers");
            assert!(deleted.status().is_success(), "deleting: {deleted:?}");
        }
    });
}

/// How often (in inputs) the front door target checks that `GET /hello`
/// still works.
const CHECK_EVERY: u64 = 64;

/// Fuzzes the front door: the input is written as-is on a fresh TCP
/// connection to a real host's front door (its listener, HTTP/1.1 or
/// HTTP/2 by the preface, the router and, for `/hello`, the `hello`
/// example); once the answer starts (or 20 ms pass) the connection's
/// writing side is closed, and the answer is read until the server closes
/// or a second passes.
///
/// Asserts nothing about the answer; a panic anywhere in the server
/// aborts, and every 64 inputs (and after the first) a normal
/// `GET /hello` must still answer 200 with the greeting.
pub fn front_door(data: &[u8]) {
    let host = FuzzHost::get();
    host.runtime
        .block_on(exchange(host.front, data, true, Duration::from_secs(1)));
    if host
        .inputs
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(CHECK_EVERY)
    {
        host.check_hello();
    }
}

#[cfg(test)]
mod tests {
    //! Replays the committed corpora (`host/fuzz/corpus/<target>/`) and
    //! the inputs that once crashed a target
    //! (`host/fuzz/regressions/<target>/`) through the pure targets. Run
    //! with `cargo test -p verge-host --features fuzzing --lib fuzzing`.

    use std::path::Path;

    fn replay(target: &str, run: fn(&[u8])) {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                eprintln!("replaying {}", path.display());
                run(&std::fs::read(&path).unwrap());
            }
        }
    }

    #[test]
    fn worker_config_inputs() {
        replay("worker_config", super::worker_config);
    }

    #[test]
    fn outbound_rule_inputs() {
        replay("outbound_rule", super::outbound_rule);
    }

    #[test]
    fn routes_inputs() {
        replay("routes", super::routes);
    }

    #[test]
    fn object_id_inputs() {
        replay("object_id", super::object_id);
    }
}
