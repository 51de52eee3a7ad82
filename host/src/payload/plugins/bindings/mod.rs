//! The host side of the WIT contracts: `kfp:event-router@0.3.0` (`wit/world.wit`), whose
//! components read the event through handles; `@0.2.0` (`wit/0.2.0/world.wit`), whose values
//! the host works in; and `@0.1.0` (`wit/0.1.0/world.wit`), whose components still get theirs,
//! converted at the boundary. [`Contract::of`] tells which one a component was built for.

pub(crate) mod v0_1;
pub mod v0_2;
pub(crate) mod v0_3;

use wasmtime::Engine;
use wasmtime::component::Component;

pub use v0_2::{Action, Event, Node, Payload, PayloadFormat, Replacement, Task};

/// The WIT package the host implements.
pub(crate) const PACKAGE: &str = "kfp:event-router";

/// The versions of [`PACKAGE`] the host runs, newest first.
pub(crate) const SUPPORTED: [&str; 3] = ["0.3.x", "0.2.x", "0.1.x"];

/// A version of the contract, as a component's `transform` export names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contract {
    /// `kfp:event-router@0.1.x`: the first contract; its event has fourteen facts.
    V0_1,
    /// `kfp:event-router@0.2.x`: its event has every fact, copied into each call.
    V0_2,
    /// `kfp:event-router@0.3.x`: the current contract; a call reads the facts it uses.
    V0_3,
}

/// Why a component is not a plugin this host runs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// It exports no `transform` interface of the package.
    #[error(
        "not a kfp-event-router plugin: it exports no `{PACKAGE}/transform` interface (its exports: {0})"
    )]
    NotAPlugin(String),
    /// It was built for a version the host does not run.
    #[error(
        "built for {found}, which this router does not run: it runs {PACKAGE} {}; rebuild the \
         plugin with a current kfp-event-router SDK or WIT",
        SUPPORTED.join(", ")
    )]
    Unsupported {
        /// The interface and version it was built for, e.g. `kfp:event-router/transform@9.0.0`.
        found: String,
    },
}

impl Contract {
    /// The contract `component` was built for, from the `transform` interface it exports and
    /// the `host` interface it imports (which must be of the same version, when imported).
    pub(crate) fn of(engine: &Engine, component: &Component) -> Result<Self, ContractError> {
        let ty = component.component_type();
        let transform = format!("{PACKAGE}/transform@");
        let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
        let Some(found) = exports.iter().find(|name| name.starts_with(&transform)) else {
            let listed = match exports.is_empty() {
                true => "none".to_owned(),
                false => exports.join(", "),
            };
            return Err(ContractError::NotAPlugin(listed));
        };
        let contract = Self::from_version(&found[transform.len()..]).ok_or_else(|| {
            ContractError::Unsupported {
                found: (*found).to_owned(),
            }
        })?;
        let host = format!("{PACKAGE}/host@");
        for (import, _) in ty.imports(engine) {
            if let Some(version) = import.strip_prefix(&host)
                && Self::from_version(version) != Some(contract)
            {
                return Err(ContractError::Unsupported {
                    found: import.to_owned(),
                });
            }
        }
        Ok(contract)
    }

    /// The contract of a semver `version`: same major, and for 0.x the same minor version.
    fn from_version(version: &str) -> Option<Self> {
        let core = version.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major: u64 = parts.next()?.parse().ok()?;
        let minor: u64 = parts.next()?.parse().ok()?;
        parts.next()?.parse::<u64>().ok()?;
        match (major, minor) {
            (0, 1) => Some(Self::V0_1),
            (0, 2) => Some(Self::V0_2),
            (0, 3) => Some(Self::V0_3),
            _ => None,
        }
    }

    /// The package version, e.g. `0.3.0`.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Self::V0_1 => "0.1.0",
            Self::V0_2 => "0.2.0",
            Self::V0_3 => "0.3.0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Contract;

    #[test]
    fn versions_map_to_contracts_by_semver() {
        assert_eq!(Contract::from_version("0.1.0"), Some(Contract::V0_1));
        assert_eq!(Contract::from_version("0.1.7"), Some(Contract::V0_1));
        assert_eq!(Contract::from_version("0.2.3"), Some(Contract::V0_2));
        assert_eq!(Contract::from_version("0.3.0"), Some(Contract::V0_3));
        assert_eq!(Contract::from_version("0.4.0"), None);
        assert_eq!(Contract::from_version("9.0.0"), None);
        assert_eq!(Contract::from_version("0.2"), None);
    }
}
