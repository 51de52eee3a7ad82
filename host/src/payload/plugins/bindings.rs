//! The host side of the WIT contract (`wit/world.wit`, world `kfp:event-router/plugin`), and
//! the check that a component was built for a compatible version of it.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use exports::kfp::event_router::transform::{Action, Event, Payload, Replacement};
pub(crate) use kfp::event_router::host::Level;

/// The WIT package the host implements.
pub(crate) const PACKAGE: &str = "kfp:event-router";

/// The version of [`PACKAGE`] the host implements.
pub(crate) const VERSION: &str = "0.1.0";

/// Whether a component built against `version` of the package works with this host: the same
/// major version, and for 0.x the same minor version too (semver compatibility).
pub(crate) fn compatible(version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        parts.next()?.parse::<u64>().ok()?;
        Some((major, minor))
    };
    match (parse(version), parse(VERSION)) {
        (Some((0, minor)), Some((0, ours))) => minor == ours,
        (Some((major, _)), Some((ours, _))) => major == ours && major != 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn semver_compatibility_for_0_x() {
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.2.0"));
        assert!(!compatible("9.0.0"));
        assert!(!compatible("1.1.0"));
        assert!(!compatible("0.1"));
    }
}
