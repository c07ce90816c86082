//! What the running kernel offers: Landlock ABI, seccomp filters, namespaces, a pids cgroup.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::landlock;

/// The sandboxing features of the running kernel, as seen by this process.
///
/// Detected without side effects: a Landlock version query, a seccomp action query, the
/// process's capabilities, `/proc/sys/user/max_user_namespaces` and `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelSupport {
    /// Landlock ABI version (`None`: Landlock is not built in or not enabled at boot).
    pub landlock_abi: Option<u32>,
    /// Seccomp filters can be loaded (`SECCOMP_SET_MODE_FILTER` with `SECCOMP_RET_ERRNO`).
    pub seccomp_filter: bool,
    /// This process holds `CAP_SYS_ADMIN`, so it can create network and PID namespaces.
    pub cap_sys_admin: bool,
    /// This process holds `CAP_SETPCAP`, so it can empty the capability bounding set of a child.
    pub cap_setpcap: bool,
    /// Unprivileged user namespaces are allowed (`max_user_namespaces` > 0).
    pub user_namespaces: bool,
    /// Network namespaces can be created by this process (`CAP_SYS_ADMIN` and the kernel has
    /// them).
    pub net_namespace: bool,
    /// Mount namespaces can be created by this process and `mount_setattr` exists (Linux
    /// 5.12), so a run can see every mount read-only except its writable roots.
    pub mount_namespace: bool,
    /// PID namespaces can be created by this process (`CAP_SYS_ADMIN` and the kernel has them).
    pub pid_namespace: bool,
    /// IPC namespaces can be created by this process.
    pub ipc_namespace: bool,
    /// UTS (host name) namespaces can be created by this process.
    pub uts_namespace: bool,
    /// A writable pids cgroup hierarchy (v1 `pids` controller or v2 with `pids` available):
    /// where per-run cgroups limiting the number of processes are created.
    pub pids_cgroup: Option<PidsCgroup>,
    /// The effective user id is 0.
    pub root: bool,
}

/// A pids cgroup hierarchy found in `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PidsCgroup {
    /// Where the hierarchy is mounted.
    pub mount: PathBuf,
    /// Whether it is the unified (v2) hierarchy.
    pub v2: bool,
}

impl KernelSupport {
    /// Probes the kernel now.
    pub fn detect() -> Self {
        let landlock_abi = landlock::abi_version();
        let seccomp_filter = seccomp_filter_available();
        let caps = effective_caps();
        let cap_sys_admin = caps & (1 << 21) != 0;
        let cap_setpcap = caps & (1 << 8) != 0;
        let user_namespaces = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
        let net_namespace = cap_sys_admin && Path::new("/proc/self/ns/net").exists();
        let mount_namespace = cap_sys_admin
            && Path::new("/proc/self/ns/mnt").exists()
            && super::mounts::mount_setattr_available();
        let pid_namespace = cap_sys_admin && Path::new("/proc/self/ns/pid").exists();
        let ipc_namespace = cap_sys_admin && Path::new("/proc/self/ns/ipc").exists();
        let uts_namespace = cap_sys_admin && Path::new("/proc/self/ns/uts").exists();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        Self {
            landlock_abi,
            seccomp_filter,
            cap_sys_admin,
            cap_setpcap,
            user_namespaces,
            net_namespace,
            mount_namespace,
            pid_namespace,
            ipc_namespace,
            uts_namespace,
            pids_cgroup: find_pids_cgroup(),
            root,
        }
    }

    /// The support detected once for this process (cached).
    pub fn current() -> &'static Self {
        static CURRENT: OnceLock<KernelSupport> = OnceLock::new();
        CURRENT.get_or_init(Self::detect)
    }
}

impl std::fmt::Display for KernelSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.landlock_abi {
            Some(abi) => write!(f, "Landlock ABI {abi}")?,
            None => write!(f, "no Landlock")?,
        }
        write!(
            f,
            ", seccomp filters {}, network namespaces {}, read-only mount namespaces {}, PID namespaces {}, IPC namespaces {}, UTS namespaces {}, user namespaces {}, ",
            yes_no(self.seccomp_filter),
            yes_no(self.net_namespace),
            yes_no(self.mount_namespace),
            yes_no(self.pid_namespace),
            yes_no(self.ipc_namespace),
            yes_no(self.uts_namespace),
            yes_no(self.user_namespaces),
        )?;
        match &self.pids_cgroup {
            Some(cg) => write!(
                f,
                "pids cgroup {} at {}",
                if cg.v2 { "v2" } else { "v1" },
                cg.mount.display()
            ),
            None => write!(f, "no writable pids cgroup"),
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Whether seccomp filters returning an errno can be installed.
fn seccomp_filter_available() -> bool {
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from the pointer, which is valid.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    rc == 0
}

/// The effective capability set of this process (lower 64 bits), from `/proc/self/status`.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Finds a pids cgroup hierarchy this process can create cgroups in.
fn find_pids_cgroup() -> Option<PidsCgroup> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v2_mount = None;
    for line in mountinfo.lines() {
        // "... mountpoint options ... - fstype source superoptions"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split_whitespace().nth(4)?;
        let mut right = right.split_whitespace();
        let fstype = right.next().unwrap_or("");
        let super_opts = right.nth(1).unwrap_or("");
        if fstype == "cgroup" && super_opts.split(',').any(|o| o == "pids") {
            let mount = PathBuf::from(unescape_mount(mount_point));
            if writable_dir(&mount) {
                return Some(PidsCgroup { mount, v2: false });
            }
        } else if fstype == "cgroup2" && v2_mount.is_none() {
            let mount = PathBuf::from(unescape_mount(mount_point));
            let controllers =
                std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "pids") && writable_dir(&mount) {
                v2_mount = Some(PidsCgroup { mount, v2: true });
            }
        }
    }
    v2_mount
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn writable_dir(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: access only reads the NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// A network namespace with no interface up (not even loopback), made once per process and
/// joined by every run without network: creating a namespace per run cost about half a
/// millisecond (measured in the exec bench), joining one costs a system call. Runs in it
/// cannot reach each other either: IP sockets are refused by seccomp, and abstract Unix
/// sockets are scoped to each run's Landlock domain. `None` when it cannot be made (each run
/// then creates its own).
pub(crate) fn shared_net_namespace() -> Option<libc::c_int> {
    use std::os::fd::{AsRawFd, OwnedFd};
    static SHARED: OnceLock<Option<OwnedFd>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            // A thread of its own: unshare changes the calling thread's namespace only, and
            // the thread ends right after (the descriptor keeps the namespace alive).
            std::thread::spawn(|| -> Option<OwnedFd> {
                // SAFETY: unshare with a flag affects only this thread's namespaces.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return None;
                }
                std::fs::File::open("/proc/thread-self/ns/net")
                    .ok()
                    .map(OwnedFd::from)
            })
            .join()
            .ok()
            .flatten()
        })
        .as_ref()
        .map(|fd| fd.as_raw_fd())
}

/// This process's own PID namespace (opened once), to which a thread that made a new one for
/// its children returns.
pub(crate) fn host_pid_namespace() -> Option<libc::c_int> {
    use std::os::fd::{AsRawFd, OwnedFd};
    static HOST: OnceLock<Option<OwnedFd>> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::File::open("/proc/self/ns/pid")
            .ok()
            .map(OwnedFd::from)
    })
    .as_ref()
    .map(|fd| fd.as_raw_fd())
}
