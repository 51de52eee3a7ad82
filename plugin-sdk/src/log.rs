//! Logging through the host: records appear in the router's log, attributed
//! to the plugin. On non-wasm targets (unit tests) they go to stderr.
//!
//! ```
//! use kfp_event_router_sdk::log;
//! log::info("plugin ready");
//! log::warn(format!("unexpected phase {:?}", "Skipped"));
//! ```

/// Severity of a log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics useful when debugging a plugin.
    Debug,
    /// Normal operational messages.
    Info,
    /// Something unexpected that the plugin could handle.
    Warn,
    /// Something failed.
    Error,
}

/// Writes `message` at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    write(level, message.as_ref());
}

/// Writes `message` at trace level.
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message.as_ref());
}

/// Writes `message` at debug level.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message.as_ref());
}

/// Writes `message` at info level.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message.as_ref());
}

/// Writes `message` at warn level.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message.as_ref());
}

/// Writes `message` at error level.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message.as_ref());
}

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    use crate::bindings::kfp::event_router::host::{Level as L, log};
    let level = match level {
        Level::Trace => L::Trace,
        Level::Debug => L::Debug,
        Level::Info => L::Info,
        Level::Warn => L::Warn,
        Level::Error => L::Error,
    };
    log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    eprintln!("[plugin {level:?}] {message}");
}
