//! One pids cgroup per run: caps the number of processes (also for root, where
//! `RLIMIT_NPROC` is not enforced) and lists every process of the run for the final kill.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::kernel::PidsCgroup;

/// Parent of the per-run cgroups, under the hierarchy's mount point.
const PARENT: &str = "ananta-sandbox";

/// A cgroup created for one run; the child joins it by writing `0` to `cgroup.procs`.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    dir: PathBuf,
    procs: File,
    removed: bool,
}

impl RunCgroup {
    /// Creates a cgroup allowing at most `max_processes` processes (and threads).
    pub(crate) fn create(hierarchy: &PidsCgroup, max_processes: u64) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = hierarchy.mount.join(PARENT);
        if hierarchy.v2 {
            enable_pids(&hierarchy.mount)?;
        }
        match std::fs::create_dir(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if hierarchy.v2 {
            enable_pids(&parent)?;
        }
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep_orphans(&parent));
        let dir = parent.join(format!(
            "run-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        let setup = || -> io::Result<File> {
            std::fs::write(dir.join("pids.max"), max_processes.to_string())?;
            OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
        };
        match setup() {
            Ok(procs) => Ok(Self {
                dir,
                procs,
                removed: false,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// The open `cgroup.procs` file, for [`join`] in the child.
    pub(crate) fn procs_fd(&self) -> libc::c_int {
        self.procs.as_raw_fd()
    }

    /// SIGKILLs every process in the cgroup, until it is empty or `within` passed, then removes
    /// the cgroup. Returns whether the cgroup was empty.
    pub(crate) async fn kill_and_remove(mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while kill_members(&self.dir) > 0 {
            if Instant::now() >= deadline {
                tracing::warn!(cgroup = %self.dir.display(), "sandbox cgroup still has processes");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Removal can briefly fail while exiting processes are released.
        loop {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => {
                    self.removed = true;
                    return true;
                }
                Err(e) if Instant::now() >= deadline => {
                    tracing::warn!(cgroup = %self.dir.display(), error = %e, "could not remove sandbox cgroup");
                    return true;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.removed {
            kill_members(&self.dir);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// SIGKILLs every process listed in the cgroup at `dir`; returns how many there were.
fn kill_members(dir: &std::path::Path) -> usize {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    let mut count = 0;
    for pid in procs
        .lines()
        .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
    {
        count += 1;
        if pid > 1 {
            // SAFETY: kill only sends a signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    count
}

/// Kills and removes the cgroups of runs whose host process is gone (it died before it
/// could clean up: a crash, SIGKILL). Runs once per process, before its first run.
fn sweep_orphans(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let alive = pid > 0 && {
            // SAFETY: signal 0 only checks whether the process exists.
            let rc = unsafe { libc::kill(pid, 0) };
            rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        };
        if alive {
            continue;
        }
        let dir = entry.path();
        // cgroup v2 (Linux 5.14): one write kills every member; else signal each.
        if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
            for _ in 0..3 {
                let members = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in members
                    .lines()
                    .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
                {
                    if pid > 1 {
                        // SAFETY: kill only sends a signal.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&dir).is_ok() {
                tracing::info!(cgroup = %dir.display(), "swept the cgroup of a run whose host process died");
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Makes the pids controller available to the children of a v2 cgroup.
fn enable_pids(dir: &std::path::Path) -> io::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&control)?;
    if current.split_whitespace().any(|c| c == "pids") {
        return Ok(());
    }
    OpenOptions::new()
        .write(true)
        .open(&control)?
        .write_all(b"+pids")
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is open as `fd`.
/// Async-signal-safe: one `write`.
pub(crate) fn join(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: writes one byte from a static buffer.
    let rc = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    if rc != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
