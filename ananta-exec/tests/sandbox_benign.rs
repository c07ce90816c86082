//! The benign corpus (`tests/corpus/benign.toml`) runs inside a strict sandbox: the
//! confinement must not cripple everyday developer work (reads, git, greps, workspace writes,
//! cargo builds and tests).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ananta_core::exec::{ExecRequest, Executor};
use ananta_exec::{CommandPolicy, Containment, Decision, PolicyMode, SandboxConfig, ShellExecutor};

mod support;

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    command: String,
}

/// In `Approve` mode, with the policy told the commands run in this sandbox, nothing of the
/// corpus may need approval.
fn asked(exec: &ShellExecutor, command: &str) -> Option<String> {
    let decision =
        CommandPolicy::builtin().decide_contained(command, PolicyMode::Approve, exec.containment());
    (decision != Decision::Allow).then(|| format!("{command:?} -> {decision:?}"))
}

/// The workspace the corpus header describes: a git repository with a small Rust crate, a
/// README and a notes directory.
fn workspace(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"benign\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() {\n    println!(\"hello\");\n}\n\n#[test]\nfn works() {}\n",
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), "benign workspace\nfor the sandbox\n").unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "init"]);
}

/// Whether the host has the program a case starts with (a missing tool is not the sandbox's
/// fault).
fn host_has(command: &str) -> bool {
    let program = command.split_whitespace().next().unwrap_or_default();
    if program.contains('=') {
        return true; // an assignment: the shell itself
    }
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn everyday_commands_run_in_a_strict_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    workspace(&ws);
    if !support::strict_sandbox_available("benign corpus") {
        return;
    }
    let config = SandboxConfig::new(&ws);
    let exec = ShellExecutor::new(&ws)
        .sandbox(config)
        .timeout(Duration::from_secs(180));
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/benign.toml"),
    )
    .unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    assert!(corpus.case.len() >= 96);
    assert_eq!(exec.containment(), Containment::Sandbox { network: false });
    let mut failures = Vec::new();
    let mut false_blocks = Vec::new();
    let mut ran = 0;
    for case in &corpus.case {
        false_blocks.extend(asked(&exec, &case.command));
        if !host_has(&case.command) {
            eprintln!("(host lacks the program of {:?})", case.command);
            continue;
        }
        let outcome = exec
            .run(ExecRequest::new(case.command.clone()), None)
            .await
            .unwrap();
        ran += 1;
        if !outcome.success() {
            failures.push(format!(
                "{:?}: {}",
                case.command,
                outcome.summary_for_model(600)
            ));
        }
    }
    eprintln!(
        "benign corpus: {ran} of {} ran in the sandbox",
        corpus.case.len()
    );
    assert!(
        failures.is_empty(),
        "{} everyday command(s) failed in the sandbox:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ran >= 90, "only {ran} cases ran");
    assert!(
        false_blocks.is_empty(),
        "{} benign false blocks in approve mode with the sandbox:\n{}",
        false_blocks.len(),
        false_blocks.join("\n")
    );
}
