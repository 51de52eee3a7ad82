//! `kfp-event-router plugin check`: what a `.wasm` is (its contract version, imports, exports
//! and size) and whether the router would run it: it must be a component of a contract the
//! router runs, link against the sandbox (nothing but WASI and the `host` import), start
//! within its limits and, with `--config`, accept its configuration.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::plugin_load::{self, PluginSetup};
use crate::payload::plugins::bindings::Contract;
use crate::payload::plugins::plugin::{LoadError, LoadedPlugin};

/// Checks the plugin at `path`, with the configuration and limits of `config` (as for
/// `plugin test`), writing a report to `out`. Returns whether the router would run it.
pub async fn run(
    path: &Path,
    config: Option<&PathBuf>,
    out: &mut (impl Write + Send),
) -> anyhow::Result<bool> {
    let name = plugin_load::plugin_name(path)?;
    let setup = PluginSetup::read(config.map(PathBuf::as_path), &name)?;
    let compiled = plugin_load::compile(path, setup.profiler).await?;
    writeln!(
        out,
        "file:     {} ({:.1} KB)",
        path.display(),
        compiled.size as f64 / 1e3
    )?;
    let component = match compiled.component {
        Ok(component) => component,
        Err(e) => return refused(out, &e),
    };
    let engine = compiled.runtime.engine();
    let ty = component.component_type();
    let mut exports: Vec<&str> = ty.exports(engine).map(|(n, _)| n).collect();
    let mut imports: Vec<&str> = ty.imports(engine).map(|(n, _)| n).collect();
    exports.sort_unstable();
    imports.sort_unstable();
    match Contract::of(engine, &component) {
        Ok(contract) => writeln!(
            out,
            "world:    kfp:event-router/plugin@{}{}",
            contract.version(),
            match contract {
                Contract::V0_1 =>
                    " (an older contract, still run; rebuild for 0.3 to get every event fact)",
                Contract::V0_2 =>
                    " (an older contract, still run: every call copies the whole event in)",
                Contract::V0_3 => "",
            }
        )?,
        Err(_) => writeln!(out, "world:    not kfp:event-router/plugin")?,
    }
    writeln!(out, "exports:  {}", list(&exports))?;
    writeln!(out, "imports:  {}", list(&imports))?;
    let loaded = LoadedPlugin::new(
        &compiled.runtime,
        &name,
        &component,
        compiled.content,
        setup.settings,
        setup.config.clone(),
    )
    .await;
    match loaded {
        Ok(plugin) => {
            let limits = plugin.settings();
            writeln!(
                out,
                "runs:     yes (starts and accepts config {} within timeout {:?} and max_memory {} MiB)",
                plugin.config(),
                limits.timeout,
                limits.max_memory >> 20
            )?;
            Ok(true)
        }
        Err(LoadError::Init(message)) if config.is_none() => {
            writeln!(
                out,
                "runs:     links and starts; its init refuses the empty config {{}}: {message} \
                 (give --config to check it with its real configuration)"
            )?;
            Ok(true)
        }
        Err(e) => refused(out, &e),
    }
}

/// Reports that the router refuses the plugin, and why.
fn refused(out: &mut impl Write, error: &LoadError) -> anyhow::Result<bool> {
    writeln!(out, "runs:     no, the router refuses it: {error}")?;
    Ok(false)
}

/// `names` joined by commas, or `none`.
fn list(names: &[&str]) -> String {
    match names.is_empty() {
        true => "none".to_owned(),
        false => names.join(", "),
    }
}
