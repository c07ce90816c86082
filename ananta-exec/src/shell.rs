//! [`ShellExecutor`]: runs `sh -c` under a process group, a timeout and output caps.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ananta_core::error::ExecError;
use ananta_core::exec::{ExecOutcome, ExecRequest, Executor, OutputSink, OutputStream};
use async_trait::async_trait;
use tokio::process::{Child, Command};
use tracing::Instrument;

use crate::capture::{Capture, pump};
use crate::group::{GroupGuard, signal_group};
use crate::sandbox::{RunSandbox, SandboxConfig};

/// Default timeout of a command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time between SIGTERM and SIGKILL when a command times out.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
/// Default time output is still read after the shell exited, before the group is killed.
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_millis(200);
/// Default cap on kept stdout and on kept stderr, in bytes (1 MiB each).
pub const DEFAULT_OUTPUT_CAP: usize = 1024 * 1024;
/// Default shell.
pub const DEFAULT_SHELL: &str = "/bin/sh";
/// Environment variables passed through from the executor's own environment by default.
pub const DEFAULT_ENV_ALLOWLIST: &[&str] =
    &["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER"];

/// Settings of a [`ShellExecutor`].
///
/// Build one with [`ShellExecutorConfig::new`] and adjust fields, or use the `with_*` methods
/// of [`ShellExecutor`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShellExecutorConfig {
    /// Working directory when the request has none; a relative request `cwd` is resolved
    /// against it.
    pub workdir: PathBuf,
    /// Timeout when the request has none.
    pub timeout: Duration,
    /// After a timeout: time between SIGTERM and SIGKILL to the process group.
    pub kill_grace: Duration,
    /// After the shell exited: how long output is still read (from background processes that
    /// hold the pipes) before the process group is killed and reading stops.
    pub drain_window: Duration,
    /// Most bytes of stdout kept in the outcome (more is read and discarded).
    pub stdout_cap: usize,
    /// Most bytes of stderr kept in the outcome (more is read and discarded).
    pub stderr_cap: usize,
    /// Names of variables copied from the executor's own environment (when set there). Nothing
    /// else is inherited.
    pub env_allowlist: Vec<String>,
    /// Variables set for every command (over the allowlisted ones; request variables win).
    pub env: BTreeMap<String, String>,
    /// The shell, run as `<shell> -c <command>`.
    pub shell: PathBuf,
    /// On Linux, have the kernel SIGKILL the shell when the thread that spawned it dies
    /// (`PR_SET_PDEATHSIG`), so a crashed host leaves no command running.
    ///
    /// The kernel ties this to the spawning *thread*, not the process: if that thread exits
    /// while the command runs (e.g. a runtime thread retired after `block_in_place`), the
    /// command is killed.
    ///
    /// Off by default: the hook that sets it runs between fork and exec, which makes the
    /// standard library fork the whole host process instead of using `posix_spawn`. Forking
    /// costs time in proportion to the host's memory: measured here, `echo hi` took 1.1 ms
    /// in a small process and 99 ms in one holding a large heap with the hook on.
    pub kill_on_parent_death: bool,
    /// Run every command in this sandbox (Linux only; see [`crate::sandbox`]). `None` (the
    /// default) runs commands unconfined.
    ///
    /// A sandboxed run always sets the parent-death signal (whatever
    /// [`kill_on_parent_death`](Self::kill_on_parent_death) says), with the same caveat: the
    /// command dies if the runtime thread that spawned it exits, and the host is forked
    /// rather than using `posix_spawn`.
    pub sandbox: Option<SandboxConfig>,
}

impl ShellExecutorConfig {
    /// Default settings with `workdir` as the working directory.
    pub fn new(workdir: impl Into<PathBuf>) -> Self {
        Self {
            workdir: workdir.into(),
            timeout: DEFAULT_TIMEOUT,
            kill_grace: DEFAULT_KILL_GRACE,
            drain_window: DEFAULT_DRAIN_WINDOW,
            stdout_cap: DEFAULT_OUTPUT_CAP,
            stderr_cap: DEFAULT_OUTPUT_CAP,
            env_allowlist: DEFAULT_ENV_ALLOWLIST
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            env: BTreeMap::new(),
            shell: PathBuf::from(DEFAULT_SHELL),
            kill_on_parent_death: false,
            sandbox: None,
        }
    }
}

