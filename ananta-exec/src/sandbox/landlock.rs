//! Landlock: the ruleset is built in the parent with the `landlock` crate (by Landlock's
//! maintainers; it knows each ABI's rights), then handed to the child as a descriptor. The
//! child only makes system calls: a rule for each file system mounted after the ruleset was
//! built, and `landlock_restrict_self`.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
};

/// `LANDLOCK_CREATE_RULESET_VERSION`.
const CREATE_RULESET_VERSION: u32 = 1 << 0;
/// `LANDLOCK_RULE_PATH_BENEATH`.
const RULE_PATH_BENEATH: libc::c_int = 1;

/// Listing a directory.
pub(crate) fn list_dir() -> BitFlags<AccessFs> {
    AccessFs::ReadDir.into()
}

/// Read, list and execute.
pub(crate) fn read_exec() -> BitFlags<AccessFs> {
    AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir
}

/// The kernel's Landlock ABI version, or `None` when Landlock is unavailable. (The crate
/// keeps its own detection private, on purpose: rules should not depend on it. The sandbox
/// only reports it and decides whether strict mode can run.)
pub(crate) fn abi_version() -> Option<u32> {
    // SAFETY: with a NULL attribute and size 0 the call only returns the version.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(rc).ok().filter(|v| *v > 0)
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

/// A ruleset being built in the parent.
#[derive(Debug)]
pub(crate) struct Ruleset {
    created: RulesetCreated,
    abi: ABI,
}

impl Ruleset {
    /// A ruleset handling every filesystem right of ABI `abi`, TCP bind/connect when
    /// `deny_tcp` (ABI ≥ 4), and signal plus abstract-socket scoping when `scope` (ABI ≥ 6).
    /// Every requested right must be enforceable (the plan checked the ABI).
    pub(crate) fn new(abi: u32, deny_tcp: bool, scope: bool) -> io::Result<Self> {
        let abi = ABI::from(i32::try_from(abi).unwrap_or(i32::MAX));
        let mut ruleset = landlock::Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .map_err(other)?;
        if deny_tcp {
            ruleset = ruleset
                .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
                .map_err(other)?;
        }
        if scope {
            ruleset = ruleset
                .scope(Scope::AbstractUnixSocket | Scope::Signal)
                .map_err(other)?;
        }
        Ok(Self {
            created: ruleset.create().map_err(other)?,
            abi,
        })
    }

    /// Allows `access` beneath `path` (masked to the rights that apply to a file when it is
    /// not a directory). A path that does not exist is skipped (`Ok(false)`).
    pub(crate) fn allow_path(
        &mut self,
        path: &Path,
        access: BitFlags<AccessFs>,
    ) -> io::Result<bool> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut access = access & AccessFs::from_all(self.abi);
        if !meta.is_dir() {
            access &= AccessFs::from_file(self.abi);
        }
        if access.is_empty() {
            return Ok(false);
        }
        let fd = PathFd::new(path).map_err(other)?;
        (&mut self.created)
            .add_rule(PathBeneath::new(fd, access))
            .map_err(other)?;
        Ok(true)
    }

    /// All filesystem rights this ruleset handles.
    pub(crate) fn handled_fs(&self) -> BitFlags<AccessFs> {
        AccessFs::from_all(self.abi)
    }

    /// The ruleset as a descriptor, for [`allow_in_child`] and [`restrict_self`] in the child.
    pub(crate) fn into_fd(self) -> io::Result<OwnedFd> {
        Option::<OwnedFd>::from(self.created)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }
}

/// Enforces ruleset `fd` on the calling thread (and what it executes). Async-signal-safe: one
/// system call. Requires `PR_SET_NO_NEW_PRIVS` (or `CAP_SYS_ADMIN`).
pub(crate) fn restrict_self(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain system call with integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// In the child: allows `access` beneath the directory `path` in ruleset `fd` (for file
/// systems mounted after the ruleset was built, whose inodes the parent could not name).
/// Async-signal-safe: `open`, one system call, `close`.
pub(crate) fn allow_in_child(
    fd: libc::c_int,
    path: &std::ffi::CStr,
    access: u64,
) -> io::Result<()> {
    // SAFETY: path is NUL-terminated; the descriptor is closed below.
    let dir = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if dir < 0 {
        return Err(io::Error::last_os_error());
    }
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: dir,
    };
    // SAFETY: attr is a valid landlock_path_beneath_attr; both descriptors are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            fd,
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(dir) };
    if rc != 0 {
        return Err(err);
    }
    Ok(())
}
