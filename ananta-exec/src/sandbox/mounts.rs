//! A private mount namespace in which every mount is read-only except the writable roots.
//!
//! Landlock (up to ABI 7) does not govern metadata changes: `chmod`, `utimensat` and user
//! extended attributes on a file the caller owns are allowed by the kernel's ownership check,
//! and a sandboxed root owns nearly everything. A read-only mount refuses them all (`EROFS`),
//! so outside the workspace nothing can be changed, whatever the call.

use std::ffi::CString;
use std::io;
use std::path::Path;

/// `mount_setattr(2)`: the same number on every architecture (Linux 5.12).
const SYS_MOUNT_SETATTR: libc::c_long = 442;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Whether `mount_setattr` exists (probed with an invalid call: `ENOSYS` means it does not).
pub(crate) fn mount_setattr_available() -> bool {
    // SAFETY: invalid descriptor and null attribute: the kernel returns an error at once.
    let rc = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            -1,
            std::ptr::null::<libc::c_char>(),
            0u32,
            std::ptr::null::<MountAttr>(),
            0usize,
        )
    };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// Paths prepared in the parent for [`ReadOnlyMounts::apply`] in the child.
#[derive(Debug)]
pub(crate) struct ReadOnlyMounts {
    writable: Vec<CString>,
    cwd: Option<CString>,
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

impl ReadOnlyMounts {
    /// Keeps `writable` (existing paths, canonicalized) writable.
    pub(crate) fn new<'a>(writable: impl IntoIterator<Item = &'a Path>) -> io::Result<Self> {
        let mut paths = Vec::new();
        for path in writable {
            if let Ok(canonical) = path.canonicalize() {
                paths.push(cstring(&canonical)?);
            }
        }
        Ok(Self {
            writable: paths,
            cwd: None,
        })
    }

    /// The directory the child re-enters after the mounts changed (it was entered before).
    pub(crate) fn set_cwd(&mut self, cwd: &Path) -> io::Result<()> {
        self.cwd = Some(cstring(cwd)?);
        Ok(())
    }

    /// In the child (async-signal-safe: system calls only): new mount namespace with private
    /// propagation (nothing reaches the host's mounts), bind mounts of the writable paths on
    /// themselves, everything read-only, the binds writable again, then back into the working
    /// directory through the new mounts. Needs `CAP_SYS_ADMIN`.
    pub(crate) fn apply(&self) -> io::Result<()> {
        let check = |rc: libc::c_long| {
            if rc == -1 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        let root = c"/";
        // SAFETY (all calls): system calls with pointers to NUL-terminated strings and structs
        // owned by `self`, the stack or static data.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS).into())?;
            check(
                libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
                .into(),
            )?;
            for path in &self.writable {
                check(
                    libc::mount(
                        path.as_ptr(),
                        path.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    )
                    .into(),
                )?;
            }
            let read_only = MountAttr {
                attr_set: MOUNT_ATTR_RDONLY,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            check(libc::syscall(
                SYS_MOUNT_SETATTR,
                libc::AT_FDCWD,
                root.as_ptr(),
                AT_RECURSIVE,
                &read_only as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            ))?;
            let writable = MountAttr {
                attr_set: 0,
                attr_clr: MOUNT_ATTR_RDONLY,
                propagation: 0,
                userns_fd: 0,
            };
            for path in &self.writable {
                check(libc::syscall(
                    SYS_MOUNT_SETATTR,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    AT_RECURSIVE,
                    &writable as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                ))?;
            }
            if let Some(cwd) = &self.cwd {
                check(libc::chdir(cwd.as_ptr()).into())?;
            }
        }
        Ok(())
    }
}