/// An [`Executor`] running each command as `sh -c <command>` on this machine.
///
/// Every run:
/// - starts the shell in a new process group, stdin closed (`/dev/null`), in the request's
///   working directory, with an explicit environment: the allowlisted variables of the
///   executor's own environment, then the configured variables, then the request's;
/// - reads stdout and stderr concurrently in chunks, keeps at most the configured cap of each
///   (setting `stdout_truncated` / `stderr_truncated` when more arrived) but keeps draining the
///   pipes, and forwards every chunk to the optional [`OutputSink`] without ever waiting on it;
/// - on timeout sends SIGTERM to the whole group, then SIGKILL after the grace period;
/// - once the shell has exited, reads for at most the drain window (background processes may
///   hold the pipes open forever), then kills what is left of the group;
/// - if its future is dropped, kills the whole group.
///
/// Output is decoded with invalid UTF-8 replaced by U+FFFD.
///
/// Without a sandbox, a process that leaves the group (`setsid`, `setpgid`) escapes this
/// supervision: the executor alone is a supervisor, not a sandbox. With one
/// ([`sandbox`](Self::sandbox)), each command instead starts in its own session,
/// cannot leave it, and runs confined (see [`crate::sandbox`]).
#[derive(Debug, Clone)]
pub struct ShellExecutor {
    config: ShellExecutorConfig,
}

impl ShellExecutor {
    /// An executor with default settings running commands in `workdir` by default.
    pub fn new(workdir: impl Into<PathBuf>) -> Self {
        Self::from_config(ShellExecutorConfig::new(workdir))
    }

