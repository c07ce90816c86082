//! A Linux sandbox for [`ShellExecutor`](crate::ShellExecutor) runs.
//!
//! With a [`SandboxConfig`], every command runs confined, set up in the child between fork and
//! exec (the Landlock ruleset, the seccomp program, the cgroup and the plan of the private
//! root are prepared in the parent; the child only makes system calls):
//!
//! 1. its own session (`setsid`), and `PR_SET_PDEATHSIG(SIGKILL)`;
//! 2. a fresh pids cgroup capping the number of processes (this also holds for root, for whom
//!    `RLIMIT_NPROC` is not enforced);
//! 3. resource limits: file size, address space, CPU time, no core dumps;
//! 4. new PID, IPC and UTS namespaces: the command is the first process of its own PID
//!    namespace (so `/proc` shows only its processes, and when it ends — or the host process
//!    dies — the kernel kills every process it started), host SysV IPC objects are out of
//!    reach and its own vanish with it, and `hostname` changes nothing outside;
//! 5. without network: an empty network namespace, made once per process and shared by its runs
//!    (no interface is up; it also keeps abstract Unix sockets away from the host's);
//! 6. a private root (see below);
//! 7. as root: an empty capability bounding set and no capabilities (so no `reboot`, module
//!    loading, raw I/O, DAC override…), with `SECBIT_NOROOT` locked;
//! 8. `PR_SET_NO_NEW_PRIVS`;
//! 9. Landlock: read and execute beneath the read roots only; full access beneath the
//!    workspace, the private home and the private `/tmp` and `/dev/shm`; TCP bind and
//!    connect denied without network (ABI 4); signals and abstract Unix sockets scoped to the
//!    sandbox (ABI 6);
//! 10. seccomp: `setsid`/`setpgid` fail (nothing leaves the process group, so the executor's
//!     group kill reaches every process), `kill(-1)` fails, io_uring is unavailable, and
//!     without network `socket` for IP, packet and netlink families fails.
//!
//! **The private root** is a fresh file system holding only what the configuration names:
//! the read roots (read-only; `/etc` through the allow list [`ETC_READABLE`]), the
//! workspace, the private home and the write roots (writable), empty private `/tmp` and
//! `/dev/shm`, a few device files and a `/proc` of the run's PID namespace. `/run`,
//! `/var/run`, homes, the rest of `/tmp` and `/etc` do not exist inside, so neither do the
//! Unix sockets of host services (a database on `/run/postgresql`…): a path-based
//! `connect()`, which Landlock up to ABI 7 does not govern, has nothing to reach. Sockets a
//! command needs are named with [`SandboxConfig::unix_socket`].
//!
//! **Git metadata**: in a workspace that is a git repository, `.git/hooks` and `.git/config`
//! are read-only and `.git` cannot be renamed or removed, while the rest of `.git` stays
//! writable (`git add`, `git commit` work); what git would also take commands from and that
//! cannot be mounted read-only in advance (`commondir`, `config.worktree`, `.git/modules`, a
//! repository made by `git init` during the run) is checked after the run and restored, so a
//! planted hook or `core.fsmonitor` never runs when the user later runs git outside. Commits
//! get an author from [`SandboxConfig::git_identity`] (default: the host's, else
//! `Ananta agent`).
//!
//! After the run, the process group is killed and then whatever is left in the run's cgroup;
//! cgroups of runs whose host process died are swept on the next start.
//!
//! [`KernelSupport::detect`] tells what the kernel offers. With [`Enforcement::Strict`] (the
//! default) a run whose required features are missing is refused with
//! [`ExecError::SandboxUnavailable`]; with [`Enforcement::BestEffort`] it runs with what is
//! available, and [`SandboxConfig::plan`] reports what that is.

mod cgroup;
mod child;
mod git;
mod kernel;
mod landlock;
mod mounts;
mod report;
mod roots;
mod seccomp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ananta_core::error::ExecError;

pub use git::GitIdentity;
pub use kernel::{KernelSupport, PidsCgroup};
pub use report::{Feature, SandboxReport};
pub(crate) use roots::toolchain_homes;
pub use roots::{ETC_READABLE, default_read_roots};

use cgroup::RunCgroup;
use child::{ChildSetup, LandlockFd};
use git::GitGuard;
use landlock::Ruleset;
use mounts::{PrivateRoot, Visible};
use seccomp::Filter;

