//! The chat room in a real browser: headless Chromium (Debian's
//! `chromium`), driven over the DevTools protocol, opens `/chat` in two
//! pages, joins one room as two people, sends from one page and sees the
//! message arrive in the other. A screenshot of the second page is saved
//! as target/screenshots/chat.png.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use support::{TestHost, guest, repo};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_chat_through_one_room() {
    let Some(binary) = chromium() else {
        eprintln!(
            "SKIPPED two_browser_pages_chat_through_one_room: Chromium is not installed and \
             cannot be (not root); install Debian's `chromium` package (.ci/run does)"
        );
        return;
    };
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("chat-room")).await.status(), 201);
    let page_url = format!("{}/chat", host.url);

    let mut browser = Browser::launch(&binary).await;
    let ada = browser.open(&page_url).await;
    let grace = browser.open(&page_url).await;
    for (page, name) in [(&ada, "ada"), (&grace, "grace")] {
        browser
            .eval(
                page,
                &format!(
                    "document.getElementById('room').value = 'browsers';
                     document.getElementById('name').value = '{name}';
                     document.getElementById('join-button').click();"
                ),
            )
            .await;
        browser
            .wait_for(page, "!document.getElementById('message').disabled")
            .await;
    }
    browser
        .wait_for(
            &ada,
            "document.getElementById('log').textContent.includes('grace joined')",
        )
        .await;

    browser
        .eval(
            &ada,
            "document.getElementById('message').value = 'hello from ada';
             document.getElementById('send-button').click();",
        )
        .await;
    browser
        .wait_for(
            &grace,
            "document.getElementById('log').textContent.includes('hello from ada')",
        )
        .await;
    browser
        .wait_for(
            &ada,
            "document.getElementById('log').textContent.includes('hello from ada')",
        )
        .await;
    let status = browser
        .eval(&grace, "document.getElementById('status').textContent")
        .await;
    assert_eq!(status, "In room browsers as grace.");

    let screenshot = browser.screenshot(&grace).await;
    assert!(screenshot.starts_with(b"\x89PNG"), "not a PNG");
    let dir = repo().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("chat.png"), screenshot).unwrap();
    host.shutdown().await;
}

/// A page: its DevTools session.
struct Page {
    session: String,
}

/// Headless Chromium and a DevTools protocol connection to it.
struct Browser {
    child: Child,
    devtools: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch(binary: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--metrics-recording-only",
                "--no-first-run",
                "--no-default-browser-check",
                "--mute-audio",
                "--window-size=900,700",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        // Chromium prints where its DevTools endpoint listens.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let endpoint = tokio::task::spawn_blocking(move || {
            let mut lines = stderr.lines();
            let endpoint = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.split_once("DevTools listening on ")
                    .map(|(_, url)| url.to_owned())
            });
            // Keep draining, so Chromium never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            endpoint
        })
        .await
        .unwrap()
        .expect("Chromium did not print its DevTools endpoint");
        let (devtools, _) = connect_async(&endpoint).await.unwrap();
        Self {
            child,
            devtools,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends a DevTools command and waits for its result.
    async fn call(&mut self, session: Option<&Page>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(page) = session {
            command["sessionId"] = json!(page.session);
        }
        self.devtools
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(WAIT, self.devtools.next())
                .await
                .unwrap_or_else(|_| panic!("{method} got no answer"))
                .expect("the DevTools connection is open")
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    async fn open(&mut self, url: &str) -> Page {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        let page = Page {
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        };
        self.call(Some(&page), "Page.navigate", json!({ "url": url }))
            .await;
        self.wait_for(
            &page,
            "document.readyState === 'complete' && !!document.getElementById('join')",
        )
        .await;
        page
    }

    /// Evaluates `expression` in the page; its value.
    async fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let result = self
            .call(
                Some(page),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    async fn wait_for(&mut self, page: &Page, condition: &str) {
        let deadline = Instant::now() + WAIT;
        while self.eval(page, condition).await != json!(true) {
            assert!(
                Instant::now() < deadline,
                "the page never satisfied {condition}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&mut self, page: &Page) -> Vec<u8> {
        let shot = self
            .call(
                Some(page),
                "Page.captureScreenshot",
                json!({ "format": "png" }),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Chromium, installed with apt-get (seconds, no build) when
/// missing and possible.
fn chromium() -> Option<String> {
    let found = || {
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|name| {
                Command::new(name)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
    };
    if let Some(name) = found() {
        return Some(name.to_owned());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        eprintln!("installing chromium with apt-get for the browser test");
        let _ = Command::new("sh")
            .args(["-c", "apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)"])
            .status();
    }
    found().map(str::to_owned)
}
