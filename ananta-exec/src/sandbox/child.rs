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
use super::mounts::ReadOnlyMounts;
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
    parent: libc::pid_t,
    cgroup_procs: Option<libc::c_int>,
    /// (resource, soft, hard), already clamped to the parent's hard limits.
    rlimits: Vec<(Resource, u64, u64)>,
    unshare_net: bool,
    read_only_mounts: Option<ReadOnlyMounts>,
    drop_caps: bool,
    landlock_ruleset: Option<libc::c_int>,
    seccomp: Option<Filter>,
}

impl ChildSetup {
    pub(crate) fn new(
        cgroup_procs: Option<libc::c_int>,
        rlimits: Vec<(Resource, u64, u64)>,
        unshare_net: bool,
        read_only_mounts: Option<ReadOnlyMounts>,
        drop_caps: bool,
        landlock_ruleset: Option<libc::c_int>,
        seccomp: Option<Filter>,
    ) -> Self {
        // A child cannot raise a hard limit without CAP_SYS_RESOURCE: clamp to ours.
        let rlimits = rlimits
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
            .collect();
        Self {
            parent: libc::pid_t::try_from(std::process::id()).unwrap_or(0),
            cgroup_procs,
            rlimits,
            unshare_net,
            read_only_mounts,
            drop_caps,
            landlock_ruleset,
            seccomp,
        }
    }

    /// Sets the directory the command runs in (re-entered after the mount namespace changed).
    pub(crate) fn set_cwd(&mut self, cwd: &std::path::Path) -> io::Result<()> {
        match &mut self.read_only_mounts {
            Some(mounts) => mounts.set_cwd(cwd),
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
        check(unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        })?;
        // The parent may have died between fork and prctl; then no signal would ever come.
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
        if self.unshare_net {
            check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
        }
        if let Some(mounts) = &self.read_only_mounts {
            mounts.apply()?;
        }
        if self.drop_caps {
            drop_capabilities()?;
        }
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        if let Some(fd) = self.landlock_ruleset {
            landlock::restrict_self(fd)?;
        }
        if let Some(filter) = &self.seccomp {
            filter.load()?;
        }
        Ok(())
    }
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
