//! The `host.log` import of every contract: a plugin's records go to the router's log,
//! attributed to the plugin, with control characters escaped (a plugin cannot forge log lines
//! or terminal sequences), each cut at [`LOG_CHARS`], and at most [`LOGS_PER_CALL`] per call.

use super::bindings::{v0_1, v0_2, v0_3};
use super::runtime::HostState;

/// Log records one plugin call may write; later ones are dropped (and said so in the last).
pub(crate) const LOGS_PER_CALL: u32 = 32;

/// Characters of one log record kept; the rest is cut.
pub(crate) const LOG_CHARS: usize = 2048;

/// The records a call may still write.
#[derive(Debug)]
pub(crate) struct LogBudget(u32);

impl Default for LogBudget {
    fn default() -> Self {
        Self(LOGS_PER_CALL)
    }
}

/// A log record's severity, whichever contract it came through.
#[derive(Clone, Copy, Debug)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// `message` made safe for one log line: control characters escaped (`\n`, `\u{1b}`, ...)
/// and cut at [`LOG_CHARS`] characters, with `…` marking the cut.
pub(crate) fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(LOG_CHARS + 8));
    for (i, c) in message.chars().enumerate() {
        if i == LOG_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl HostState {
    fn log(&mut self, level: Level, message: &str) {
        if self.logs.0 == 0 {
            return;
        }
        self.logs.0 -= 1;
        let mut message = sanitize(message);
        if self.logs.0 == 0 {
            message.push_str(" (further log records of this call are dropped)");
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// Each contract's `level` as the one the host logs at: the same five severities.
macro_rules! levels {
    ($($contract:ident),*) => {$(
        impl From<$contract::kfp::event_router::host::Level> for Level {
            fn from(level: $contract::kfp::event_router::host::Level) -> Self {
                use $contract::kfp::event_router::host::Level as L;
                match level {
                    L::Trace => Self::Trace,
                    L::Debug => Self::Debug,
                    L::Info => Self::Info,
                    L::Warn => Self::Warn,
                    L::Error => Self::Error,
                }
            }
        }
    )*};
}

levels!(v0_1, v0_2, v0_3);

impl v0_1::kfp::event_router::host::Host for HostState {
    fn log(&mut self, level: v0_1::kfp::event_router::host::Level, message: String) {
        HostState::log(self, level.into(), &message);
    }
}

impl v0_2::kfp::event_router::host::Host for HostState {
    fn log(&mut self, level: v0_2::kfp::event_router::host::Level, message: String) {
        HostState::log(self, level.into(), &message);
    }
}

impl v0_3::kfp::event_router::host::Host for HostState {
    fn log(
        &mut self,
        level: v0_3::kfp::event_router::host::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        HostState::log(self, level.into(), &message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_records_cut() {
        assert_eq!(
            sanitize("ok\nFAKE level=ERROR\r\u{1b}[31mred\u{7}"),
            "ok\\nFAKE level=ERROR\\r\\u{1b}[31mred\\u{7}"
        );
        assert_eq!(sanitize("tab\there"), "tab\\there");
        let long = "é".repeat(LOG_CHARS + 10);
        let cut = sanitize(&long);
        assert_eq!(cut.chars().count(), LOG_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
