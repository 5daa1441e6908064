//! A client for a host's admin API, used by every command that talks to a
//! running host.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use reqwest::StatusCode;
use serde_json::Value;

/// Where `verge serve` and `verge up` put the admin API by default.
const DEFAULT_HOST: &str = "http://127.0.0.1:8788";

/// Which host to talk to.
#[derive(Args, Clone)]
pub(super) struct HostArgs {
    /// The host's admin API.
    #[arg(long = "host", env = "VERGE_HOST", default_value = DEFAULT_HOST)]
    url: String,
    /// Bearer token for the admin API.
    #[arg(long, env = "VERGE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The host's data directory, to read its token from when none is
    /// given (by default ./verge-data or ./.verge/up).
    #[arg(long = "data", env = "VERGE_DATA")]
    data: Option<std::path::PathBuf>,
}

impl HostArgs {
    /// `--host URL` to repeat in a command the user may run next, or
    /// nothing when the host is the default one.
    pub(super) fn flag(&self) -> String {
        if self.url == DEFAULT_HOST {
            String::new()
        } else {
            format!(" --host {}", self.url)
        }
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }
}

/// The host answered, and said no. Kept typed so that a command can put a
/// 404 in its own words (it knows the name the user typed; the host knows
/// only an id).
#[derive(Debug, thiserror::Error)]
#[error("the host refused ({status}): {message}")]
pub(super) struct Refused {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

pub(super) struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub(super) fn new(args: &HostArgs) -> Result<Self> {
        Ok(Self {
            base: admin_base(&args.url)?,
            token: super::token::client_token(args.token.as_deref(), args.data.as_deref())?,
            http: reqwest::Client::new(),
        })
    }

    /// Checks that the host answers as a Verge admin API and takes the
    /// token, so that a wrong `--host` or token fails in one line, before
    /// anything is built.
    pub(super) async fn check(&self) -> Result<()> {
        let base = &self.base;
        let response = self
            .request(reqwest::Method::GET, "/v1/workers")
            .send()
            .await
            .with_context(|| {
                format!("cannot reach the admin API at {base}: is the host running, and is this its admin address?")
            })?;
        let status = response.status();
        let body: Option<Value> = response.json().await.ok();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the admin API at {base} refused the token ({status}): pass --token or set VERGE_ADMIN_TOKEN (a host started without one keeps its own in <data dir>/admin-token)"
            );
        }
        if !status.is_success() || body.is_none_or(|body| body.get("workers").is_none()) {
            bail!(
                "{base} answered {status} but is not a Verge admin API: the public port? The admin API has its own (--admin-listen, 127.0.0.1:8788 by default)"
            );
        }
        Ok(())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Uploads a version; returns the host's deployment record.
    pub(super) async fn upload(
        &self,
        name: &str,
        component: Vec<u8>,
        config: &str,
        activate: bool,
    ) -> Result<Value> {
        let form = reqwest::multipart::Form::new()
            .part(
                "component",
                reqwest::multipart::Part::bytes(component)
                    .file_name(format!("{name}.wasm"))
                    .mime_str("application/wasm")?,
            )
            .text("config", config.to_owned());
        let path = format!("/v1/workers/{name}/versions?activate={activate}");
        self.send(self.request(reqwest::Method::POST, &path).multipart(form))
            .await
    }

    pub(super) async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub(super) async fn post(&self, path: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::POST, path)).await
    }

    pub(super) async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    pub(super) async fn post_body(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Value> {
        self.send(self.request(reqwest::Method::POST, path).body(body))
            .await
    }

    pub(super) async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> Result<Value> {
        self.send(self.request(reqwest::Method::PUT, path).body(body))
            .await
    }

    /// A PUT of `body` (which may stream) with its content type.
    pub(super) async fn put_typed(
        &self,
        path: &str,
        body: reqwest::Body,
        content_type: Option<&str>,
    ) -> Result<Value> {
        let mut request = self.request(reqwest::Method::PUT, path).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        self.send(request).await
    }

    /// A raw body, for downloads.
    pub(super) async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        Ok(accepted(response).await?.bytes().await?.to_vec())
    }

    /// A response whose body streams on (`/v1/tail`), once the host
    /// accepted the request.
    pub(super) async fn stream(
        &self,
        path: &str,
        query: &impl serde::Serialize,
    ) -> Result<reqwest::Response> {
        let response = self
            .request(reqwest::Method::GET, path)
            .query(query)
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        accepted(response).await
    }

    pub(super) async fn delete(&self, path: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        Ok(accepted(response)
            .await?
            .json()
            .await
            .unwrap_or(Value::Null))
    }
}

/// Where a storage command (`verge kv`, `verge d1`) works: a running
/// host's admin API, or with `--local` the state `verge dev` keeps, as
/// wrangler's `--local` does.
#[derive(Args)]
pub(super) struct TargetArgs {
    /// Works on the local state `verge dev` keeps, instead of a host.
    #[arg(long)]
    local: bool,
    /// The local state directory, with --local [default: ./.verge].
    #[arg(long, requires = "local")]
    persist_to: Option<std::path::PathBuf>,
    #[command(flatten)]
    host: HostArgs,
}

/// A storage command's target, opened: the admin client, or the local
/// store `S`.
pub(super) enum Target<S> {
    Host(AdminClient),
    Local(S),
}

impl TargetArgs {
    /// The admin client, or with `--local` what `local` opens on the state
    /// directory.
    pub(super) fn open<S>(&self, local: impl FnOnce(&std::path::Path) -> S) -> Result<Target<S>> {
        if self.local {
            let dir = self.persist_to.clone().unwrap_or_else(|| ".verge".into());
            return Ok(Target::Local(local(&dir)));
        }
        Ok(Target::Host(AdminClient::new(&self.host)?))
    }
}

/// A failed response as a [`Refused`], with the host's `{"error": ...}`.
async fn refused(response: reqwest::Response) -> Refused {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Refused {
        status,
        message: body["error"].as_str().unwrap_or("no details").to_owned(),
    }
}

/// The response, unless the host refused the request: then its error.
async fn accepted(response: reqwest::Response) -> Result<reqwest::Response> {
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(refused(response).await.into())
    }
}

/// The admin API's base URL from `--host`, which must be an http(s) URL:
/// `127.0.0.1:8788` would otherwise fail later as a "relative URL".
fn admin_base(host: &str) -> Result<String> {
    let scheme_hint = || anyhow!("--host {host:?} needs a scheme: http://{host}");
    let url = url::Url::parse(host).map_err(|_| scheme_hint())?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(scheme_hint());
    }
    Ok(host.trim_end_matches('/').to_owned())
}

/// Percent-encodes a query value or a path segment.
pub(super) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
