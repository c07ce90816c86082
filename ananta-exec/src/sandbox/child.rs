//! The part of the sandbox that runs in the forked child before exec.
//!
//! Everything is prepared in the parent; between fork and exec only async-signal-safe system
//! calls are made, with no allocation and no locks (the standard library runs the hook in a
//! child of a possibly multi-threaded parent). Errors are built from raw errno values, which
//! does not allocate either; any error aborts the spawn, so a sandbox that cannot be set up
//! never runs the command.

use std::io;

use super::cgroup;
use super::landlock;
use super::mounts::PrivateRoot;
use super::seccomp::Filter;

/// An `RLIMIT_*` resource as `setrlimit` takes it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) type Resource = libc::__rlimit_resource_t;
/// An `RLIMIT_*` resource as `setrlimit` takes it.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) type Resource = libc::c_int;

/// `SECBIT_NOROOT | SECBIT_NOROOT_LOCKED`: uid 0 gains no capabilities on exec.
const SECBITS_NOROOT: libc::c_ulong = 0x1 | 0x2;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// What the child applies, in order.
#[derive(Debug)]
pub(crate) struct ChildSetup {
    pub(crate) parent: libc::pid_t,
    pub(crate) cgroup_procs: Option<libc::c_int>,
    /// (resource, soft, hard), already clamped to the parent's hard limits.
    pub(crate) rlimits: Vec<(Resource, u64, u64)>,
    /// A network namespace to join (the process's shared, empty one) instead of creating one.
    pub(crate) net_namespace: Option<libc::c_int>,
    /// `CLONE_NEW*` flags to unshare (network, IPC, UTS, mount). The PID namespace is made
    /// by the spawning thread ([`super::RunSandbox::spawn`]), so the command is its first
    /// process without a second fork.
    pub(crate) unshare: libc::c_int,
    /// The sandbox's own root (needs `CLONE_NEWNS` in `unshare`).
    pub(crate) root: Option<PrivateRoot>,
    pub(crate) drop_caps: bool,
    /// The Landlock ruleset and the rights of its read and full rules.
    pub(crate) landlock: Option<LandlockFd>,
    pub(crate) seccomp: Option<Filter>,
}

/// A Landlock ruleset prepared in the parent, and the rights the child gives the file
/// systems it creates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LandlockFd {
    pub(crate) fd: libc::c_int,
    /// Listing directories (given on `/`).
    pub(crate) list: u64,
    pub(crate) read: u64,
    pub(crate) all: u64,
}

/// Clamps `(resource, soft, hard)` limits to this process's hard limits: a child cannot raise
/// a hard limit without `CAP_SYS_RESOURCE`.
pub(crate) fn clamp_rlimits(rlimits: Vec<(Resource, u64, u64)>) -> Vec<(Resource, u64, u64)> {
    rlimits
        .into_iter()
        .map(|(resource, soft, hard)| {
            let mut current = libc::rlimit {
                rlim_cur: 0,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: getrlimit writes into the valid struct.
            unsafe { libc::getrlimit(resource, &mut current) };
            let hard = hard.min(current.rlim_max);
            (resource, soft.min(hard), hard)
        })
        .collect()
}

impl ChildSetup {
    /// Sets the directory the command runs in (re-entered inside the new root).
    pub(crate) fn set_cwd(&mut self, cwd: &std::path::Path) -> io::Result<()> {
        match &mut self.root {
            Some(root) => root.set_cwd(cwd),
            None => Ok(()),
        }
    }

    /// Registers [`apply`](Self::apply) as the command's pre-exec hook.
    pub(crate) fn install(self, cmd: &mut tokio::process::Command) {
        // SAFETY: `apply` only makes async-signal-safe system calls, reads data owned by the
        // closure, does not allocate and takes no locks (see the module documentation).
        unsafe {
            cmd.pre_exec(move || self.apply());
        }
    }

    /// Applies the sandbox to the calling (child) process.
    fn apply(&self) -> io::Result<()> {
        // Own session and process group (its id is our pid, which the executor kills).
        // SAFETY (all calls below): plain system calls with integer arguments or pointers to
        // live, initialised data owned by `self` or the stack.
        if unsafe { libc::setsid() } == -1 {
            return Err(io::Error::last_os_error());
        }
        set_parent_death_signal()?;
        // The parent may have died between fork and prctl; then no signal would ever come.
        // (In its own PID namespace the command's parent has no id: `parent` is 0 then, and
        // the executor's group kill and the cgroup sweep cover that instant.)
        if self.parent != 0 && unsafe { libc::getppid() } != self.parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(fd) = self.cgroup_procs {
            cgroup::join(fd)?;
        }
        for &(resource, soft, hard) in &self.rlimits {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            check(unsafe { libc::setrlimit(resource, &limit) })?;
        }
        if let Some(fd) = self.net_namespace {
            check(unsafe { libc::setns(fd, libc::CLONE_NEWNET) })?;
        }
        if self.unshare != 0 {
            check(unsafe { libc::unshare(self.unshare) })?;
        }
        if self.unshare & libc::CLONE_NEWUTS != 0 {
            let name = b"ananta-sandbox";
            check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
        }
        if let Some(root) = &self.root {
            root.apply()?;
            if let Some(ll) = self.landlock {
                // Fresh file systems are new inodes: the parent's rules do not reach them.
                landlock::allow_in_child(ll.fd, c"/", ll.list)?;
                for (path, writable) in root.fresh() {
                    let access = if *writable { ll.all } else { ll.read };
                    landlock::allow_in_child(ll.fd, path, access)?;
                }
            }
        }
        if self.drop_caps {
            drop_capabilities()?;
        }
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        if let Some(ll) = self.landlock {
            landlock::restrict_self(ll.fd)?;
        }
        if let Some(filter) = &self.seccomp {
            filter.load()?;
        }
        Ok(())
    }
}

fn set_parent_death_signal() -> io::Result<()> {
    // SAFETY: a plain system call with integer arguments.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Locks `SECBIT_NOROOT`, empties the bounding and ambient sets, then clears all capability
/// sets. Needs `CAP_SETPCAP`.
fn drop_capabilities() -> io::Result<()> {
    // SAFETY (all calls): system calls with integer arguments or pointers to stack data.
    check(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, SECBITS_NOROOT, 0, 0, 0) })?;
    for cap in 0..64 {
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break; // past the last capability the kernel knows
            }
            return Err(err);
        }
    }
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
