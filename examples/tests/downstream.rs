//! Builds and tests `downstream/`, a crate outside this workspace that depends on ananta-core by
//! path with `features = ["testing"]` and uses every mock — proof that a separate project can.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

#[test]
fn a_crate_outside_the_workspace_can_use_every_mock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["test", "--offline", "--quiet", "--manifest-path"])
        .arg(root.join("downstream/Cargo.toml"))
        // its own target dir: the outer build holds the workspace's lock
        .env("CARGO_TARGET_DIR", root.join("target/downstream"))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "downstream tests failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Six tests, one per mock: all must have run, none skipped.
    assert!(
        stdout.contains("6 passed"),
        "expected 6 downstream tests to pass:\n{stdout}"
    );
}
