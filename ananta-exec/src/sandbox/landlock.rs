//! Landlock through its three system calls (no allocation in the child: the ruleset is built
//! in the parent, the child only calls `landlock_restrict_self`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

// Filesystem rights (uapi/linux/landlock.h).
pub(crate) const FS_EXECUTE: u64 = 1 << 0;
pub(crate) const FS_WRITE_FILE: u64 = 1 << 1;
pub(crate) const FS_READ_FILE: u64 = 1 << 2;
pub(crate) const FS_READ_DIR: u64 = 1 << 3;
pub(crate) const FS_TRUNCATE: u64 = 1 << 14;
pub(crate) const FS_IOCTL_DEV: u64 = 1 << 15;
/// Rights that apply to a file (not only to directories).
const FS_FILE_RIGHTS: u64 = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;
/// Read and execute.
pub(crate) const FS_READ_EXEC: u64 = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;

// Network rights (ABI 4).
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;

// Scopes (ABI 6).
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version, or `None` when Landlock is unavailable.
pub(crate) fn abi_version() -> Option<u32> {
    // SAFETY: with a NULL attribute and size 0 the call only returns the version.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(rc).ok().filter(|v| *v > 0)
}

/// Filesystem rights a ruleset of ABI `abi` can handle.
pub(crate) fn fs_rights(abi: u32) -> u64 {
    let mut rights = (1 << 13) - 1; // ABI 1: execute .. make_sym
    if abi >= 2 {
        rights |= 1 << 13; // refer
    }
    if abi >= 3 {
        rights |= FS_TRUNCATE;
    }
    if abi >= 5 {
        rights |= FS_IOCTL_DEV;
    }
    rights
}

/// A ruleset being built in the parent.
#[derive(Debug)]
pub(crate) struct Ruleset {
    fd: OwnedFd,
    handled_fs: u64,
}

impl Ruleset {
    /// A ruleset for ABI `abi` handling all its filesystem rights, TCP bind/connect when
    /// `deny_tcp` (ABI ≥ 4), and signal plus abstract-socket scoping when `scope` (ABI ≥ 6).
    pub(crate) fn new(abi: u32, deny_tcp: bool, scope: bool) -> io::Result<Self> {
        let attr = RulesetAttr {
            handled_access_fs: fs_rights(abi),
            handled_access_net: if deny_tcp && abi >= 4 {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if scope && abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // An older kernel rejects a larger struct only if the extra fields are non-zero, and
        // they are zero for the ABI it reports.
        // SAFETY: attr is a valid, initialised landlock_ruleset_attr of the given size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("bad ruleset fd"))?;
        // SAFETY: the kernel just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            handled_fs: attr.handled_access_fs,
        })
    }

    /// Allows `access` beneath `path` (masked to what is handled, and to file rights when
    /// `path` is not a directory). A path that does not exist is skipped (`Ok(false)`).
    pub(crate) fn allow_path(&mut self, path: &Path, access: u64) -> io::Result<bool> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        // SAFETY: c is a valid NUL-terminated path.
        let raw = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::NotFound => Ok(false),
                _ => Err(err),
            };
        }
        // SAFETY: open just returned this descriptor.
        let dir = unsafe { OwnedFd::from_raw_fd(raw) };
        let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false);
        let mut allowed = access & self.handled_fs;
        if !is_dir {
            allowed &= FS_FILE_RIGHTS;
        }
        if allowed == 0 {
            return Ok(false);
        }
        let attr = PathBeneathAttr {
            allowed_access: allowed,
            parent_fd: dir.as_raw_fd(),
        };
        // SAFETY: attr is a valid landlock_path_beneath_attr; both fds are open.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(true)
    }

    /// All filesystem rights this ruleset handles.
    pub(crate) fn handled_fs(&self) -> u64 {
        self.handled_fs
    }

    /// The ruleset descriptor, for [`restrict_self`] in the child.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
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

/// In the child: allows `access` beneath the directory `path` in ruleset `fd` (for file
/// systems mounted after the ruleset was built). Async-signal-safe: `open`, one system call,
/// `close`.
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
