//! Compiled plugins on disk, so that a restart loads them instead of compiling them again.
//!
//! A file `<state.dir>/plugin-cache/<key>.cwasm` holds one compiled component; `<key>` is the
//! SHA-256 of the engine's compatibility hash (wasmtime version, settings, CPU features) and
//! the SHA-256 of the `.wasm` bytes, so a new router version or a changed plugin never loads a stale file.
//! Files are written whole (a temporary file, then a rename) and only by this module.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The cache folder and the engine it is for.
pub struct Cache {
    dir: PathBuf,
    engine_key: [u8; 32],
}

/// Feeds a [`Hash`] into SHA-256, which unlike `DefaultHasher` is stable across builds.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is used")
    }
}

impl Cache {
    /// A cache in `dir` (created on first store) for components compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.0.update(env!("CARGO_PKG_VERSION").as_bytes());
        Self {
            dir,
            engine_key: hasher.0.finalize().into(),
        }
    }

    fn path(&self, content: &ContentHash) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(self.engine_key);
        hasher.update(content);
        self.dir.join(format!("{}.cwasm", hex(&hasher.finalize())))
    }

    /// The cached compilation of the `.wasm` whose SHA-256 is `content`, if there is a usable one.
    pub fn load(&self, engine: &Engine, content: &ContentHash) -> Option<Component> {
        let path = self.path(content);
        if !path.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own serialisation of a
        // component, and maps it: it must not change while the component lives. Files in this
        // folder are written only by `Cache::store`, from `Component::serialize`, into the
        // router's locked `state.dir`, whole (a temporary file, then a rename) and never in
        // place; `prune` unlinks them, which leaves existing mappings intact. The key covers
        // the engine's compatibility hash, and wasmtime checks its header and version again.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(file = %path.display(), "cached plugin compilation unusable, compiling again: {e:#}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the compilation of the `.wasm` whose SHA-256 is `content`; failures are logged
    /// (the cache only saves time).
    pub fn store(&self, content: &ContentHash, component: &Component) {
        let path = self.path(content);
        let written = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|data| {
                std::fs::create_dir_all(&self.dir)?;
                let temporary = path.with_extension(TEMPORARY);
                std::fs::write(&temporary, data)?;
                std::fs::rename(&temporary, &path)
            });
        if let Err(e) = written {
            tracing::warn!(dir = %self.dir.display(), "cannot cache a compiled plugin: {e}");
        }
    }

    /// Deletes cached compilations other than those of the contents `keep` and the
    /// [`RECENT`] newest (so that rolling a plugin back loads rather than compiles).
    pub fn prune<'a>(&self, keep: impl IntoIterator<Item = &'a ContentHash>) {
        let keep: Vec<PathBuf> = keep.into_iter().map(|content| self.path(content)).collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut others: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|path| !keep.contains(path) && is_cache_file(path))
            .map(|path| {
                let modified = std::fs::metadata(&path).and_then(|m| m.modified());
                (modified.unwrap_or(std::time::UNIX_EPOCH), path)
            })
            .collect();
        others.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        for (_, path) in others.into_iter().skip(RECENT) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Compilations of plugins no longer loaded that are kept, newest first.
const RECENT: usize = 8;

/// The extension of a file being written.
const TEMPORARY: &str = "cwasm-tmp";

fn is_cache_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "cwasm" || e == TEMPORARY)
}

/// The SHA-256 of a `.wasm` file's bytes.
pub type ContentHash = [u8; 32];

/// The SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    Sha256::digest(bytes).into()
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
