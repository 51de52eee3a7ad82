//! `kfp-event-router plugin new`: writes a plugin project that builds and tests on its own,
//! outside this repository, in Rust (with the SDK crate by version), Python or JavaScript
//! (with the WIT and a small helper module shipped in the project). Every project has a
//! `build.sh`, a README, a test over a recorded KFP run, and the same example plugin: it adds
//! a configured field to every JSON payload. The templates are part of the binary.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The language of a new plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `kfp-event-router-sdk` crate.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

/// The WIT contract shipped in Python and JavaScript projects: 0.2, which their SDK helpers
/// (`kfp_plugin.py`, `kfp-plugin.js`) are written for, and which the router still runs.
const WIT: &str = include_str!("../../../wit/0.2.0/world.wit");

/// Files every project has: its test, the run it is tested over, and what git ignores.
const COMMON: &[(&str, &str)] = &[
    ("test.sh", include_str!("templates/test.sh")),
    (
        "test-config.toml",
        include_str!("templates/test-config.toml"),
    ),
    (
        "events.jsonl",
        include_str!("../../../examples/quickstart/kfp-run.jsonl"),
    ),
    (".gitignore", include_str!("templates/gitignore")),
];

/// The files of a Rust project.
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("templates/rust/src/lib.rs")),
    ("build.sh", include_str!("templates/rust/build.sh")),
    ("README.md", include_str!("templates/rust/README.md")),
];

/// The files of a Python project.
const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("templates/python/app.py")),
    (
        "kfp_plugin.py",
        include_str!("../../../plugin-sdk/python/kfp_plugin.py"),
    ),
    ("wit/world.wit", WIT),
    ("build.sh", include_str!("templates/python/build.sh")),
    ("README.md", include_str!("templates/python/README.md")),
];

/// The files of a JavaScript project.
const JS: &[(&str, &str)] = &[
    ("app.js", include_str!("templates/js/app.js")),
    (
        "kfp-plugin.js",
        include_str!("../../../plugin-sdk/js/kfp-plugin.js"),
    ),
    ("wit/world.wit", WIT),
    ("package.json", include_str!("templates/js/package.json")),
    ("build.sh", include_str!("templates/js/build.sh")),
    ("README.md", include_str!("templates/js/README.md")),
];

/// Writes plugin project `name` in `lang` into `dir` (default: `./<name>`), which must not
/// exist or be empty. Returns the folder.
pub(crate) fn scaffold(name: &str, lang: Lang, dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        anyhow::bail!(
            "{name:?} is not a plugin name: use lower-case letters, digits and `-`, starting with a letter"
        );
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        anyhow::bail!("{} exists and is not empty", dir.display());
    }
    let files = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    };
    for (path, template) in files.iter().chain(COMMON) {
        let text = template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"));
        write(&dir.join(path), &text)?;
    }
    Ok(dir)
}

/// Writes `text` to `path`, creating its folder; scripts are made executable.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "sh") {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_complete_project_per_language_and_refuses_bad_names() {
        let tmp = tempfile::tempdir().unwrap();
        for (lang, source) in [
            (Lang::Rust, "src/lib.rs"),
            (Lang::Python, "app.py"),
            (Lang::Js, "app.js"),
        ] {
            let dir = tmp.path().join(format!("{lang:?}"));
            scaffold("add-field", lang, Some(dir.clone())).unwrap();
            for file in [source, "build.sh", "README.md", "test.sh", "events.jsonl"] {
                let text = std::fs::read_to_string(dir.join(file)).unwrap();
                let left = text.contains("{{name}}") || text.contains("{{crate}}");
                assert!(!left, "{lang:?} {file} has a placeholder left");
            }
            assert!(scaffold("add-field", lang, Some(dir)).is_err(), "not empty");
        }
        let cargo = std::fs::read_to_string(tmp.path().join("Rust/Cargo.toml")).unwrap();
        assert!(
            cargo.contains("name = \"add-field\"")
                && cargo.contains("kfp-event-router-sdk = \"0.3\"")
        );
        let build = std::fs::read_to_string(tmp.path().join("Rust/build.sh")).unwrap();
        assert!(build.contains("release/add_field.wasm"));
        assert!(
            std::fs::read_to_string(tmp.path().join("Js/wit/world.wit"))
                .unwrap()
                .contains("@0.2.0")
        );
        assert!(scaffold("Bad_Name", Lang::Rust, Some(tmp.path().join("x"))).is_err());
    }
}
