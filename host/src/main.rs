//! The `kfp-event-router` binary: parses the command line, runs it, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use kfp_event_router::cli::{self, Cli};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long, in ms, mimalloc keeps freed memory before it gives it back to the system, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. Its default (1 s) lets a burst's garbage pile up into
/// the peak resident set; 250 ms keeps the peak near the steady state for no measurable CPU.
const PURGE_DELAY_MS: std::ffi::c_long = 250;

/// `mi_option_purge_delay` in `mimalloc.h`'s `mi_option_t` (the same in mimalloc 2 and 3);
/// `libmimalloc-sys` names it only for mimalloc 2.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option, which mimalloc reads atomically when it purges.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS)
        };
    }
    let cli = Cli::parse();
    kfp_event_router::telemetry::init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc 3's default purge delay is 1000 ms, which no neighbouring option shares:
        // the index names the option `main` means to set.
        #[allow(unsafe_code)]
        // SAFETY: reads one integer option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