    /// An executor running every command in `workspace` inside a strict sandbox
    /// ([`SandboxConfig::strict`]: writes only there, no network, default limits); the
    /// workspace is given once.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), ananta_core::ExecError> {
    /// use ananta_exec::ShellExecutor;
    ///
    /// let executor = ShellExecutor::sandboxed("/srv/agents/task-7");
    /// if let Some(report) = executor.sandbox_report()? {
    ///     tracing::info!(?report, "the sandbox this kernel gives");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn sandboxed(workspace: impl Into<PathBuf>) -> Self {
        Self::new(workspace).sandbox(SandboxConfig::strict())
    }

    /// An executor with the given settings.
    pub fn from_config(config: ShellExecutorConfig) -> Self {
        Self { config }
    }

    /// The settings.
    pub fn config(&self) -> &ShellExecutorConfig {
        &self.config
    }

    /// Sets the default timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Sets the time between SIGTERM and SIGKILL after a timeout.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.config.kill_grace = grace;
        self
    }

    /// Sets how long output is still read after the shell exited.
    pub fn drain_window(mut self, window: Duration) -> Self {
        self.config.drain_window = window;
        self
    }

    /// Sets the cap on kept stdout, in bytes.
    pub fn stdout_cap(mut self, cap: usize) -> Self {
        self.config.stdout_cap = cap;
        self
    }

    /// Sets the cap on kept stderr, in bytes.
    pub fn stderr_cap(mut self, cap: usize) -> Self {
        self.config.stderr_cap = cap;
        self
    }

    /// Sets both output caps, in bytes.
    pub fn output_cap(self, cap: usize) -> Self {
        self.stdout_cap(cap).stderr_cap(cap)
    }

    /// Replaces the list of variables inherited from the executor's environment.
    pub fn env_allowlist<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.env_allowlist = names.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one variable to the inherited list.
    pub fn allowed_env(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.config.env_allowlist.contains(&name) {
            self.config.env_allowlist.push(name);
        }
        self
    }

    /// Sets a variable for every command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.env.insert(key.into(), value.into());
        self
    }

    /// Sets the shell (run as `<shell> -c <command>`).
    pub fn shell(mut self, shell: impl Into<PathBuf>) -> Self {
        self.config.shell = shell.into();
        self
    }

    /// Turns the Linux parent-death signal on or off (see
    /// [`ShellExecutorConfig::kill_on_parent_death`]).
    pub fn kill_on_parent_death(mut self, on: bool) -> Self {
        self.config.kill_on_parent_death = on;
        self
    }

    /// Runs every command in a sandbox (see [`crate::sandbox`]). A sandbox without a
    /// workspace ([`SandboxConfig::strict`]) confines writes to this executor's working
    /// directory.
    pub fn sandbox(mut self, mut sandbox: SandboxConfig) -> Self {
        if sandbox.workspace.as_os_str().is_empty() {
            sandbox.workspace = self.config.workdir.clone();
        }
        self.config.sandbox = Some(sandbox);
        self
    }

    /// What confines the commands this executor runs, for
    /// [`PolicyGate::contained`](crate::PolicyGate::contained): a strict sandbox that can run
    /// on this kernel, or [`Containment::None`](crate::Containment::None) (no sandbox, a
    /// best-effort one, or one this kernel cannot provide).
    pub fn containment(&self) -> crate::Containment {
        match &self.config.sandbox {
            Some(sandbox)
                if sandbox.enforcement == crate::sandbox::Enforcement::Strict
                    && sandbox
                        .plan(crate::sandbox::KernelSupport::current())
                        .is_ok() =>
            {
                crate::Containment::Sandbox {
                    network: sandbox.allow_network,
                }
            }
            _ => crate::Containment::None,
        }
    }

    /// What the sandbox applies on this kernel: `Ok(None)` without a sandbox, and in strict
    /// mode an error when the kernel lacks a required feature, as every run would then fail.
    pub fn sandbox_report(&self) -> Result<Option<crate::sandbox::SandboxReport>, ExecError> {
        self.config
            .sandbox
            .as_ref()
            .map(|s| s.plan(crate::sandbox::KernelSupport::current()))
            .transpose()
    }

    /// Checks the request and resolves working directory, environment and timeout. With a
    /// sandbox, `HOME` and `TMPDIR` name its private temporary directory `sandbox_temp` unless
    /// the request sets them.
    async fn prepare(
        &self,
        request: &ExecRequest,
        sandbox_temp: Option<&std::path::Path>,
    ) -> Result<Prepared, ExecError> {
        let invalid = |msg: String| Err(ExecError::InvalidRequest(msg));
        if request.command.trim().is_empty() {
            return invalid("the command is empty".into());
        }
        if request.command.contains('\0') {
            return invalid("the command contains a NUL byte".into());
        }

        let cwd = match &request.cwd {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => self.config.workdir.join(dir),
            None => self.config.workdir.clone(),
        };
        if cwd.as_os_str().as_bytes().contains(&0) {
            return invalid("the working directory contains a NUL byte".into());
        }
        match tokio::fs::metadata(&cwd).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return invalid(format!(
                    "working directory {} is not a directory",
                    cwd.display()
                ));
            }
            Err(err) => {
                return invalid(format!(
                    "working directory {} is not usable: {err}",
                    cwd.display()
                ));
            }
        }

        let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
        for name in &self.config.env_allowlist {
            if let Some(value) = std::env::var_os(name) {
                env.insert(OsString::from(name), value);
            }
        }
        for (key, value) in &self.config.env {
            check_env_var("executor", key, value)?;
            env.insert(OsString::from(key), OsString::from(value));
        }
        if let Some(temp) = sandbox_temp {
            for name in ["HOME", "TMPDIR"] {
                env.insert(OsString::from(name), temp.as_os_str().to_owned());
            }
            #[cfg(target_os = "linux")]
            for (name, dir) in crate::sandbox::toolchain_homes() {
                env.entry(OsString::from(name))
                    .or_insert_with(|| dir.into_os_string());
            }
        }
        for (key, value) in &request.env {
            check_env_var("request", key, value)?;
            env.insert(OsString::from(key), OsString::from(value));
        }

        let timeout = request.timeout.unwrap_or(self.config.timeout);
        if timeout.is_zero() {
            return invalid("the timeout is zero".into());
        }
        Ok(Prepared { cwd, env, timeout })
    }

    /// Builds the command for a prepared request.
    fn command(
        &self,
        request: &ExecRequest,
        prepared: &Prepared,
        sandbox: Option<&mut RunSandbox>,
    ) -> Result<Command, ExecError> {
        let mut cmd = Command::new(&self.config.shell);
        cmd.arg("-c")
            .arg(&request.command)
            .env_clear()
            .envs(&prepared.env)
            .current_dir(&prepared.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(sandbox) = sandbox {
            // The sandbox starts a new session (and so a new group) itself, and sets the
            // parent-death signal.
            sandbox.install(&mut cmd, &prepared.cwd)?;
            return Ok(cmd);
        }
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        if self.config.kill_on_parent_death {
            set_parent_death_signal(&mut cmd);
        }
        Ok(cmd)
    }

    async fn run_inner(
        &self,
        request: ExecRequest,
        sink: Option<OutputSink>,
    ) -> Result<ExecOutcome, ExecError> {
        let outer = match &self.config.sandbox {
            Some(sandbox) => &sandbox.workspace,
            None => &self.config.workdir,
        };
        let outer = outer.canonicalize().unwrap_or_else(|_| outer.clone());
        let workspace =
            crate::workspace::request_workspace(&self.config.workdir, &outer, &request)?;
        let mut sandbox = match (&self.config.sandbox, &workspace) {
            (Some(config), Some(dir)) => {
                let mut narrowed = config.clone();
                narrowed.workspace = dir.clone();
                let git = crate::workspace::worktree_git_dirs(dir, &outer);
                narrowed.read_roots.extend(git.read);
                narrowed.worktree_admin = git.write.clone();
                narrowed.write_roots.extend(git.write);
                Some(RunSandbox::prepare(&narrowed)?)
            }
            (Some(config), None) => Some(RunSandbox::prepare(config)?),
            (None, _) => None,
        };
        let request = match workspace {
            Some(dir) if request.cwd.is_none() => ExecRequest {
                cwd: Some(dir),
                ..request
            },
            _ => request,
        };
        let prepared = self
            .prepare(&request, sandbox.as_ref().map(RunSandbox::temp_dir))
            .await?;
        let mut cmd = self.command(&request, &prepared, sandbox.as_mut())?;

        let start = Instant::now();
        let spawned = match &sandbox {
            Some(sandbox) => sandbox.spawn(|| cmd.spawn())?,
            None => cmd.spawn(),
        };
        let mut child = spawned.map_err(|err| {
            let what = if sandbox.is_some() {
                "sandbox setup or "
            } else {
                ""
            };
            ExecError::Spawn(format!("{what}{}: {err}", self.config.shell.display()))
        })?;
        drop(cmd);
        let pgid = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .ok_or_else(|| ExecError::Io("the spawned shell has no process id".into()))?;
        // Declared after `child` so it drops first: the group is killed while the shell is
        // still unreaped, so its id cannot have been reused.
        let mut guard = GroupGuard::new(pgid);
        tracing::Span::current().record("pgid", pgid);
        tracing::debug!(cwd = %prepared.cwd.display(), timeout = ?prepared.timeout, "command started");

        let redactor = crate::redact::Redactor::for_process_and(&prepared.env);
        let mut out = Capture::new(OutputStream::Stdout, self.config.stdout_cap);
        let mut err = Capture::new(OutputStream::Stderr, self.config.stderr_cap);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let (status, timed_out) = {
            let readers = futures::future::join(
                async {
                    if let Some(pipe) = stdout {
                        pump(pipe, &mut out, sink.clone(), &redactor).await;
                    }
                },
                async {
                    if let Some(pipe) = stderr {
                        pump(pipe, &mut err, sink.clone(), &redactor).await;
                    }
                },
            );
            tokio::pin!(readers);
            let supervised = supervise(&mut child, pgid, prepared.timeout, self.config.kill_grace);
            tokio::pin!(supervised);

            let mut readers_done = false;
            let result = tokio::select! {
                result = &mut supervised => result,
                _ = &mut readers => {
                    readers_done = true;
                    supervised.await
                }
            };
            if !readers_done
                && tokio::time::timeout(self.config.drain_window, &mut readers)
                    .await
                    .is_err()
            {
                tracing::debug!(
                    drain_window = ?self.config.drain_window,
                    "output pipes still open after the shell exited: background processes hold them"
                );
            }
            result
        };
        // The shell is gone: kill whatever it left in its group (background jobs holding the
        // pipes or not) and stop reading. If members remain, the group id stays reserved; if none
        // do, the id could in principle be reused between the reap and this call, which needs a
        // full wrap of the pid space within microseconds: accepted.
        guard.kill_now();
        let undone = match sandbox {
            Some(sandbox) => sandbox.finish().await,
            None => Vec::new(),
        };
        let status = status.map_err(|e| ExecError::Io(format!("waiting for the command: {e}")))?;

        let duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let dropped = out.dropped_chunks() + err.dropped_chunks();
        if dropped > 0 {
            tracing::debug!(dropped, "output sink was full: chunks not streamed");
        }
        let (stdout_total, stderr_total) = (out.total(), err.total());
        let (stdout, stdout_truncated) = out.into_text();
        let (stderr, stderr_truncated) = err.into_text();
        let stdout = redactor.redact(&stdout).into_owned();
        let mut stderr = redactor.redact(&stderr).into_owned();
        for line in &undone {
            // The model learns that its change to git metadata did not stay.
            stderr.push_str(&format!("\n[sandbox] {line}"));
        }
        let outcome = ExecOutcome {
            exit_code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            timed_out,
            duration_ms,
        };
        tracing::debug!(
            exit_code = ?outcome.exit_code,
            signal = ?outcome.signal,
            timed_out,
            duration_ms,
            stdout_bytes = stdout_total,
            stderr_bytes = stderr_total,
            "command finished"
        );
        Ok(outcome)
    }
}

