//! The `exec` example's logic: one command through the policy and the sandbox, one JSON line.

use std::path::PathBuf;
use std::time::Duration;

use ananta_core::Executor;
use ananta_core::exec::ExecRequest;
use ananta_exec::{CommandPolicy, Decision, PolicyMode, ShellExecutor};
use serde_json::{Value, json};

/// What `cargo run -p ananta-examples --example exec -- [OPTIONS] -- 'COMMAND'` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecArgs {
    /// The policy's mode (`--mode`, default `approve`).
    pub mode: PolicyMode,
    /// The workspace (`--workspace`, default: a new temporary directory).
    pub workspace: Option<PathBuf>,
    /// Whether the sandbox lets the command use the network (`--allow-network`).
    pub allow_network: bool,
    /// Timeout in seconds (`--timeout`, default 60).
    pub timeout: Duration,
    /// The command.
    pub command: String,
}

/// The usage text.
pub const USAGE: &str = "usage: exec [--mode read_only|approve|auto|off] [--workspace DIR] [--allow-network] [--timeout SECS] -- 'COMMAND'";

impl ExecArgs {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, String> {
        let mut out = ExecArgs {
            mode: PolicyMode::Approve,
            workspace: None,
            allow_network: false,
            timeout: Duration::from_secs(60),
            command: String::new(),
        };
        let mut args = args.into_iter();
        let mut rest = Vec::new();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--" => {
                    rest.extend(args.by_ref());
                    break;
                }
                "--mode" => {
                    let v = args.next().ok_or("--mode needs a value")?;
                    out.mode = v.parse().map_err(|e| format!("--mode: {e}"))?;
                }
                "--workspace" => {
                    out.workspace = Some(args.next().ok_or("--workspace needs a value")?.into());
                }
                "--allow-network" => out.allow_network = true,
                "--timeout" => {
                    let v = args.next().ok_or("--timeout needs a value")?;
                    let secs: f64 = v
                        .parse()
                        .map_err(|_| format!("--timeout: {v:?} is not a number"))?;
                    out.timeout = Duration::try_from_secs_f64(secs)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| format!("--timeout: {v:?} is not a positive duration"))?;
                }
                other if other.starts_with("--") => return Err(format!("unknown option {other}")),
                _ => rest.push(arg),
            }
        }
        out.command = rest.join(" ");
        if out.command.trim().is_empty() {
            return Err("no command given".into());
        }
        Ok(out)
    }
}

