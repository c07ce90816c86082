//! Signalling a process group, and the guard that kills it when a run ends or is dropped.

use std::io;

/// Sends `signal` to every process of group `pgid`. A group that no longer exists (`ESRCH`) is
/// not an error; other failures are logged. Returns whether the signal was delivered.
pub(crate) fn signal_group(pgid: libc::pid_t, signal: libc::c_int) -> bool {
    // Never signal our own group (0) or init's (1): only a real child's group.
    if pgid <= 1 {
        return false;
    }
    // SAFETY: killpg only sends a signal; it has no memory-safety preconditions.
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc == 0 {
        return true;
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ESRCH) {
        tracing::warn!(pgid, signal, error = %err, "could not signal the command's process group");
    }
    false
}

/// Kills (SIGKILL) a process group when dropped, unless it already did so through
/// [`kill_now`](Self::kill_now). Dropping the future of a run therefore leaves nothing behind.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pgid: libc::pid_t,
    armed: bool,
}

impl GroupGuard {
    /// A guard for group `pgid`.
    pub(crate) fn new(pgid: libc::pid_t) -> Self {
        Self { pgid, armed: true }
    }

    /// Kills the group now and disarms the guard.
    pub(crate) fn kill_now(&mut self) {
        if self.armed {
            self.armed = false;
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(
                pgid = self.pgid,
                "run dropped before completion: killing process group"
            );
            self.kill_now();
        }
    }
}