/// Lowest Landlock ABI a strict sandbox accepts: 3 is the first that handles truncation.
pub const STRICT_MIN_LANDLOCK_ABI: u32 = 3;
/// Landlock ABI that scopes signals and abstract Unix sockets to the sandbox.
pub const SIGNAL_SCOPE_LANDLOCK_ABI: u32 = 6;

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
    /// Unix sockets of the host a command may connect to (each made visible in the private
    /// root at its own path); none by default.
    pub unix_sockets: Vec<PathBuf>,
    /// The author of commits made in the sandbox (`None`: [`GitIdentity::host_or_default`]).
    pub git_identity: Option<GitIdentity>,
    /// The git directories of a worktree workspace (set by the executor), guarded like `.git`.
    pub(crate) worktree_admin: Vec<PathBuf>,
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
            unix_sockets: Vec::new(),
            git_identity: None,
            worktree_admin: Vec::new(),
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

    /// Lets commands connect to the host's Unix socket at `path` (e.g. a database the task
    /// needs); every other socket outside the workspace stays invisible.
    pub fn unix_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.unix_sockets.push(path.into());
        self
    }

    /// Sets the author of commits made in the sandbox.
    pub fn git_identity(mut self, identity: GitIdentity) -> Self {
        self.git_identity = Some(identity);
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
            plan.private_root = true;
            report.applied.push((
                Feature::PrivateRoot,
                "mount namespace, pivot_root into a tmpfs of read-only and writable binds",
            ));
        } else {
            report.missing.push((
                Feature::PrivateRoot,
                "needs CAP_SYS_ADMIN and mount_setattr (Linux 5.12): host sockets and paths stay visible, and chmod, utimes and xattrs outside the workspace stay possible on files the user owns",
            ));
        }

        if kernel.pid_namespace && kernel.ipc_namespace && kernel.uts_namespace {
            plan.namespaces = true;
            report.applied.push((
                Feature::Namespaces,
                "PID namespace with its own /proc, IPC and UTS namespaces",
            ));
        } else {
            report.missing.push((
                Feature::Namespaces,
                "needs CAP_SYS_ADMIN: host processes and SysV IPC visible, and background processes can outlive a host crash",
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
    private_root: bool,
    namespaces: bool,
}

/// The sandbox of one run: private home, cgroup, Landlock ruleset, git guard and child setup.
#[derive(Debug)]
pub(crate) struct RunSandbox {
    /// The command is the first process of a new PID namespace.
    pid_namespace: bool,
    temp: Option<tempfile::TempDir>,
    home: PathBuf,
    cgroup: Option<RunCgroup>,
    /// The Landlock ruleset, kept open until the child has been spawned.
    _ruleset: Option<std::os::fd::OwnedFd>,
    git: Option<GitGuard>,
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
        let home = temp.path().join("home");
        let identity = config
            .git_identity
            .clone()
            .unwrap_or_else(GitIdentity::host_or_default);
        std::fs::create_dir(&home)
            .and_then(|()| std::fs::write(home.join(".gitconfig"), identity.gitconfig()))
            .map_err(|e| sandbox_err("creating the private home", e))?;

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
                let mut add = |path: &Path, access, required: bool| match rs
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
                    add(root, landlock::read_exec(), false)?;
                }
                for root in &config.write_roots {
                    add(root, all, false)?;
                }
                add(&config.workspace, all, true)?;
                add(&home, all, true)?;
                let handled = rs.handled_fs();
                let fd = rs
                    .into_fd()
                    .map_err(|e| sandbox_err("creating the Landlock ruleset", e))?;
                Some((fd, handled))
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

        let (git, git_visible) = GitGuard::prepare(&config.workspace, &config.worktree_admin);
        let root = if plan.private_root {
            let mount_point = temp.path().join("root");
            std::fs::create_dir(&mount_point)
                .map_err(|e| sandbox_err("creating the root's mount point", e))?;
            let mut entries = visible_entries(config, plan.namespaces);
            entries.extend(git_visible);
            Some(
                PrivateRoot::plan(&mount_point, entries, &home, config.limits.max_file_size)
                    .map_err(|e| sandbox_err("planning the private root", e))?,
            )
        } else {
            None
        };
        let mut unshare = 0;
        let net_namespace = if plan.net_namespace {
            match kernel::shared_net_namespace() {
                Some(fd) => Some(fd),
                None => {
                    unshare |= libc::CLONE_NEWNET;
                    None
                }
            }
        } else {
            None
        };
        if plan.namespaces {
            unshare |= libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        }
        if root.is_some() {
            unshare |= libc::CLONE_NEWNS;
        }
        let setup = ChildSetup {
            parent: if plan.namespaces {
                0
            } else {
                libc::pid_t::try_from(std::process::id()).unwrap_or(0)
            },
            cgroup_procs: cgroup.as_ref().map(RunCgroup::procs_fd),
            rlimits: child::clamp_rlimits(rlimits),
            net_namespace,
            unshare,
            root,
            drop_caps: plan.drop_caps,
            landlock: ruleset.as_ref().map(|(fd, handled)| {
                use std::os::fd::AsRawFd;
                LandlockFd {
                    fd: fd.as_raw_fd(),
                    list: landlock::list_dir().bits(),
                    read: (landlock::read_exec() & *handled).bits(),
                    all: handled.bits(),
                }
            }),
            seccomp: plan
                .seccomp
                .then(|| Filter::new(!config.allow_network))
                .transpose()
                .map_err(|e| sandbox_err("compiling the seccomp filters", e))?,
        };
        Ok(Self {
            pid_namespace: plan.namespaces,
            temp: Some(temp),
            home,
            cgroup,
            _ruleset: ruleset.map(|(fd, _)| fd),
            git: Some(git),
            setup: Some(setup),
        })
    }

    /// The private home directory (the command's `HOME` and `TMPDIR`).
    pub(crate) fn temp_dir(&self) -> &Path {
        &self.home
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

    /// Calls `spawn` (which forks the command) so that, with PID namespaces, the command is
    /// the first process of a new one: the calling thread's children go into a new PID
    /// namespace for the duration of the call only (`unshare(CLONE_NEWPID)` affects the
    /// calling thread's future children; the thread's own is restored before returning, even
    /// if `spawn` panics). One fork instead of two: a second fork from the child costs a copy
    /// of the host process's page tables (about 1.7 ms in the exec bench).
    pub(crate) fn spawn<T>(&self, spawn: impl FnOnce() -> T) -> Result<T, ExecError> {
        if !self.pid_namespace {
            return Ok(spawn());
        }
        let host = kernel::host_pid_namespace().ok_or_else(|| {
            ExecError::Spawn("sandbox: this process's PID namespace cannot be opened".into())
        })?;
        struct Restore(libc::c_int);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: setns with a namespace descriptor this process keeps open.
                if unsafe { libc::setns(self.0, libc::CLONE_NEWPID) } != 0 {
                    tracing::error!(
                        error = %std::io::Error::last_os_error(),
                        "could not restore the thread's PID namespace for children"
                    );
                }
            }
        }
        // SAFETY: unshare with a flag that changes only this thread's future children.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return Err(ExecError::Spawn(format!(
                "sandbox: creating the PID namespace: {}",
                std::io::Error::last_os_error()
            )));
        }
        let _restore = Restore(host);
        Ok(spawn())
    }

    /// After the run (process group already killed): kills what is left in the cgroup,
    /// undoes planted git metadata, removes the cgroup and the private directory. Returns a
    /// line per git change it undid.
    pub(crate) async fn finish(mut self) -> Vec<String> {
        if let Some(cg) = self.cgroup.take() {
            cg.kill_and_remove(Duration::from_secs(2)).await;
        }
        // A handful of small file operations each: cheaper inline than a trip through the
        // blocking pool (which cost more than the work, measured in the exec bench).
        let undone = self.git.take().map(|git| git.restore()).unwrap_or_default();
        if let Some(temp) = self.temp.take() {
            let path = temp.path().to_path_buf();
            if temp.close().is_err() {
                tracing::warn!(path = %path.display(), "could not remove the sandbox's temporary directory");
            }
        }
        undone
    }
}

