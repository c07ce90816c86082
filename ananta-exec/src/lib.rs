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

pub use ananta_core::exec::CommandGate;
pub use policy::{CommandPolicy, Decision, PolicyError, PolicyGate, PolicyMode, PolicyRules};
#[cfg(target_os = "linux")]
pub use sandbox::{Enforcement, Feature, KernelSupport, Limits, SandboxConfig, SandboxReport};

pub use shell::{
    DEFAULT_DRAIN_WINDOW, DEFAULT_ENV_ALLOWLIST, DEFAULT_KILL_GRACE, DEFAULT_OUTPUT_CAP,
    DEFAULT_SHELL, DEFAULT_TIMEOUT, ShellExecutor, ShellExecutorConfig,
};