/// Runs the command through the built-in policy — told that the command runs in a strict
/// sandbox when this kernel provides one, so `approve` asks only about what the sandbox cannot
/// contain — and, when allowed, through that sandbox confined to the workspace; returns the
/// JSON line to print. Every outcome — denied, held for
/// approval, refused by the sandbox, run — is a line; `Err` only for an unusable workspace.
pub async fn run_exec(args: &ExecArgs) -> Result<Value, String> {
    let (workspace, _temp) = match &args.workspace {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::tempdir().map_err(|e| format!("temporary workspace: {e}"))?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    if !workspace.is_dir() {
        return Err(format!("{} is not a directory", workspace.display()));
    }
    let executor = sandboxed(&workspace, args.allow_network).timeout(args.timeout);
    // The policy knows the command will run in a strict sandbox (when this kernel gives one),
    // so in `approve` mode it asks only about what the sandbox cannot contain.
    let containment = executor.containment();
    let decision = CommandPolicy::builtin().decide_contained(&args.command, args.mode, containment);
    let mut line = json!({
        "command": args.command,
        "mode": args.mode.as_str(),
        "containment": containment,
        // The decision's own wire name (`allow`, `needs_approval`, `deny`).
        "decision": serde_json::to_value(&decision).map_err(|e| e.to_string())?["decision"],
        "rule": null,
        "reasons": [],
        "ran": false,
        "exit_code": null,
        "signal": null,
        "timed_out": false,
        "stdout_bytes": 0,
        "stderr_bytes": 0,
        "truncated": false,
        "duration_ms": 0,
        "error": null,
    });
    match &decision {
        Decision::Deny { rule, reason } => {
            line["rule"] = json!(rule);
            line["reasons"] = json!([reason]);
            return Ok(line);
        }
        Decision::NeedsApproval { reasons } => {
            line["reasons"] = json!(reasons);
            return Ok(line);
        }
        _ => {}
    }
    match executor
        .run(ExecRequest::new(args.command.clone()), None)
        .await
    {
        Ok(outcome) => {
            line["ran"] = json!(true);
            line["exit_code"] = json!(outcome.exit_code);
            line["signal"] = json!(outcome.signal);
            line["timed_out"] = json!(outcome.timed_out);
            line["stdout_bytes"] = json!(outcome.stdout.len());
            line["stderr_bytes"] = json!(outcome.stderr.len());
            line["truncated"] = json!(outcome.stdout_truncated || outcome.stderr_truncated);
            line["duration_ms"] = json!(outcome.duration_ms);
        }
        Err(e) => line["error"] = json!(e.to_string()),
    }
    Ok(line)
}

#[cfg(target_os = "linux")]
fn sandboxed(workspace: &std::path::Path, allow_network: bool) -> ShellExecutor {
    ShellExecutor::new(workspace)
        .sandbox(ananta_exec::SandboxConfig::strict().network(allow_network))
}

#[cfg(not(target_os = "linux"))]
fn sandboxed(workspace: &std::path::Path, _allow_network: bool) -> ShellExecutor {
    ShellExecutor::new(workspace)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<ExecArgs, String> {
        ExecArgs::parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_options_and_the_command() {
        let a = args(&[
            "--mode",
            "auto",
            "--allow-network",
            "--timeout",
            "2.5",
            "--",
            "ls",
            "-la",
        ])
        .unwrap();
        assert_eq!(a.mode, PolicyMode::Auto);
        assert!(a.allow_network);
        assert_eq!(a.timeout, Duration::from_millis(2500));
        assert_eq!(a.command, "ls -la");
        assert!(
            args(&["--mode", "loose", "--", "ls"])
                .unwrap_err()
                .contains("--mode")
        );
        assert!(args(&["--bogus", "--", "ls"]).is_err());
        assert!(args(&["--"]).unwrap_err().contains("no command"));
        assert!(args(&["--timeout", "0", "--", "ls"]).is_err());
    }

    #[tokio::test]
    async fn denied_and_held_commands_are_lines_that_did_not_run() {
        let line = run_exec(&args(&["--", "rm -rf /"]).unwrap()).await.unwrap();
        assert_eq!(line["decision"], "deny");
        assert_eq!(line["ran"], false);
        assert!(line["rule"].is_string());
        let line = run_exec(&args(&["--", "git push origin main"]).unwrap())
            .await
            .unwrap();
        assert_eq!(line["decision"], "needs_approval");
        assert_eq!(line["ran"], false);
        assert!(!line["reasons"].as_array().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_allowed_command_runs_in_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello\n").unwrap();
        let line = run_exec(
            &args(&[
                "--workspace",
                dir.path().to_str().unwrap(),
                "--",
                "cat a.txt",
            ])
            .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(line["decision"], "allow", "{line}");
        if line["error"].is_null() {
            assert_eq!(line["ran"], true, "{line}");
            assert_eq!(line["exit_code"], 0, "{line}");
            assert_eq!(line["stdout_bytes"], 6, "{line}");
        } else {
            // Only where the kernel cannot sandbox: the refusal is the line, nothing ran.
            assert!(
                std::env::var_os("ANANTA_REQUIRE_SANDBOX").is_none(),
                "the sandbox must run here: {line}"
            );
            assert_eq!(line["ran"], false);
        }
    }
}