#[async_trait]
impl Executor for ShellExecutor {
    async fn run(
        &self,
        request: ExecRequest,
        output: Option<OutputSink>,
    ) -> Result<ExecOutcome, ExecError> {
        let span = tracing::debug_span!(
            "shell_exec",
            command = %request.command,
            pgid = tracing::field::Empty
        );
        self.run_inner(request, output).instrument(span).await
    }
}

/// A validated request.
struct Prepared {
    cwd: PathBuf,
    env: BTreeMap<OsString, OsString>,
    timeout: Duration,
}

/// Rejects variables the OS cannot pass (empty name, `=` in the name, NUL anywhere).
fn check_env_var(source: &str, key: &str, value: &str) -> Result<(), ExecError> {
    let problem = if key.is_empty() {
        Some("has an empty name")
    } else if key.contains('=') {
        Some("has '=' in its name")
    } else if key.contains('\0') {
        Some("has a NUL byte in its name")
    } else if value.contains('\0') {
        Some("has a NUL byte in its value")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ExecError::InvalidRequest(format!(
            "{source} environment variable {key:?} {problem}"
        ))),
        None => Ok(()),
    }
}

/// Waits for the shell; past `timeout` sends SIGTERM to the group, then SIGKILL after `grace`.
/// Returns the exit status and whether the timeout fired.
async fn supervise(
    child: &mut Child,
    pgid: libc::pid_t,
    timeout: Duration,
    grace: Duration,
) -> (std::io::Result<ExitStatus>, bool) {
    if let Ok(status) = tokio::time::timeout(timeout, child.wait()).await {
        return (status, false);
    }
    tracing::debug!(
        ?timeout,
        "command timed out: sending SIGTERM to its process group"
    );
    signal_group(pgid, libc::SIGTERM);
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return (status, true);
    }
    tracing::debug!(
        ?grace,
        "command survived SIGTERM: sending SIGKILL to its process group"
    );
    signal_group(pgid, libc::SIGKILL);
    // `Child::wait` is cancel safe, so the earlier timed-out waits lost nothing.
    (child.wait().await, true)
}

/// Makes the kernel SIGKILL the shell if the spawning thread dies (Linux only).
#[cfg(target_os = "linux")]
fn set_parent_death_signal(cmd: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    let hook = move || -> std::io::Result<()> {
        // SAFETY (of the calls): prctl and getppid are plain system calls with integer
        // arguments; they are async-signal-safe and touch no memory of ours.
        if unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        } == -1
        {
            return Err(std::io::Error::last_os_error());
        }
        // The parent may have died between fork and prctl; then no signal will ever come.
        if parent != 0 && unsafe { libc::getppid() } != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // operations are allowed. It only makes the two system calls above, captures a single
    // integer (no locks, no allocation: `last_os_error` and `from_raw_os_error` build an
    // `io::Error` from an errno without allocating), and does not touch any duplicated state
    // of the parent's other threads.
    unsafe {
        cmd.pre_exec(hook);
    }
}
