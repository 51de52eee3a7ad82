//! `tls` tables (`[endpoints.tls]`, `[state.tls]`): their files read, for the client that uses
//! them to build itself from.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::PathBuf;

use super::Checker;
use super::endpoints::watch_secret;
use crate::config::file::TlsSection;

/// The files of a `tls` table, read.
pub(super) struct TlsFiles {
    /// Where the table is, for problems found later.
    pub(super) place: Range<usize>,
    /// The CA bundle (PEM).
    pub(super) ca: Option<Vec<u8>>,
    /// The client certificate chain and its private key (PEM).
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// The client certificate chain and its private key, when given.
    pub(super) fn identity(&self) -> Option<(&[u8], &[u8])> {
        self.identity
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice()))
    }
}

impl Checker<'_> {
    /// Reads the files `section` (at `key`) names, adding them to `watched`. `None` when it
    /// names none, when offline, or with a problem (recorded).
    pub(super) fn tls_files(
        &mut self,
        key: &str,
        section: &TlsSection,
        watched: &mut BTreeSet<PathBuf>,
    ) -> Option<TlsFiles> {
        let place = section.span()?;
        if section.cert.is_some() != section.key.is_some() {
            self.problem(place, format!("{key}.tls: cert and key go together"));
            return None;
        }
        for path in [&section.ca, &section.cert].into_iter().flatten() {
            watched.insert(path.get_ref().clone());
        }
        if let Some(source) = &section.key {
            watch_secret(source.get_ref(), watched);
        }
        if self.offline {
            return None;
        }
        let read = |path: &toml::Spanned<PathBuf>| {
            std::fs::read(path.get_ref()).map_err(|e| {
                (
                    path.span(),
                    format!("cannot read {}: {e}", path.get_ref().display()),
                )
            })
        };
        let loaded = (|| {
            let ca = section.ca.as_ref().map(read).transpose()?;
            let identity = match (&section.cert, &section.key) {
                (Some(cert), Some(secret)) => {
                    let private = secret
                        .get_ref()
                        .resolve()
                        .map_err(|e| (secret.span(), format!("key: {e}")))?;
                    Some((read(cert)?, private.expose().as_bytes().to_vec()))
                }
                _ => None,
            };
            Ok(TlsFiles {
                place: place.clone(),
                ca,
                identity,
            })
        })();
        loaded
            .map_err(|(span, e)| self.problem(span, format!("{key}.tls: {e}")))
            .ok()
    }
}
