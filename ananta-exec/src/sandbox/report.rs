//! What a sandbox applies on this kernel, and what it cannot.

use std::fmt;

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
    /// A private root showing only the configured roots, all read-only but the writable ones
    /// (metadata changes refused; host sockets, `/run`, homes and the rest of `/etc`
    /// invisible).
    PrivateRoot,
    /// Own PID, IPC and UTS namespaces: `/proc` shows only the run's processes, host SysV
    /// IPC objects are out of reach and the run's die with it, and no process of the run
    /// outlives it, even when the host process is killed.
    Namespaces,
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
            Self::PrivateRoot => "private root",
            Self::Namespaces => "PID, IPC and UTS namespaces",
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
