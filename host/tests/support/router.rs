//! Runs the router binary as a subprocess with a temporary config and state folder, its logs
//! captured, and helpers to wait for it, kill it and read its `/metrics`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::router_bin;

/// A generous bound for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A temporary folder for one test: config, state, recordings.
pub struct Scratch {
    pub dir: TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("creating a temp dir"),
        }
    }

    /// A path inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The router's state folder (`state.dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// The dead-letter file of [`Scratch::state_dir`].
    pub fn dead_letters(&self) -> Vec<serde_json::Value> {
        match std::fs::read_to_string(self.state_dir().join("dead-letter.jsonl")) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a dead letter is JSON"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes `router.toml` (or `name`) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("writing a test file");
        path
    }

    /// The `[source]`, `[state]` and `[server]` tables for replaying `recording` with this
    /// folder's state, on a free port. Top-level keys must come before them, endpoints after.
    pub fn tables(&self, recording: &Path, rate: Option<f64>) -> String {
        source_tables(recording, rate, &self.state_dir())
    }
}

/// A TOML string literal for a path.
pub fn toml_path(path: &Path) -> String {
    toml_str(&path.display().to_string())
}

/// A TOML basic string.
pub fn toml_str(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `[source]` (replay of `recording`, at `rate` events/s when given), `[state]` and `[server]`
/// (`127.0.0.1:0`).
pub fn source_tables(recording: &Path, rate: Option<f64>, state_dir: &Path) -> String {
    let rate = rate.map(|r| format!("rate = {r:?}\n")).unwrap_or_default();
    format!(
        "[source]\nkind = \"replay\"\npath = {}\n{rate}\n[state]\ndir = {}\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n",
        toml_path(recording),
        toml_path(state_dir)
    )
}

/// The router binary with a clean environment for logs (no inherited `RUST_LOG` or config).
pub fn command() -> Command {
    let mut command = Command::new(router_bin());
    command
        .env_remove("RUST_LOG")
        .env_remove("KFP_EVENT_ROUTER_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// `kfp-event-router --log-format json run --config <config>`.
pub fn run_command(config: &Path) -> Command {
    let mut command = command();
    command
        .args(["--log-format", "json", "run", "--config"])
        .arg(config);
    command
}

/// A running router process; killed (SIGKILL) when dropped.
pub struct RouterProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl RouterProcess {
    /// Runs `kfp-event-router run --config <config>` with JSON logs.
    pub fn start(config: &Path) -> Self {
        Self::spawn(run_command(config))
    }

    /// Spawns `command`, capturing stdout and stderr.
    pub fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting the router binary");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            capture(child.stderr.take().unwrap(), Arc::clone(&stderr)),
            capture(child.stdout.take().unwrap(), Arc::clone(&stdout)),
        ];
        Self {
            child,
            stderr,
            stdout,
            readers,
            status: None,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// The JSON log records so far (lines that are not JSON are skipped).
    pub fn log_records(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.poll().is_none()
    }

    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("polling the router");
            if self.status.is_some() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
            }
        }
        self.status
    }

    /// Waits for the process to exit; panics (with its logs) after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "the router did not exit within {timeout:?}; logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit and returns its code; panics when killed by a signal.
    pub async fn exit_code(&mut self, timeout: Duration) -> i32 {
        let status = self.wait(timeout).await;
        status
            .code()
            .unwrap_or_else(|| panic!("the router was killed ({status:?}); logs:\n{}", self.logs()))
    }

    /// Waits for the exit; panics (with the logs) unless the code is 0.
    pub async fn expect_success(&mut self) {
        let code = self.exit_code(PATIENCE).await;
        assert_eq!(
            code,
            0,
            "the router exited with {code}; logs:\n{}",
            self.logs()
        );
    }

    /// Kills the process with SIGKILL (`kill -9`) and reaps it.
    pub fn kill(&mut self) {
        if self.poll().is_none() {
            let _ = self.child.kill();
            self.status = Some(self.child.wait().expect("reaping the router"));
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
        }
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&mut self) {
        if self.poll().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
    }

    /// Waits until a log line contains `needle`; returns that line. Panics after `timeout` or
    /// when the process exits without having logged it.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.poll().is_some();
            if let Some(line) = self.logs().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if exited || Instant::now() > deadline {
                panic!(
                    "no log line with {needle:?} (exited: {exited}); logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address of `/metrics`, from the log line announcing it.
    pub async fn metrics_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_log("serving /metrics", PATIENCE).await;
        if let Ok(record) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(address) = record["fields"]["address"].as_str()
        {
            return address.parse().expect("the logged address parses");
        }
        let start = line.find("address=").expect("the line names the address") + "address=".len();
        let text: String = line[start..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        text.parse().expect("the logged address parses")
    }

    /// GETs `/metrics` and returns the text.
    pub async fn metrics(&mut self) -> String {
        let addr = self.metrics_addr().await;
        http_get(&format!("http://{addr}/metrics")).await
    }

    /// Polls `/metrics` until `series` (e.g. `name{endpoint="x"}`) is at least `at_least`;
    /// returns the text of that scrape. Panics after `timeout`.
    pub async fn wait_for_metric(
        &mut self,
        series: &str,
        at_least: f64,
        timeout: Duration,
    ) -> String {
        let what = format!("{series} >= {at_least}");
        self.wait_for_scrape(&what, timeout, |text| {
            metric(text, series).is_some_and(|v| v >= at_least)
        })
        .await
    }

    /// Polls `/metrics` until one scrape satisfies `holds`; returns its text. Panics after
    /// `timeout`, naming `what` was awaited and showing the last scrape.
    pub async fn wait_for_scrape(
        &mut self,
        what: &str,
        timeout: Duration,
        holds: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.metrics().await;
            if holds(&text) {
                return text;
            }
            if Instant::now() > deadline {
                panic!("no scrape showed {what} within {timeout:?}; last scrape:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn capture(mut stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(&mut stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => into.lock().unwrap().push_str(&line),
            }
        }
    })
}

/// A GET with a plain HTTP client; panics unless it answers 2xx.
pub async fn http_get(url: &str) -> String {
    let response = reqwest::get(url).await.expect("GET");
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.text().await.expect("reading the body")
}

/// The value of one sample in Prometheus text, e.g.
/// `metric(&text, "kfp_event_router_events_dead_lettered_total{endpoint=\"x\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Reserves a port on 127.0.0.1 that nothing listens on (bind, note, close).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
