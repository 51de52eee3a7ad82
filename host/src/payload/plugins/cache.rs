//! Compiled plugins on disk, so that a restart or a reload loads them instead of compiling
//! them again: wasmtime's own compilation cache, kept in `<state.dir>/plugin-cache`.
//!
//! wasmtime keys each entry by the engine's settings, its version and the `.wasm` bytes, so a
//! new router version or a changed plugin never loads a stale entry; an entry it cannot read
//! is compiled again. Its worker thread keeps the folder within its size limits. The router
//! only reads its hit counter, to say in logs whether a plugin came from the cache.

use std::path::PathBuf;

use aws_lc_rs::digest::{SHA256, digest};
use wasmtime::{Cache, CacheConfig};

/// Entries kept at most; wasmtime's worker removes the least recently used beyond it.
const ENTRIES: u64 = 64;

/// wasmtime's compilation cache in `dir`, created on first use.
pub(super) fn in_folder(dir: PathBuf) -> wasmtime::Result<Cache> {
    let mut config = CacheConfig::new();
    config
        .with_directory(dir)
        .with_file_count_soft_limit(ENTRIES);
    Cache::new(config)
}

/// The SHA-256 of a `.wasm` file's bytes.
pub(crate) type ContentHash = [u8; 32];

/// The SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    let mut hash = ContentHash::default();
    hash.copy_from_slice(digest(&SHA256, bytes).as_ref());
    hash
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
