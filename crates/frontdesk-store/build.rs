//! Rebuilds the crate when a migration file changes: `sqlx::migrate!` embeds the SQL at
//! compile time, and stable Rust cannot tell Cargo that a proc macro read those files.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