/// What the private root shows (besides the run's home): read roots, write roots, sockets,
/// workspace, private `/tmp` and `/dev/shm`, the `/dev/fd` links, and `/proc` (a fresh one
/// with `namespaces`). Read roots inside `/etc` show as one read-only `/etc`, in which
/// Landlock lets only they be read (one mount instead of dozens).
fn visible_entries(config: &SandboxConfig, namespaces: bool) -> Vec<(PathBuf, Visible)> {
    let mut entries: Vec<(PathBuf, Visible)> = Vec::new();
    for root in &config.read_roots {
        let kind = if namespaces && root == Path::new("/proc") {
            Visible::Proc
        } else {
            Visible::Read
        };
        if root.starts_with("/etc") && root != Path::new("/etc") {
            if !entries.iter().any(|(p, _)| p == Path::new("/etc")) {
                entries.push(("/etc".into(), Visible::Read));
            }
            continue;
        }
        entries.push((root.clone(), kind));
    }
    for root in config.write_roots.iter().chain(&config.unix_sockets) {
        entries.push((root.clone(), Visible::Write));
    }
    entries.push((config.workspace.clone(), Visible::Write));
    entries.push(("/tmp".into(), Visible::Tmpfs));
    entries.push(("/var/tmp".into(), Visible::Tmpfs));
    entries.push(("/dev/shm".into(), Visible::Tmpfs));
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        entries.push((link.into(), Visible::Symlink(target.into())));
    }
    entries
}
