//! A real headless Chromium, driven over the DevTools protocol (CDP) on a websocket: enough
//! to open a page, run JavaScript in it and take screenshots.
//!
//! The browser is Debian's `chromium`, installed by `.ci/install-chromium.sh` when missing,
//! under a file lock so that test binaries running at the same time install it once. Each
//! [`Browser`] runs its own process with a fresh profile; it is killed when dropped.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a page may take to load, or a script to answer.
const PATIENCE: Duration = Duration::from_secs(30);

/// The browser's window: a laptop screen.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 860;

/// The workspace root.
fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The browser executable, installed by `.ci/install-chromium.sh` (under a lock in the target
/// folder) when it is not there yet.
pub fn chromium() -> &'static Path {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        std::fs::create_dir_all(&target).expect("creating the target folder");
        let lock_path = target.join(".install-chromium.lock");
        let lock = File::create(&lock_path).expect("creating the install lock");
        // Blocks while another test binary installs; released when `lock` is dropped.
        lock.lock().expect("taking the install lock");
        let output = Command::new("bash")
            .arg(root().join(".ci/install-chromium.sh"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("running .ci/install-chromium.sh");
        drop(lock);
        assert!(output.status.success(), ".ci/install-chromium.sh failed");
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        assert!(path.is_file(), "{} is not a file", path.display());
        path
    })
}

/// A headless Chromium with one page, driven over CDP.
pub struct Browser {
    child: Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts a browser on `about:blank` and connects to its page.
    pub async fn start() -> Self {
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut child = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--hide-scrollbars",
                &format!("--window-size={WIDTH},{HEIGHT}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        let address = devtools_address(&mut child);
        let socket = connect_page(&address).await;
        let mut browser = Self {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        };
        browser.call("Page.enable", json!({})).await;
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await;
        browser
    }

    /// Sends one CDP command and returns its result, skipping the events in between.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("sending a CDP command");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within {PATIENCE:?}"))
                .expect("the browser closed the connection")
                .expect("reading from the browser");
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).expect("CDP speaks JSON");
            if answer["id"] != id {
                continue;
            }
            if let Some(error) = answer.get("error") {
                panic!("{method} failed: {error}");
            }
            return answer["result"].clone();
        }
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn navigate(&mut self, url: &str) {
        let answer = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(answer.get("errorText").is_none(), "{url}: {answer}");
        self.wait_for("document.readyState === 'complete'", PATIENCE)
            .await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value as JSON.
    pub async fn evaluate(&mut self, expression: &str) -> Value {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Polls `expression` until it is true; panics after `timeout`, showing the page's text.
    pub async fn wait_for(&mut self, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.evaluate(&format!("!!({expression})")).await == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self
                    .evaluate("document.body ? document.body.innerText : ''")
                    .await;
                panic!("{expression} did not hold within {timeout:?}; the page reads:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the whole page at `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let answer = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let data = answer["data"].as_str().expect("the screenshot's data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("creating the screenshot's folder");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the browser's stderr until it names its DevTools address (`ws://host:port/...`);
/// returns `host:port`. The rest of stderr is drained in the background.
fn devtools_address(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("DevTools listening on ")
                && let Some(found) = found.take()
            {
                let _ = found.send(url.trim().to_owned());
            }
        }
    });
    let url = address
        .recv_timeout(PATIENCE)
        .expect("chromium did not print its DevTools address");
    let rest = url.strip_prefix("ws://").expect("a ws:// address");
    rest.split('/').next().expect("host:port").to_owned()
}

/// Connects to the first page target of the browser at `address`.
async fn connect_page(address: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let deadline = Instant::now() + PATIENCE;
    let page = loop {
        let targets: Value = reqwest::get(format!("http://{address}/json/list"))
            .await
            .expect("listing the browser's targets")
            .json()
            .await
            .expect("targets are JSON");
        let page = targets.as_array().and_then(|targets| {
            targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_owned)
        });
        match page {
            Some(page) => break page,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => panic!("the browser opened no page: {targets}"),
        }
    };
    let (socket, _) = tokio_tungstenite::connect_async(page)
        .await
        .expect("connecting to the page");
    socket
}
