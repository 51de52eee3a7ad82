//! A real PostgreSQL server for the tests of the `postgres` state backend, and the backend
//! choice the durability tests run under.
//!
//! [`PgServer::shared`] starts one server per test process, on first use; each test takes a
//! fresh database of it ([`PgServer::database`]). A test that stops the server mid-run starts
//! one of its own ([`PgServer::start`]). The server runs from a temp folder on 127.0.0.1 with
//! trust authentication; a watchdog process stops it (`pg_ctl stop -m immediate`) and removes
//! the folder once the test process is gone, however it ended. The programs come from
//! `/usr/lib/postgresql/*/bin`, installed by `.ci/install-postgres.sh` when missing. PostgreSQL
//! refuses to run as root: as root, its programs run as the `postgres` user (`runuser`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::router::{RouterProcess, Scratch, run_command};

/// The environment variable the router reads `state.url` from in these tests.
pub const URL_ENV: &str = "KFP_ROUTER_TEST_DATABASE_URL";

/// A password put in every test URL: it must never show in the router's output.
pub const PASSWORD: &str = "pg-SECRET-pw";

/// A running server.
pub struct PgServer {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
}

impl PgServer {
    /// The server of this test process, started on first use.
    pub fn shared() -> &'static PgServer {
        static SERVER: OnceLock<PgServer> = OnceLock::new();
        SERVER.get_or_init(PgServer::start)
    }

    /// A server of its own, for a test that stops and starts it; stopped and removed when
    /// dropped (or by the watchdog, when the process ends first).
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let root = tempfile::Builder::new()
            .prefix("kfp-router-pg-")
            .tempdir()
            .expect("a temp dir")
            .keep();
        if running_as_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root));
        }
        let mut server = PgServer { bin, root, port: 0 };
        run(server
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg("-D")
            .arg(server.data()));
        server.watchdog();
        // Another process may take the free port first: then try another.
        for attempt in 1.. {
            server.port = free_port();
            match try_run(&mut server.pg_ctl_start()) {
                Ok(()) => break,
                Err(e) if attempt == 3 => panic!("{e}"),
                Err(_) => {}
            }
        }
        server
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        run(self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data()));
    }

    /// Starts the server again, on the same port, and waits until it accepts connections.
    pub fn start_again(&self) {
        run(&mut self.pg_ctl_start());
    }

    fn pg_ctl_start(&self) -> Command {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200 -c fsync=on",
            self.port,
            self.root.display()
        );
        let mut command = self.command("pg_ctl");
        command
            .args(["start", "-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.root.join("server.log"))
            .arg("-D")
            .arg(self.data());
        command
    }

    /// Turns TLS on for new connections, with the server certificate `cert` and its key (PEM).
    pub async fn enable_tls(&self, cert: &str, key: &str) {
        use std::os::unix::fs::PermissionsExt;
        for (file, pem) in [("server.crt", cert), ("server.key", key)] {
            let path = self.data().join(file);
            std::fs::write(&path, pem).expect("writing the server's TLS files");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if running_as_root() {
                run(Command::new("chown").arg("postgres:postgres").arg(&path));
            }
        }
        let admin = self.connect("postgres").await;
        for statement in ["ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()"] {
            admin.batch_execute(statement).await.expect(statement);
        }
    }

    /// Creates a fresh database and returns its URL (with a password, which trust
    /// authentication ignores, so that tests can check it is never printed).
    pub async fn database(&self) -> String {
        let name = format!("t_{:016x}", rand::random::<u64>());
        let admin = self.connect("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        format!(
            "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// A client of database `name` (or of the database of a URL from [`PgServer::database`]).
    pub async fn connect(&self, name_or_url: &str) -> tokio_postgres::Client {
        let url = if name_or_url.contains("://") {
            name_or_url.to_owned()
        } else {
            format!(
                "postgresql://postgres@127.0.0.1:{}/{name_or_url}",
                self.port
            )
        };
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connecting to the test server");
        tokio::spawn(connection);
        client
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// One of the server's programs, as the `postgres` user when this process is root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Stops the server and removes its folder once this process has exited.
    fn watchdog(&self) {
        let mut stop = self.command("pg_ctl");
        stop.args(["stop", "-m", "immediate", "-D"])
            .arg(self.data());
        let stop = std::iter::once(stop.get_program())
            .chain(stop.get_args())
            .map(|word| shell_quote(&word.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        // In the background of a shell that exits at once: the watchdog outlives this process.
        let script = format!(
            "(while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {root}) &",
            pid = std::process::id(),
            root = shell_quote(&self.root.display().to_string()),
        );
        run(Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null()));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Which state backend a test runs the router with.
pub enum Backend {
    /// `outbox.redb` and `dead-letter.jsonl` in the state folder.
    Redb,
    /// A fresh database of the shared server, by its URL.
    Postgres(String),
}

impl Backend {
    /// A fresh database of [`PgServer::shared`].
    pub async fn postgres() -> Self {
        Self::Postgres(PgServer::shared().database().await)
    }

    /// `redb` or `postgres`, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Redb => "redb",
            Self::Postgres(_) => "postgres",
        }
    }

    /// `tables` (as [`Scratch::tables`] writes them) with this backend's keys in `[state]`.
    pub fn tables(&self, tables: String) -> String {
        match self {
            Self::Redb => tables,
            Self::Postgres(_) => tables.replacen(
                "[state]\n",
                &format!("[state]\nbackend = \"postgres\"\nurl = {{ env = \"{URL_ENV}\" }}\n"),
                1,
            ),
        }
    }

    /// Starts `kfp-event-router run --config <config>` with this backend's URL in its
    /// environment.
    pub fn start(&self, config: &Path) -> RouterProcess {
        let mut command = run_command(config);
        if let Self::Postgres(url) = self {
            command.env(URL_ENV, url);
        }
        RouterProcess::spawn(command)
    }

    /// The dead letters, as JSON: lines of the file, or `letter`s of the table, oldest first.
    pub async fn dead_letters(&self, scratch: &Scratch) -> Vec<serde_json::Value> {
        match self {
            Self::Redb => scratch.dead_letters(),
            Self::Postgres(url) => PgServer::shared()
                .connect(url)
                .await
                .query("SELECT letter FROM dead_letters ORDER BY id", &[])
                .await
                .expect("reading dead_letters")
                .iter()
                .map(|row| serde_json::from_str(row.get(0)).expect("a dead letter is JSON"))
                .collect(),
        }
    }
}

/// The folder of `initdb`, `pg_ctl` and `postgres`: PostgreSQL 15's, else the newest there,
/// else the one `.ci/install-postgres.sh` installs.
fn bin_dir() -> PathBuf {
    let found = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
            .collect();
        dirs.sort_by_key(|bin| (!bin.starts_with("/usr/lib/postgresql/15"), bin.clone()));
        dirs.into_iter().next()
    };
    if let Some(bin) = found() {
        return bin;
    }
    let script = super::root().join(".ci/install-postgres.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("running .ci/install-postgres.sh");
    assert!(output.status.success(), "{} failed", script.display());
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let uids = status.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
                Some(uids.split_whitespace().nth(2)? == "0")
            })
            .unwrap_or(false)
    })
}

/// Runs `command`; panics with its output unless it succeeds.
fn run(command: &mut Command) {
    try_run(command).unwrap_or_else(|e| panic!("{e}"));
}

/// Runs `command`; its output is the error unless it succeeds.
fn try_run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{command:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
