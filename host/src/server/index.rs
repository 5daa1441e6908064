//! The page `verge up` serves at `/`: every bundled example, its routes,
//! and requests to try, each as a curl line and a button that sends it.

use std::fmt::Write;

/// One listed worker.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub name: String,
    pub description: String,
    pub routes: Vec<String>,
    pub requests: Vec<ExampleRequest>,
}

/// A request worth trying, from `[package.metadata.verge] try` in the
/// example's Cargo.toml.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ExampleRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body: Option<String>,
    /// It reaches the internet (it fails on a machine without access).
    #[serde(default)]
    pub network: bool,
}

/// The rendered page.
#[derive(Debug, Clone)]
pub struct IndexPage {
    html: String,
}

/// Sends a request from its button and shows the answer under it; puts
/// the page's own origin into the curl lines.
const SCRIPT: &str = r#"<script>
for (const origin of document.querySelectorAll(".origin")) origin.textContent = location.origin;
for (const button of document.querySelectorAll("button[data-path]")) {
  button.addEventListener("click", async () => {
    const out = button.nextElementSibling;
    const init = { method: button.dataset.method };
    if (button.dataset.body) init.body = button.dataset.body;
    try {
      const response = await fetch(button.dataset.path, init);
      const text = await response.text();
      out.textContent = response.status + " " + response.statusText + "\n" + text.slice(0, 2000);
    } catch (error) {
      out.textContent = String(error);
    }
  });
}
</script>"#;

impl IndexPage {
    pub fn new(entries: &[IndexEntry]) -> Self {
        let mut html = String::from(concat!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Verge examples</title>",
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}",
            "code{background:#f3f3f3;padding:0 .25rem}li{margin:.5rem 0;list-style:none}",
            "pre{background:#f8f8f8;margin:.25rem 0;white-space:pre-wrap}pre:empty{display:none}",
            "button{margin-left:.5rem}</style></head><body>",
            "<h1>Verge</h1><p>Every bundled example, built from <code>guest-examples/</code> and served by this host. ",
            "Each request below runs from its button, or from a terminal with its curl line.</p>",
        ));
        for entry in entries {
            let _ = write!(
                html,
                "<h2>{}</h2><p>{}</p><p>Routes: {}</p><ul>",
                escape(&entry.name),
                escape(&entry.description),
                entry
                    .routes
                    .iter()
                    .map(|r| format!("<code>{}</code>", escape(r)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            for request in &entry.requests {
                html.push_str(&request_item(request));
            }
            html.push_str("</ul>");
        }
        html.push_str(SCRIPT);
        html.push_str("</body></html>");
        Self { html }
    }

    pub fn html(&self) -> &str {
        &self.html
    }
}

/// One request: its curl line (a GET's path is also a link), its button,
/// and a place for the answer.
fn request_item(request: &ExampleRequest) -> String {
    let (method, path) = (escape(&request.method), escape(&request.path));
    let target = if request.method == "GET" {
        format!("<a href=\"{path}\">{path}</a>")
    } else {
        path.clone()
    };
    let mut curl = String::from("curl");
    if request.method != "GET" {
        let _ = write!(curl, " -X {method}");
    }
    let _ = write!(
        curl,
        " '<span class=\"origin\">http://127.0.0.1:8787</span>{target}'"
    );
    let mut data = format!("data-method=\"{method}\" data-path=\"{path}\"");
    if let Some(body) = &request.body {
        let body = escape(body);
        let _ = write!(curl, " --data '{body}'");
        let _ = write!(data, " data-body=\"{body}\"");
    }
    if request.network {
        data.push_str(" data-network");
    }
    let note = if request.network {
        " <small>(needs internet access)</small>"
    } else {
        ""
    };
    format!("<li><code>{curl}</code>{note}<button {data}>Send</button><pre></pre></li>")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
