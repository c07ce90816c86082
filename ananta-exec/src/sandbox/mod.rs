//! A Linux sandbox for [`ShellExecutor`](crate::ShellExecutor) runs.
//!
//! With a [`SandboxConfig`], every command runs confined, set up in the child between fork and
//! exec (the Landlock ruleset, the seccomp program and the cgroup are prepared in the parent;
//! the child only makes system calls):
//!
//! 1. its own session (`setsid`), and `PR_SET_PDEATHSIG(SIGKILL)`;
//! 2. a fresh pids cgroup capping the number of processes (this also holds for root, for whom
//!    `RLIMIT_NPROC` is not enforced);
//! 3. resource limits: file size, address space, CPU time, no core dumps;
//! 4. without network: a new network namespace when the host may create one;
//! 5. a private mount namespace where every mount is read-only except the workspace, the
//!    private temporary directory and the write roots (Landlock does not cover `chmod`,
//!    `utimensat` or extended attributes, which root may apply to any file it owns);
//! 6. as root: an empty capability bounding set and no capabilities (so no `reboot`, module
//!    loading, raw I/O, DAC override…), with `SECBIT_NOROOT` locked;
//! 7. `PR_SET_NO_NEW_PRIVS`;
//! 8. Landlock: read and execute beneath the read roots only; full access beneath the
//!    workspace and a private temporary directory (created for the run, removed after it, and
//!    set as `HOME` and `TMPDIR`); TCP bind and connect denied without network (ABI 4);
//!    signals and abstract Unix sockets scoped to the sandbox (ABI 6);
//! 9. seccomp: `setsid`/`setpgid` fail (nothing leaves the process group, so the executor's
//!    group kill reaches every process), `kill(-1)` fails, io_uring is unavailable, and without
//!    network `socket` for IP, packet and netlink families fails.
//!
//! After the run, the process group is killed and then whatever is left in the run's cgroup.
//!
//! [`KernelSupport::detect`] tells what the kernel offers. With [`Enforcement::Strict`] (the
//! default) a run whose required features are missing is refused with
//! [`ExecError::SandboxUnavailable`]; with [`Enforcement::BestEffort`] it runs with what is
//! available, and [`SandboxConfig::plan`] reports what that is.

mod cgroup;
mod child;
mod kernel;
mod landlock;
mod mounts;
mod seccomp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ananta_core::error::ExecError;

pub use kernel::{KernelSupport, PidsCgroup};

use cgroup::RunCgroup;
use child::ChildSetup;
use landlock::Ruleset;
use mounts::ReadOnlyMounts;
use seccomp::Filter;

/// Lowest Landlock ABI a strict sandbox accepts: 3 is the first that handles truncation.
pub const STRICT_MIN_LANDLOCK_ABI: u32 = 3;
/// Landlock ABI that scopes signals and abstract Unix sockets to the sandbox.
pub const SIGNAL_SCOPE_LANDLOCK_ABI: u32 = 6;

/// Files beneath `/etc` that hold secrets and are left out of [`default_read_roots`].
pub const ETC_SECRETS: &[&str] = &[
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "sudoers",
    "sudoers.d",
    "ssh",
    "ssl",
    "security",
    "subuid",
    "subgid",
];

/// What happens when the kernel lacks a feature the sandbox would use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Refuse to run ([`ExecError::SandboxUnavailable`]) unless every required feature is
    /// available.
    #[default]
    Strict,
    /// Run with whatever is available; [`SandboxConfig::plan`] tells what that is.
    BestEffort,
}

