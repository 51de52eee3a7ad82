//! Command-line tools the deploy tests run, found or installed without a hand step.
//!
//! `kubectl` is taken from `PATH` when it is there; otherwise, and for the linters always (their
//! findings depend on their version), a pinned version is installed once into
//! `target/tools/` by `.ci/install-tools.sh`, under a file lock so that test binaries running
//! at the same time install each tool once. `KFP_TEST_NO_SYSTEM_TOOLS=1` ignores `PATH`, to
//! check that the install path works on a machine without kubectl.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The workspace root.
fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Where pinned tools go: `$CARGO_TARGET_DIR/tools`, else `target/tools`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("tools")
}

/// A kubectl to run: the one on `PATH`, else the pinned one.
pub fn kubectl() -> PathBuf {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND
        .get_or_init(
            || match system_tools_allowed().then(|| on_path("kubectl")) {
                Some(Some(path)) => path,
                _ => installed("kubectl", Duration::from_secs(300)),
            },
        )
        .clone()
}

/// The pinned `kubernetes-validate`.
pub fn kubernetes_validate() -> PathBuf {
    installed("kubernetes-validate", Duration::from_secs(600))
}

/// The pinned `checkov`.
pub fn checkov() -> PathBuf {
    installed("checkov", Duration::from_secs(900))
}

fn system_tools_allowed() -> bool {
    std::env::var_os("KFP_TEST_NO_SYSTEM_TOOLS").is_none_or(|v| v.is_empty() || v == "0")
}

/// `name` in a folder of `PATH`, when it is an executable file there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `.ci/install-tools.sh <tool>` under the lock (it returns at once when the tool is
/// there already) and returns the executable it prints; the result is kept per process.
fn installed(tool: &str, limit: Duration) -> PathBuf {
    static KNOWN: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    if let Some(path) = KNOWN.lock().unwrap().get(tool) {
        return path.clone();
    }
    let dir = tools_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let lock_path = dir.join(".lock");
    let lock =
        File::create(&lock_path).unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    // Blocks while another test binary installs; released when `lock` is dropped.
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    let script = root().join(".ci/install-tools.sh");
    let output = output_within(
        Command::new("bash")
            .arg(&script)
            .arg(tool)
            .env("KFP_TOOLS_DIR", &dir),
        limit,
    );
    drop(lock);
    assert!(
        output.status.success(),
        "{} {tool} failed ({}):\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 path");
    let path = PathBuf::from(stdout.lines().last().expect("the tool's path").trim());
    assert!(path.is_file(), "{} is not a file", path.display());
    KNOWN.lock().unwrap().insert(tool.to_owned(), path.clone());
    path
}

/// Runs `command` to completion with its output captured, killing it and what it started (and
/// failing the test) when it takes longer than `limit`.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    use std::os::unix::process::CommandExt as _;
    let mut child = command
        // Its own process group, so that a timeout also ends the processes it started.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).map(|_| bytes)
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap().unwrap_or_default();
            panic!(
                "{command:?} took more than {limit:?}; it printed:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap().expect("read stdout"),
        stderr: stderr.join().unwrap().expect("read stderr"),
    }
}
