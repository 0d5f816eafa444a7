//! Builds the built-in pipeline file from the modules' fragments: `src/pipelines.json`
//! (base and lifecycle events) and each module's `src/<module>/pipelines.json`, so a module
//! declares its own events beside its handlers. An event defined twice fails the build.
//! The result is one file (`OUT_DIR/pipelines.json`), printed by `frontdesk pipelines`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn main() {
    let src = Path::new("src");
    let mut fragments = vec![src.join("pipelines.json")];
    let mut dirs: Vec<_> =
        fs::read_dir(src).expect("read src/").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        let fragment = dir.join("pipelines.json");
        if fragment.is_file() {
            fragments.push(fragment);
        }
    }
    println!("cargo:rerun-if-changed=src");
    let mut merged: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for path in &fragments {
        println!("cargo:rerun-if-changed={}", path.display());
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let serde_json::Value::Object(events) = value else { panic!("{} must be a JSON object", path.display()) };
        for (event, body) in events {
            if merged.insert(event.clone(), body).is_some() {
                panic!("event {event:?} is defined twice (again in {})", path.display());
            }
        }
    }
    // `base` first, then events in name order, for a file a person can read.
    let mut out = serde_json::Map::new();
    if let Some(base) = merged.remove("base") {
        out.insert("base".into(), base);
    }
    out.extend(merged);
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(out)).expect("serialise");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("pipelines.json");
    fs::write(dest, text + "\n").expect("write pipelines.json");
}
