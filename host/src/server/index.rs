//! The page `verge up` serves at `/`: every bundled example and its routes.

use std::fmt::Write;

/// One listed worker.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub name: String,
    pub description: String,
    pub routes: Vec<String>,
    /// Paths worth clicking.
    pub links: Vec<String>,
}

/// The rendered page.
#[derive(Debug, Clone)]
pub struct IndexPage {
    html: String,
}

impl IndexPage {
    pub fn new(entries: &[IndexEntry]) -> Self {
        let mut html = String::from(concat!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Verge examples</title>",
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}",
            "code{background:#f3f3f3;padding:0 .25rem}li{margin:.25rem 0}</style></head><body>",
            "<h1>Verge</h1><p>Every bundled example, built from <code>guest-examples/</code> and served by this host.</p>",
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
            for link in &entry.links {
                let link = escape(link);
                let _ = write!(html, "<li><a href=\"{link}\">{link}</a></li>");
            }
            html.push_str("</ul>");
        }
        html.push_str("</body></html>");
        Self { html }
    }

    pub fn html(&self) -> &str {
        &self.html
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
