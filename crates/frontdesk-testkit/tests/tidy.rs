//! Architecture invariants checked from the source tree (after rust-analyzer's `tidy`):
//! the dependency directions of ARCHITECTURE.md, and a `//!` header on every source file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// crate name → names in its `[dependencies]` (not dev-dependencies).
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(workspace().join("crates")).expect("crates/") {
        let dir = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = dir.file_name().expect("name").to_string_lossy().to_string();
        let mut in_deps = false;
        let mut deps = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_deps = line == "[dependencies]";
                continue;
            }
            if in_deps {
                if let Some((key, _)) = line.split_once('=') {
                    let key = key.trim().trim_end_matches(".workspace").to_string();
                    if !key.is_empty() && !key.starts_with('#') {
                        deps.push(key);
                    }
                }
            }
        }
        out.insert(name, deps);
    }
    out
}

#[test]
fn dependencies_point_one_way() {
    let deps = dependencies();
    let forbidden: &[(&str, &[&str])] = &[
        // Architecture Invariant: core knows no backend, no HTTP stack, no other crate of ours.
        (
            "frontdesk-core",
            &["frontdesk-state", "frontdesk-store", "frontdesk-api", "frontdesk", "redis", "sqlx", "axum", "reqwest"],
        ),
        // Architecture Invariant: transport never names a backend.
        ("frontdesk-api", &["frontdesk-state", "frontdesk-store", "redis", "sqlx", "frontdesk"]),
        // Architecture Invariant: adapters know core only, never each other or transport.
        ("frontdesk-state", &["frontdesk-store", "frontdesk-api", "frontdesk", "axum"]),
        ("frontdesk-store", &["frontdesk-state", "frontdesk-api", "frontdesk", "redis", "axum"]),
        // Architecture Invariant: modules (the Logic layer) never name a backend.
        (
            "frontdesk-modules",
            &["frontdesk-state", "frontdesk-store", "frontdesk-api", "frontdesk", "redis", "sqlx", "axum"],
        ),
        // The test kit is a dev-dependency only and sees ports, not adapters.
        ("frontdesk-testkit", &["frontdesk-state", "frontdesk-store", "frontdesk-api", "frontdesk"]),
    ];
    let mut broken = Vec::new();
    for (krate, banned) in forbidden {
        let Some(actual) = deps.get(*krate) else { continue };
        for dep in actual {
            if banned.contains(&dep.as_str()) {
                broken.push(format!("{krate} must not depend on {dep}"));
            }
        }
    }
    for (krate, actual) in &deps {
        if krate != "frontdesk-testkit" && actual.iter().any(|d| d == "frontdesk-testkit") {
            broken.push(format!("{krate} may use frontdesk-testkit only as a dev-dependency"));
        }
    }
    assert!(broken.is_empty(), "forbidden dependency edges:\n{}", broken.join("\n"));
    assert!(deps.contains_key("frontdesk-core"), "the tidy test found no crates");
}

#[test]
fn every_source_file_says_what_it_owns() {
    let mut missing = Vec::new();
    let mut stack = vec![workspace().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                if !text.trim_start().starts_with("//!") {
                    missing.push(path.display().to_string());
                }
            }
        }
    }
    assert!(missing.is_empty(), "files without a `//!` header:\n{}", missing.join("\n"));
}
