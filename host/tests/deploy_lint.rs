//! Every rendered `deploy/` variant passes `kubernetes-validate --strict` and checkov's
//! Kubernetes checks; a check the manifests fail on purpose is waived in the manifest itself
//! (`checkov.io/skip<N>: CKV_..=<reason>`), with its reason.
//!
//! Both linters are pinned and installed into `target/tools/` by `.ci/install-tools.sh` on the
//! first run (a few minutes), never skipped.

#[path = "support/deploy.rs"]
mod deploy;
#[path = "support/tools.rs"]
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// A folder for the rendered files. Not hidden (`tempdir()`'s `.tmp` prefix): checkov skips
/// hidden folders, and would report nothing.
fn folder() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kfp-deploy-lint-")
        .tempdir()
        .unwrap()
}

/// Each rendered variant written to its own file in `dir`; returns file name -> variant.
fn write_variants(dir: &Path) -> BTreeMap<String, &'static deploy::Rendered> {
    let mut files = BTreeMap::new();
    for r in deploy::rendered() {
        let file: String = r
            .variant
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            + ".yaml";
        std::fs::write(dir.join(&file), &r.yaml).unwrap();
        assert!(files.insert(file, r).is_none(), "distinct file names");
    }
    assert!(files.len() >= 10, "the overlays and the compositions");
    files
}

#[test]
fn every_variant_passes_kubernetes_validate_strict() {
    let temp = folder();
    let files = write_variants(temp.path());
    let paths: Vec<PathBuf> = files.keys().map(|f| temp.path().join(f)).collect();
    let output = tools::output_within(
        Command::new(tools::kubernetes_validate())
            .arg("--strict")
            .args(&paths),
        Duration::from_secs(300),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kubernetes-validate --strict:\n{text}"
    );
    let mut validated = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("INFO") && line.contains(" passed for resource ") {
            validated += 1;
        } else {
            // Only the prometheus-operator's kind is outside the Kubernetes schemas.
            assert!(
                line.starts_with("WARN")
                    && line.contains("Couldn't find schema for kind ServiceMonitor"),
                "kubernetes-validate: {line}"
            );
        }
    }
    let objects: usize = files.values().map(|r| r.objects.len()).sum();
    let monitors = files
        .values()
        .flat_map(|r| &r.objects)
        .filter(|o| o["kind"] == "ServiceMonitor")
        .count();
    assert_eq!(
        validated,
        objects - monitors,
        "every object validated:\n{text}"
    );
    eprintln!(
        "kubernetes-validate --strict: {validated} objects in {} variants, 0 failures",
        files.len()
    );
}

#[test]
fn every_variant_passes_checkov_or_waives_a_check_with_its_reason() {
    let temp = folder();
    let files = write_variants(temp.path());
    let output = tools::output_within(
        Command::new(tools::checkov())
            .arg("--directory")
            .arg(temp.path())
            .args([
                "--framework",
                "kubernetes",
                "--output",
                "json",
                "--skip-download",
            ])
            // No update check, no telemetry.
            .env("CHECKOV_SKIP_VERSION_CHECK", "true")
            .env("BC_SKIP_MAPPING", "TRUE"),
        Duration::from_secs(600),
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let results = &report["results"];
    let list = |key: &str| results[key].as_array().cloned().unwrap_or_default();
    let failed: Vec<String> = list("failed_checks")
        .iter()
        .map(|c| format!("{} {} in {}", c["check_id"], c["resource"], c["file_path"]))
        .collect();
    assert!(
        failed.is_empty(),
        "checkov failures:\n{}",
        failed.join("\n")
    );
    assert_eq!(
        report["summary"]["parsing_errors"], 0,
        "{}",
        report["summary"]
    );

    // Every file was read and its workload checked.
    let passed = list("passed_checks");
    let files_passed: BTreeSet<String> = passed
        .iter()
        .filter_map(|c| c["file_path"].as_str())
        .map(|p| p.trim_start_matches('/').to_owned())
        .collect();
    for file in files.keys() {
        assert!(files_passed.contains(file), "checkov checked {file}");
    }
    let passed_in = |check: &str, file: &str| {
        passed.iter().any(|c| {
            c["check_id"] == check && c["file_path"].as_str().unwrap_or_default().ends_with(file)
        })
    };
    for (file, r) in &files {
        for check in [
            "CKV_K8S_20",
            "CKV_K8S_22",
            "CKV_K8S_28",
            "CKV_K8S_37",
            "CKV_K8S_40",
        ] {
            assert!(passed_in(check, file), "{file}: {check} passed");
        }
        // Where a waiver's reason is gone, the check applies and passes.
        if r.variant.components.contains("networkpolicy") {
            assert!(passed_in("CKV2_K8S_6", file), "{file}: a NetworkPolicy");
        }
        if r.variant.name == "overlays/example" || r.variant.name.starts_with("example+") {
            assert!(passed_in("CKV_K8S_43", file), "{file}: image by digest");
        }
    }

    // Waived checks carry their reason.
    let skipped = list("skipped_checks");
    for check in &skipped {
        let reason = check["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.split_whitespace().count() >= 5,
            "{} in {} is waived without a reason: {reason:?}",
            check["check_id"],
            check["file_path"]
        );
    }
    let waived: BTreeSet<&str> = skipped
        .iter()
        .filter_map(|c| c["check_id"].as_str())
        .collect();
    eprintln!(
        "checkov {}: {} passed, {} failed, {} waived ({waived:?}) over {} variants",
        report["summary"]["checkov_version"],
        passed.len(),
        failed.len(),
        skipped.len(),
        files.len()
    );
}