/// Resource limits of a sandboxed run. `u64::MAX` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most processes (and threads) alive at once in the run (pids cgroup, or `RLIMIT_NPROC`
    /// for a non-root host without a usable cgroup, where it counts all of the user's
    /// processes).
    pub max_processes: u64,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`).
    pub max_file_size: u64,
    /// Largest address space of each process, in bytes (`RLIMIT_AS`).
    pub max_address_space: u64,
    /// CPU seconds of each process (`RLIMIT_CPU`: SIGXCPU, then SIGKILL a second later).
    pub max_cpu_seconds: u64,
}

impl Default for Limits {
    /// 512 processes, 4 GiB files, 16 GiB address space, 10 CPU minutes per process.
    fn default() -> Self {
        Self {
            max_processes: 512,
            max_file_size: 4 << 30,
            max_address_space: 16 << 30,
            max_cpu_seconds: 600,
        }
    }
}

/// Settings of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// The task's workspace: the only place, with the private temporary directory, where
    /// commands may write.
    pub workspace: PathBuf,
    /// Paths beneath which commands may read and execute (missing ones are skipped).
    pub read_roots: Vec<PathBuf>,
    /// Further paths with full access (missing ones are skipped); by default the writable
    /// device files `/dev/null`, `/dev/zero` and `/dev/full`.
    pub write_roots: Vec<PathBuf>,
    /// Where the private temporary directory of each run is created (default: the system's
    /// temporary directory). It is not itself made accessible.
    pub temp_parent: Option<PathBuf>,
    /// Whether commands may use the network.
    pub allow_network: bool,
    /// Resource limits.
    pub limits: Limits,
    /// Refuse or degrade when the kernel lacks a feature.
    pub enforcement: Enforcement,
    /// The Landlock ABI required in strict mode, at least [`STRICT_MIN_LANDLOCK_ABI`] (higher
    /// values let a host insist on newer kernels).
    pub min_landlock_abi: u32,
}

impl SandboxConfig {
    /// A strict sandbox for `workspace` with [`default_read_roots`], no network and default
    /// [`Limits`].
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        Self {
            workspace: workspace.into(),
            read_roots: default_read_roots(),
            write_roots: ["/dev/null", "/dev/zero", "/dev/full"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            temp_parent: None,
            allow_network: false,
            limits: Limits::default(),
            enforcement: Enforcement::Strict,
            min_landlock_abi: STRICT_MIN_LANDLOCK_ABI,
        }
    }

    /// A strict sandbox like [`new`](Self::new) whose workspace is the working directory of
    /// the [`ShellExecutor`](crate::ShellExecutor) it is given to.
    pub fn strict() -> Self {
        Self::new(PathBuf::new())
    }

    /// Allows or forbids the network.
    pub fn network(mut self, allow: bool) -> Self {
        self.allow_network = allow;
        self
    }

    /// Sets the resource limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets strict or best-effort enforcement.
    pub fn enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// Adds a read-and-execute root.
    pub fn read_root(mut self, path: impl Into<PathBuf>) -> Self {
        self.read_roots.push(path.into());
        self
    }

    /// Adds a path with full access.
    pub fn write_root(mut self, path: impl Into<PathBuf>) -> Self {
        self.write_roots.push(path.into());
        self
    }

    /// Sets the Landlock ABI strict mode requires.
    pub fn min_landlock_abi(mut self, abi: u32) -> Self {
        self.min_landlock_abi = abi;
        self
    }

    /// Sets where private temporary directories are created.
    pub fn temp_parent(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_parent = Some(dir.into());
        self
    }

    /// What a run would apply on a kernel with `kernel`'s features; in strict mode an error
    /// when a required feature is missing.
    pub fn plan(&self, kernel: &KernelSupport) -> Result<SandboxReport, ExecError> {
        Ok(self.plan_inner(kernel)?.0)
    }

    fn plan_inner(&self, kernel: &KernelSupport) -> Result<(SandboxReport, Plan), ExecError> {
        let mut report = SandboxReport {
            landlock_abi: kernel.landlock_abi,
            applied: Vec::new(),
            missing: Vec::new(),
        };
        let mut plan = Plan::default();
        let abi = kernel.landlock_abi.unwrap_or(0);
        let seccomp = kernel.seccomp_filter && seccomp::SUPPORTED_ARCH;
        let required_abi = self.min_landlock_abi.max(STRICT_MIN_LANDLOCK_ABI);

        report.applied.push((Feature::Session, "setsid"));
        report
            .applied
            .push((Feature::ParentDeathSignal, "PR_SET_PDEATHSIG(SIGKILL)"));
        report
            .applied
            .push((Feature::NoNewPrivileges, "PR_SET_NO_NEW_PRIVS"));
        report.applied.push((
            Feature::ResourceLimits,
            "RLIMIT_FSIZE, RLIMIT_AS, RLIMIT_CPU, RLIMIT_CORE",
        ));

        if abi >= required_abi || (abi > 0 && self.enforcement == Enforcement::BestEffort) {
            plan.landlock_abi = Some(abi);
            report.applied.push((Feature::Filesystem, "Landlock"));
            if abi < required_abi {
                report.missing.push((
                    Feature::Filesystem,
                    "Landlock ABI below the required one (partial: e.g. truncation unchecked)",
                ));
            }
        } else if abi > 0 {
            report
                .missing
                .push((Feature::Filesystem, "Landlock ABI below the required one"));
        } else {
            report
                .missing
                .push((Feature::Filesystem, "Landlock is not available"));
        }

        if plan.landlock_abi.is_some() && abi >= SIGNAL_SCOPE_LANDLOCK_ABI {
            plan.scope = true;
            report.applied.push((
                Feature::SignalScope,
                "Landlock scope (signals, abstract sockets)",
            ));
        } else {
            report
                .missing
                .push((Feature::SignalScope, "needs Landlock ABI 6 (Linux 6.12)"));
        }

        if seccomp {
            plan.seccomp = true;
            report.applied.push((
                Feature::ProcessGroupLock,
                "seccomp (setsid, setpgid denied)",
            ));
        } else {
            report.missing.push((
                Feature::ProcessGroupLock,
                "seccomp filters are not available",
            ));
        }

        if !self.allow_network {
            let mut how = Vec::new();
            if seccomp {
                how.push("seccomp");
            }
            if plan.landlock_abi.is_some() && abi >= 4 {
                plan.deny_tcp = true;
                how.push("Landlock TCP");
            }
            if kernel.net_namespace {
                plan.net_namespace = true;
                how.push("network namespace");
            }
            if seccomp || plan.net_namespace {
                report.applied.push((
                    Feature::NoNetwork,
                    match how.as_slice() {
                        ["seccomp", "Landlock TCP", "network namespace"] => {
                            "seccomp socket families, Landlock TCP, network namespace"
                        }
                        ["seccomp", "Landlock TCP"] => "seccomp socket families, Landlock TCP",
                        ["seccomp", "network namespace"] => {
                            "seccomp socket families, network namespace"
                        }
                        ["seccomp"] => "seccomp socket families",
                        _ => "network namespace",
                    },
                ));
            } else {
                report.missing.push((
                    Feature::NoNetwork,
                    "needs seccomp filters or a network namespace",
                ));
            }
        }

        if let Some(cg) = &kernel.pids_cgroup {
            plan.cgroup = Some(cg.clone());
            report.applied.push((Feature::ProcessLimit, "pids cgroup"));
        } else if !kernel.root && !kernel.cap_sys_admin {
            plan.nproc = true;
            report.applied.push((
                Feature::ProcessLimit,
                "RLIMIT_NPROC (counts all the user's processes)",
            ));
        } else {
            report.missing.push((
                Feature::ProcessLimit,
                "no writable pids cgroup, and RLIMIT_NPROC is not enforced for root",
            ));
        }

        if kernel.mount_namespace {
            plan.read_only_mounts = true;
            report.applied.push((
                Feature::ReadOnlySystem,
                "mount namespace, all mounts read-only but the writable roots",
            ));
        } else {
            report.missing.push((
                Feature::ReadOnlySystem,
                "needs CAP_SYS_ADMIN and mount_setattr (Linux 5.12): chmod, utimes and xattrs outside the workspace stay possible on files the user owns",
            ));
        }

        if kernel.cap_setpcap {
            plan.drop_caps = true;
            report.applied.push((
                Feature::DropCapabilities,
                "empty bounding set, no capabilities, SECBIT_NOROOT",
            ));
        } else if kernel.root {
            report.missing.push((
                Feature::DropCapabilities,
                "running as root without CAP_SETPCAP",
            ));
        }

        if self.enforcement == Enforcement::Strict && !report.missing.is_empty() {
            let missing: Vec<String> = report
                .missing
                .iter()
                .map(|(f, why)| format!("{f} ({why})"))
                .collect();
            return Err(ExecError::SandboxUnavailable(format!(
                "strict sandbox needs {}; this kernel offers: {}{}",
                missing.join(", "),
                kernel,
                if abi > 0 && abi < required_abi {
                    format!(" (Landlock ABI {required_abi} required)")
                } else {
                    String::new()
                }
            )));
        }
        Ok((report, plan))
    }
}

/// The default read-and-execute roots: system binaries and libraries (`/usr`, `/bin`, `/sbin`,
/// `/lib*`, `/opt`), `/etc` without [`ETC_SECRETS`] (but with `/etc/ssl/certs`), `/proc`,
/// `/dev/urandom` and `/dev/random`, and the Rust toolchain (`$RUSTUP_HOME`, and the `bin`,
/// `registry` and `git` directories of `$CARGO_HOME`, not its credentials; `~/.rustup` and
/// `~/.cargo` when the variables are not set).
///
/// `/proc` lets tools inspect their own processes; Landlock's ptrace rules keep other
/// processes' memory, environment and descriptors out of reach, but their command lines are
/// readable. Remove it from the list if that matters.
pub fn default_read_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = [
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/opt",
        "/proc",
        "/dev/urandom",
        "/dev/random",
        "/etc/ssl/certs",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Ok(entries) = std::fs::read_dir("/etc") {
        let mut etc: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_none_or(|name| !ETC_SECRETS.contains(&name))
            })
            .map(|e| e.path())
            .collect();
        etc.sort();
        roots.extend(etc);
    }
    for (name, dir) in toolchain_homes() {
        if name == "RUSTUP_HOME" {
            roots.push(dir);
        } else {
            for sub in ["bin", "registry", "git"] {
                roots.push(dir.join(sub));
            }
        }
    }
    roots
}

/// The Rust toolchain's homes of the host: `RUSTUP_HOME` and `CARGO_HOME` when set, else
/// `~/.rustup` and `~/.cargo` when they exist. A sandboxed command gets a private `HOME`, so
/// the executor also passes these two variables to it: without them rustup's `cargo` and
/// `rustc` proxies would look for a toolchain in the private home and find none.
pub(crate) fn toolchain_homes() -> Vec<(&'static str, PathBuf)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")]
        .into_iter()
        .filter_map(|(name, default)| {
            let dir = std::env::var_os(name)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(default)))?;
            dir.is_dir().then_some((name, dir))
        })
        .collect()
}

/// A confinement feature of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// Own session and process group.
    Session,
    /// Killed when the spawning thread dies.
    ParentDeathSignal,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivileges,
    /// File size, address space and CPU limits.
    ResourceLimits,
    /// Reads confined to the read roots, writes to the workspace and private temp dir.
    Filesystem,
    /// Signals (e.g. `kill -9 -1`) and abstract Unix sockets cannot reach outside processes.
    SignalScope,
    /// Processes cannot leave the process group, so none outlives the run.
    ProcessGroupLock,
    /// No network access.
    NoNetwork,
    /// A cap on the number of processes (fork bombs).
    ProcessLimit,
    /// Root's capabilities dropped.
    DropCapabilities,
    /// Everything but the writable roots mounted read-only (metadata changes refused).
    ReadOnlySystem,
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Session => "own session",
            Self::ParentDeathSignal => "parent-death signal",
            Self::NoNewPrivileges => "no new privileges",
            Self::ResourceLimits => "resource limits",
            Self::Filesystem => "filesystem confinement",
            Self::SignalScope => "signal scoping",
            Self::ProcessGroupLock => "process group lock",
            Self::NoNetwork => "network isolation",
            Self::ProcessLimit => "process limit",
            Self::DropCapabilities => "capability drop",
            Self::ReadOnlySystem => "read-only system",
        })
    }
}

/// What a sandbox applies on this kernel, and what it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxReport {
    /// The kernel's Landlock ABI.
    pub landlock_abi: Option<u32>,
    /// Features applied, each with the mechanism.
    pub applied: Vec<(Feature, &'static str)>,
    /// Features missing (only non-empty in best-effort mode), each with the reason.
    pub missing: Vec<(Feature, &'static str)>,
}

impl SandboxReport {
    /// Whether `feature` is applied.
    pub fn applies(&self, feature: Feature) -> bool {
        self.applied.iter().any(|(f, _)| *f == feature)
    }
}

impl fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sandbox:")?;
        for (i, (feature, how)) in self.applied.iter().enumerate() {
            write!(f, "{} {feature} ({how})", if i == 0 { "" } else { ";" })?;
        }
        for (feature, why) in &self.missing {
            write!(f, "; MISSING {feature}: {why}")?;
        }
        Ok(())
    }
}

/// What a run applies (the mechanisms chosen from the kernel's features).
#[derive(Debug, Clone, Default)]
struct Plan {
    landlock_abi: Option<u32>,
    scope: bool,
    deny_tcp: bool,
    seccomp: bool,
    net_namespace: bool,
    cgroup: Option<PidsCgroup>,
    nproc: bool,
    drop_caps: bool,
    read_only_mounts: bool,
}

/// The sandbox of one run: private temp dir, cgroup, Landlock ruleset and child setup.
#[derive(Debug)]
pub(crate) struct RunSandbox {
    temp: Option<tempfile::TempDir>,
    cgroup: Option<RunCgroup>,
    /// Kept open until the child has been spawned.
    _ruleset: Option<Ruleset>,
    setup: Option<ChildSetup>,
}

impl RunSandbox {
    /// Prepares everything in the parent; fails (strict mode) when the kernel cannot provide
    /// the sandbox.
    pub(crate) fn prepare(config: &SandboxConfig) -> Result<Self, ExecError> {
        let (report, plan) = config.plan_inner(KernelSupport::current())?;
        if !report.missing.is_empty() {
            tracing::warn!(%report, "best-effort sandbox: some features are missing");
        }
        let sandbox_err =
            |what: &str, e: std::io::Error| ExecError::Spawn(format!("sandbox: {what}: {e}"));
        let parent = config
            .temp_parent
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let temp = tempfile::Builder::new()
            .prefix("ananta-sandbox-")
            .tempdir_in(&parent)
            .map_err(|e| sandbox_err("creating the private temporary directory", e))?;

        let cgroup = match &plan.cgroup {
            Some(cg) => Some(
                RunCgroup::create(cg, config.limits.max_processes)
                    .map_err(|e| sandbox_err("creating the pids cgroup", e))?,
            ),
            None => None,
        };

        let ruleset = match plan.landlock_abi {
            Some(abi) => {
                let mut rs = Ruleset::new(abi, plan.deny_tcp, plan.scope)
                    .map_err(|e| sandbox_err("creating the Landlock ruleset", e))?;
                let all = rs.handled_fs();
                let mut add = |path: &Path, access: u64, required: bool| match rs
                    .allow_path(path, access)
                {
                    Ok(true) => Ok(()),
                    Ok(false) if !required => Ok(()),
                    Ok(false) => Err(ExecError::Spawn(format!(
                        "sandbox: {} does not exist",
                        path.display()
                    ))),
                    Err(e) if !required => {
                        tracing::debug!(path = %path.display(), error = %e, "sandbox root skipped");
                        Ok(())
                    }
                    Err(e) => Err(sandbox_err(&format!("allowing {}", path.display()), e)),
                };
                for root in &config.read_roots {
                    add(root, landlock::FS_READ_EXEC, false)?;
                }
                for root in &config.write_roots {
                    add(root, all, false)?;
                }
                add(&config.workspace, all, true)?;
                add(temp.path(), all, true)?;
                Some(rs)
            }
            None => None,
        };

        let mut rlimits = vec![
            (libc::RLIMIT_CORE, 0, 0),
            (
                libc::RLIMIT_FSIZE,
                config.limits.max_file_size,
                config.limits.max_file_size,
            ),
            (
                libc::RLIMIT_AS,
                config.limits.max_address_space,
                config.limits.max_address_space,
            ),
            (
                libc::RLIMIT_CPU,
                config.limits.max_cpu_seconds,
                config.limits.max_cpu_seconds.saturating_add(1),
            ),
        ];
        if plan.nproc {
            rlimits.push((
                libc::RLIMIT_NPROC,
                config.limits.max_processes,
                config.limits.max_processes,
            ));
        }
        let read_only_mounts = if plan.read_only_mounts {
            let writable = [config.workspace.as_path(), temp.path()]
                .into_iter()
                .chain(config.write_roots.iter().map(PathBuf::as_path));
            Some(
                ReadOnlyMounts::new(writable)
                    .map_err(|e| sandbox_err("preparing the mount namespace", e))?,
            )
        } else {
            None
        };
        let setup = ChildSetup::new(
            cgroup.as_ref().map(RunCgroup::procs_fd),
            rlimits,
            plan.net_namespace,
            read_only_mounts,
            plan.drop_caps,
            ruleset.as_ref().map(|rs| {
                use std::os::fd::AsRawFd;
                rs.fd().as_raw_fd()
            }),
            plan.seccomp.then(|| Filter::new(!config.allow_network)),
        );
        Ok(Self {
            temp: Some(temp),
            cgroup,
            _ruleset: ruleset,
            setup: Some(setup),
        })
    }

    /// The private temporary directory (the command's `HOME` and `TMPDIR`).
    pub(crate) fn temp_dir(&self) -> &Path {
        self.temp
            .as_ref()
            .map_or(Path::new("/nonexistent"), |t| t.path())
    }

    /// Installs the child setup on `cmd` (once); the command runs in `cwd`.
    pub(crate) fn install(
        &mut self,
        cmd: &mut tokio::process::Command,
        cwd: &Path,
    ) -> Result<(), ExecError> {
        if let Some(mut setup) = self.setup.take() {
            setup
                .set_cwd(cwd)
                .map_err(|e| ExecError::InvalidRequest(format!("working directory: {e}")))?;
            setup.install(cmd);
        }
        Ok(())
    }

    /// After the run (process group already killed): kills what is left in the cgroup,
    /// removes it and the private temporary directory.
    pub(crate) async fn finish(mut self) {
        if let Some(cg) = self.cgroup.take() {
            cg.kill_and_remove(Duration::from_secs(2)).await;
        }
        if let Some(temp) = self.temp.take() {
            let path = temp.path().to_path_buf();
            let removed = tokio::task::spawn_blocking(move || temp.close()).await;
            if !matches!(removed, Ok(Ok(()))) {
                tracing::warn!(path = %path.display(), "could not remove the sandbox's temporary directory");
            }
        }
    }
}
