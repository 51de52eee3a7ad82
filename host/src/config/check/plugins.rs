//! `[plugins]` and the chains that name plugins: each name must have its file in `dir`.

use std::path::Path;

use super::Checker;
use crate::config::file::PluginsSection;
use crate::payload::plugins::settings::{PluginsSettings, plugin_path};

impl Checker<'_> {
    pub(super) fn plugins(&mut self, section: &PluginsSection) -> PluginsSettings {
        if let Some(dir) = &section.dir
            && !self.offline
            && !dir.get_ref().is_dir()
        {
            let message = format!(
                "plugins.dir: {} is not a readable folder",
                dir.get_ref().display()
            );
            self.problem(dir.span(), message);
        }
        self.chain("plugins.chain", &section.chain, section);
        let settings = section
            .settings
            .keys()
            .map(|name| (name.clone(), section.settings_of(name)))
            .collect();
        let config = section
            .config
            .iter()
            .map(|(name, table)| {
                let json = serde_json::to_value(table).unwrap_or(serde_json::Value::Null);
                (name.clone(), json)
            })
            .collect();
        PluginsSettings {
            dir: section.dir.as_ref().map(|d| d.get_ref().clone()),
            chain: section.chain.iter().map(|n| n.get_ref().clone()).collect(),
            defaults: section.defaults(),
            settings,
            config,
            max_total_memory: usize::try_from(section.max_total_memory).unwrap_or(usize::MAX),
            profiler: section.profiler,
        }
    }

    /// Checks that every plugin a chain names is a file of `plugins.dir`.
    pub(super) fn chain(
        &mut self,
        key: &str,
        names: &[toml::Spanned<String>],
        section: &PluginsSection,
    ) {
        for (i, name) in names.iter().enumerate() {
            let text = name.get_ref();
            let message = if text.is_empty() || text.starts_with('.') || text.contains(['/', '\\'])
            {
                format!(
                    "{key}[{i}]: {text:?} is not a plugin name (the file stem of a .wasm in plugins.dir)"
                )
            } else {
                match &section.dir {
                    None => format!(
                        "{key}[{i}]: plugin {text:?} needs plugins.dir, the folder of plugins"
                    ),
                    Some(dir)
                        if !self.offline
                            && dir.get_ref().is_dir()
                            && !plugin_path(dir.get_ref(), text).is_file() =>
                    {
                        format!(
                            "{key}[{i}]: no plugin {text:?}: {} does not exist{}",
                            plugin_path(dir.get_ref(), text).display(),
                            available(dir.get_ref())
                        )
                    }
                    Some(_) => continue,
                }
            };
            self.problem(name.span(), message);
        }
    }
}

/// `" (plugins there: a, b)"`, listing the `.wasm` files of `dir`.
fn available(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let stem = path.file_stem()?.to_string_lossy().into_owned();
            (path.extension()? == "wasm" && !stem.starts_with('.')).then_some(stem)
        })
        .collect();
    names.sort();
    match names.is_empty() {
        true => " (there are no plugins there)".to_owned(),
        false => format!(" (plugins there: {})", names.join(", ")),
    }
}
