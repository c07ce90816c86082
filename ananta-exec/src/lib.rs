//! Shell execution for Ananta.
//!
//! [`ShellExecutor`] implements [`ananta_core::exec::Executor`] with real processes: each
//! command runs as `sh -c` in its own process group with stdin closed, an explicit
//! environment (an allowlist of the host's variables plus configured and per-request ones) and
//! a working directory. A timeout kills the whole group (SIGTERM, then SIGKILL after a grace
//! period), background processes that keep the output pipes open cannot hang a run, stdout and
//! stderr are capped in bytes (with `truncated` flags) while still being drained, invalid UTF-8
//! is replaced rather than fatal, and output chunks can be streamed to the caller as they
//! arrive. Dropping a run's future kills its process group. The values of secret-looking
//! environment variables (`*_KEY`, `*_TOKEN`, `*PASSWORD*`…) of the host and of the command are
//! replaced in the output ([`redact`]), so they reach no log, task history or model.
//!
//! [`CommandPolicy`] parses a whole script with a real shell grammar and decides whether it may
//! run ([`Decision::Allow`]), must wait for a human ([`Decision::NeedsApproval`]) or is refused
//! ([`Decision::Deny`]), from rules that are data ([`PolicyRules`], TOML).
//!
//! ```
//! use ananta_exec::{CommandPolicy, Decision, PolicyMode};
//!
//! let policy = CommandPolicy::builtin();
//! assert_eq!(policy.decide("ls -la", PolicyMode::Approve), Decision::Allow);
//! assert!(policy.decide("rm -rf /", PolicyMode::Auto).is_deny());
//! ```
//!
//! On Linux, [`ShellExecutor::sandboxed`] confines every command with Landlock, seccomp,
//! a pids cgroup, resource limits and dropped privileges (see [`sandbox`]).
//!
//! Unix only.
//!
//! # The layers between a model and the machine
//!
//! Commands come from a model, so two layers stand between it and the machine:
//!
//! - **The command policy** (`ananta_exec::CommandPolicy`) parses the whole script with a real shell
//!   grammar (`brush-parser`) and judges every simple command in it — inside pipelines, chains,
//!   subshells, `$(…)`, backticks, `<(…)`, functions, `eval`, `bash -c`/`sh -c` strings and behind
//!   `env`/`timeout`/`nohup`/`command`/`busybox`/`xargs` — as `Allow`, `NeedsApproval { reasons }` or
//!   `Deny { rule, reason }`. Rules are data (`PolicyRules`, TOML; the built-in ones are
//!   `ananta_exec::policy::DEFAULT_RULES_TOML`), the strictest match wins, unparseable input is denied.
//!   Modes: `ReadOnly`, `Approve` (reads, workspace-local writes, builds and tests run; the rest
//!   waits for a human), `Auto` (everything not denied runs — inside the sandbox), `Off`. The
//!   policy follows `cd`, reads output paths from options (`-o/x`, `--output=/x`) and reads
//!   globs as the names they could match; writes to git hooks and configuration are denied in
//!   every mode.
//! - **Approve that trusts the sandbox**: told that commands run in a strict sandbox
//!   (`CommandPolicy::decide_contained`, `PolicyGate::contained(executor.containment())`),
//!   `Approve` runs whatever the sandbox contains — interpreters, compilers, deletions, unknown
//!   tools — and asks only about what it cannot contain: the network when allowed, pushing,
//!   publishing and git internals (the table is on `Containment`).
//! - **Human approval**: give a Worker the policy as its gate,
//!   `Worker::builder(..).gate(Arc::new(CommandPolicy::builtin().gate(PolicyMode::Approve)))`. A
//!   command that needs approval is not run: the Hub leaves the task `blocked` with the reasons on
//!   its proposal, `hub.run` stops with `StopReason::AwaitingApproval`, and `hub.approve(task,
//!   edited_command)` or `hub.reject(task, reason)` goes on; both decisions are logged. A denied
//!   command is `ExecError::Denied`, never a silent exit code.
//! - **The Linux sandbox** (`ShellExecutor::sandboxed(workspace)`): a private root that shows
//!   only system roots (read-only, `/etc` through an allow list), the workspace and a private
//!   home, `/tmp` and `/dev/shm` (so `~/.ssh`, other workspaces, the Hub's data and the Unix
//!   sockets of host services do not exist inside); its own PID, IPC and UTS namespaces (nothing
//!   it starts outlives it, even when the host process is killed); git hooks and configuration
//!   read-only; no network unless allowed, a pids cgroup and resource limits, dropped
//!   capabilities and `no_new_privs` (Landlock, seccomp, namespaces). `KernelSupport::detect()` says what the kernel offers; a strict sandbox (the
//!   default) refuses to run with `ExecError::SandboxUnavailable` rather than run unconfined.
//! - Output: at most 1 MiB of each stream is kept, the model sees head and tail within a budget
//!   with a marker of what was cut, and the values of secret-looking variables (`*_KEY`, `*_TOKEN`,
//!   `*PASSWORD*`…) are replaced by `[redacted NAME]` in everything a command prints.
//!
//! # Example
//!
//! ```
//! use ananta_core::exec::{ExecRequest, Executor};
//! use ananta_exec::ShellExecutor;
//! use std::time::Duration;
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let executor = ShellExecutor::new(std::env::temp_dir()).timeout(Duration::from_secs(10));
//! let outcome = runtime.block_on(executor.run(ExecRequest::new("echo hello"), None))?;
//! assert_eq!(outcome.stdout, "hello\n");
//! assert!(outcome.success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

#[cfg(not(unix))]
compile_error!("ananta-exec supports Unix platforms only");

mod capture;
mod group;
pub mod policy;
pub mod redact;
#[cfg(target_os = "linux")]
pub mod sandbox;
mod shell;
mod workspace;

pub use ananta_core::exec::CommandGate;
pub use policy::{
    CommandPolicy, Containment, Decision, Escape, PolicyError, PolicyGate, PolicyMode, PolicyRules,
};
#[cfg(target_os = "linux")]
pub use sandbox::{
    Enforcement, Feature, GitIdentity, KernelSupport, Limits, SandboxConfig, SandboxReport,
};

pub use shell::{
    DEFAULT_DRAIN_WINDOW, DEFAULT_ENV_ALLOWLIST, DEFAULT_KILL_GRACE, DEFAULT_OUTPUT_CAP,
    DEFAULT_SHELL, DEFAULT_TIMEOUT, ShellExecutor, ShellExecutorConfig,
};
