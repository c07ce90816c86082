//! The sandbox's own root file system, built in a private mount namespace.
//!
//! A command sees a fresh `tmpfs` root holding only what the configuration names: the read
//! roots (bind mounts, read-only), the workspace and the other writable roots (bind mounts,
//! writable), a private `/tmp` and `/dev/shm`, the few device files tools need, and a `/proc`
//! of its own PID namespace. Everything else of the host — `/run` and `/var/run` with their
//! Unix sockets, `/home`, `/root`, the rest of `/tmp`, the secrets of `/etc` — does not exist
//! for it, so a path-based `connect()` has nothing to reach and a read has nothing to open,
//! whatever Landlock's ABI governs.
//!
//! Read-only mounts also refuse what Landlock (up to ABI 7) does not govern: `chmod`,
//! `utimensat` and extended attributes on files a sandboxed root owns.
//!
//! Everything is planned in the parent ([`PrivateRoot::plan`]); the child only makes system
//! calls on prepared C strings ([`PrivateRoot::apply`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// What appears at one path of the sandbox's root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Visible {
    /// The host's file or directory at the same path, writable.
    Write,
    /// The host's file or directory at the same path, writable, mounted even inside a
    /// writable mount: a mount point cannot be renamed or removed.
    Pin,
    /// The host's file or directory at the same path, read-only.
    Read,
    /// A symbolic link with this target.
    Symlink(PathBuf),
    /// An empty, private, writable `tmpfs`.
    Tmpfs,
    /// A `proc` file system of the command's PID namespace (read-only).
    Proc,
}

/// One step of building the root in the child.
#[derive(Debug)]
enum Op {
    Dir(CString),
    File(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Bind {
        source: CString,
        target: CString,
    },
    Tmpfs(CString),
    Proc(CString),
    /// `mount_setattr` on the mount at the path: read-only or writable, and whether for the
    /// mounts beneath it too.
    Flags {
        path: CString,
        read_only: bool,
        recursive: bool,
    },
}

/// The prepared root of one run.
#[derive(Debug)]
pub(crate) struct PrivateRoot {
    /// The host directory the new root is mounted on (an empty directory of the run).
    mount_point: CString,
    ops: Vec<Op>,
    tmpfs_options: CString,
    /// The working directory inside the new root.
    cwd: Option<CString>,
    /// File systems created for the run (path inside the new root, writable): Landlock rules
    /// made in the parent name the host's inodes, so these need rules of their own.
    fresh: Vec<(CString, bool)>,
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// `path` with its parent directories resolved (the last component may be a symlink, kept).
fn resolve_parent(path: &Path) -> Option<PathBuf> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Some(parent.canonicalize().ok()?.join(name)),
        _ => Some(path.to_path_buf()),
    }
}

/// What the root shows, resolved against the host: paths sorted (parents first), what bind
/// mounts already show dropped, symlinks recreated (their targets shown as entries of their
/// own), and whether each mounted source is a directory.
type Layout = Vec<(PathBuf, Visible, bool)>;

/// What a root should show, before resolution: the key of the layout cache.
type Entries = Vec<(PathBuf, Visible)>;

/// Resolves `entries` into a [`Layout`], cached per distinct `entries` (resolving costs
/// hundreds of system calls; the same executor asks for the same root every run).
fn layout(entries: Entries) -> Arc<Layout> {
    static CACHE: Mutex<BTreeMap<Entries, Arc<Layout>>> = Mutex::new(BTreeMap::new());
    if let Ok(cache) = CACHE.lock()
        && let Some(found) = cache.get(&entries)
    {
        return Arc::clone(found);
    }
    let resolved = Arc::new(resolve(entries.clone()));
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(entries, Arc::clone(&resolved));
    }
    resolved
}

/// The uncached work of [`layout`].
fn resolve(entries: Entries) -> Layout {
    // Resolve host paths; the same path twice keeps the most permissive kind (Write
    // sorts first).
    let mut resolved: Vec<(PathBuf, Visible)> = Vec::new();
    for (path, kind) in entries {
        match kind {
            Visible::Read | Visible::Write | Visible::Pin => {
                let Some(at) = resolve_parent(&path) else {
                    continue;
                };
                let Ok(meta) = std::fs::symlink_metadata(&at) else {
                    continue;
                };
                if meta.file_type().is_symlink() {
                    let (Ok(target), Ok(canonical)) = (std::fs::read_link(&at), at.canonicalize())
                    else {
                        continue;
                    };
                    resolved.push((at.clone(), Visible::Symlink(target)));
                    // The target, for when nothing else makes it visible.
                    resolved.push((canonical, kind));
                } else {
                    resolved.push((at, kind));
                }
            }
            other => resolved.push((path, other)),
        }
    }
    resolved.sort();
    resolved.dedup_by(|later, earlier| later.0 == earlier.0);

    // Which bind mounts are planned (path, writable), to skip what they already show.
    let mut binds: Vec<(PathBuf, bool)> = Vec::new();
    let covering = |binds: &[(PathBuf, bool)], path: &Path| -> Option<bool> {
        binds
            .iter()
            .rev()
            .find(|(b, _)| path.starts_with(b) && path != b)
            .map(|(_, w)| *w)
    };
    let mut kept: Vec<(PathBuf, Visible)> = Vec::new();
    for (path, kind) in resolved {
        let covered = covering(&binds, &path);
        let keep = match &kind {
            Visible::Read => covered != Some(false),
            Visible::Write => covered != Some(true),
            Visible::Pin => true,
            // A symlink inside a bind mount is the host's own.
            Visible::Symlink(_) => covered.is_none(),
            Visible::Tmpfs | Visible::Proc => true,
        };
        if !keep {
            continue;
        }
        match &kind {
            Visible::Read => binds.push((path.clone(), false)),
            // A tmpfs hides the host beneath it: it covers nothing.
            Visible::Write | Visible::Pin => binds.push((path.clone(), true)),
            _ => {}
        }
        kept.push((path, kind));
    }
    kept.into_iter()
        .map(|(path, kind)| {
            let dir = match &kind {
                Visible::Read | Visible::Write | Visible::Pin => path.is_dir(),
                _ => true,
            };
            (path, kind, dir)
        })
        .collect()
}

impl PrivateRoot {
    /// Plans a root mounted on `mount_point` (an empty directory) showing `entries` (resolved
    /// once per distinct list: host paths that do not exist are skipped; a symlink is
    /// recreated and its target shown as well) and the run's own `home` (writable). `tmpfs_size` bounds each private
    /// `tmpfs`.
    pub(crate) fn plan(
        mount_point: &Path,
        entries: Vec<(PathBuf, Visible)>,
        home: &Path,
        tmpfs_size: u64,
    ) -> io::Result<Self> {
        let mut final_entries: Layout = layout(entries).as_ref().clone();
        final_entries.push((home.canonicalize()?, Visible::Write, true));
        final_entries.sort_by(|a, b| a.0.cmp(&b.0));

        let in_root = |p: &Path| -> io::Result<CString> {
            let mut joined = mount_point.as_os_str().to_owned();
            joined.push(p.as_os_str());
            cstring(Path::new(&joined))
        };
        let mut ops = Vec::new();
        let mut fresh = Vec::new();
        let mut made: BTreeSet<PathBuf> = BTreeSet::new();
        for (path, kind, is_dir) in &final_entries {
            for ancestor in path
                .ancestors()
                .skip(1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                if ancestor != Path::new("/") && made.insert(ancestor.to_path_buf()) {
                    ops.push(Op::Dir(in_root(ancestor)?));
                }
            }
            let target = in_root(path)?;
            match kind {
                Visible::Read | Visible::Write | Visible::Pin => {
                    if *is_dir {
                        made.insert(path.clone());
                        ops.push(Op::Dir(target.clone()));
                    } else {
                        ops.push(Op::File(target.clone()));
                    }
                    ops.push(Op::Bind {
                        source: cstring(path)?,
                        target,
                    });
                }
                Visible::Symlink(to) => ops.push(Op::Symlink {
                    target: cstring(to)?,
                    link: target,
                }),
                Visible::Tmpfs => {
                    made.insert(path.clone());
                    ops.push(Op::Dir(target.clone()));
                    ops.push(Op::Tmpfs(target));
                    fresh.push((cstring(path)?, true));
                }
                Visible::Proc => {
                    made.insert(path.clone());
                    ops.push(Op::Dir(target.clone()));
                    ops.push(Op::Proc(target));
                    fresh.push((cstring(path)?, false));
                }
            }
        }
        // Flags last, parents first: the root read-only, then each mount as it should be.
        ops.push(Op::Flags {
            path: cstring(mount_point)?,
            read_only: true,
            recursive: false,
        });
        for (path, kind, _) in &final_entries {
            let read_only = match kind {
                Visible::Write | Visible::Pin | Visible::Tmpfs => false,
                Visible::Read | Visible::Proc => true,
                Visible::Symlink(_) => continue,
            };
            ops.push(Op::Flags {
                path: in_root(path)?,
                read_only,
                recursive: true,
            });
        }
        Ok(Self {
            mount_point: cstring(mount_point)?,
            ops,
            tmpfs_options: CString::new(format!("mode=1777,size={tmpfs_size}"))
                .map_err(|_| io::Error::other("tmpfs options"))?,
            cwd: None,
            fresh,
        })
    }

    /// The file systems created for the run, as paths inside the new root, each with whether
    /// it is writable.
    pub(crate) fn fresh(&self) -> &[(CString, bool)] {
        &self.fresh
    }

    /// The directory the child enters once the new root is in place.
    pub(crate) fn set_cwd(&mut self, cwd: &Path) -> io::Result<()> {
        let cwd = cwd.canonicalize()?;
        self.cwd = Some(cstring(&cwd)?);
        Ok(())
    }

    /// In the child, inside a new mount namespace (async-signal-safe: system calls on prepared
    /// strings only): private propagation, a `tmpfs` on the mount point, the planned mounts,
    /// then `pivot_root` into it and the old root detached. Needs `CAP_SYS_ADMIN`.
    pub(crate) fn apply(&self) -> io::Result<()> {
        let check = |rc: libc::c_long| {
            if rc == -1 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        let exists_ok = |rc: libc::c_long| match check(rc) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        };
        let null = std::ptr::null::<libc::c_char>();
        let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
        // SAFETY (all calls): system calls with pointers to NUL-terminated strings and structs
        // owned by `self`, the stack or static data.
        unsafe {
            check(
                libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
                .into(),
            )?;
            check(
                libc::mount(
                    c"tmpfs".as_ptr(),
                    self.mount_point.as_ptr(),
                    c"tmpfs".as_ptr(),
                    nosuid_nodev,
                    c"mode=0755,size=1m".as_ptr().cast(),
                )
                .into(),
            )?;
            for op in &self.ops {
                match op {
                    Op::Dir(path) => exists_ok(libc::mkdir(path.as_ptr(), 0o755).into())?,
                    Op::File(path) => {
                        let fd = libc::open(
                            path.as_ptr(),
                            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o644,
                        );
                        if fd >= 0 {
                            libc::close(fd);
                        } else {
                            exists_ok(-1)?;
                        }
                    }
                    Op::Symlink { target, link } => {
                        exists_ok(libc::symlink(target.as_ptr(), link.as_ptr()).into())?
                    }
                    Op::Bind { source, target } => check(
                        libc::mount(
                            source.as_ptr(),
                            target.as_ptr(),
                            null,
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        )
                        .into(),
                    )?,
                    Op::Tmpfs(path) => check(
                        libc::mount(
                            c"tmpfs".as_ptr(),
                            path.as_ptr(),
                            c"tmpfs".as_ptr(),
                            nosuid_nodev,
                            self.tmpfs_options.as_ptr().cast(),
                        )
                        .into(),
                    )?,
                    Op::Proc(path) => check(
                        libc::mount(
                            c"proc".as_ptr(),
                            path.as_ptr(),
                            c"proc".as_ptr(),
                            nosuid_nodev | libc::MS_NOEXEC,
                            std::ptr::null(),
                        )
                        .into(),
                    )?,
                    Op::Flags {
                        path,
                        read_only,
                        recursive,
                    } => {
                        let (set, clr) = if *read_only {
                            (MOUNT_ATTR_RDONLY, 0)
                        } else {
                            (0, MOUNT_ATTR_RDONLY)
                        };
                        let attr = MountAttr {
                            attr_set: set,
                            attr_clr: clr,
                            propagation: 0,
                            userns_fd: 0,
                        };
                        check(libc::syscall(
                            SYS_MOUNT_SETATTR,
                            libc::AT_FDCWD,
                            path.as_ptr(),
                            if *recursive { AT_RECURSIVE } else { 0 },
                            &attr as *const MountAttr,
                            std::mem::size_of::<MountAttr>(),
                        ))?;
                    }
                }
            }
            // pivot_root(".", "."): the old root ends up stacked on the new one; detaching
            // the top of the stack leaves only the new root.
            check(libc::chdir(self.mount_point.as_ptr()).into())?;
            check(libc::syscall(
                libc::SYS_pivot_root,
                c".".as_ptr(),
                c".".as_ptr(),
            ))?;
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into())?;
            check(libc::chdir(c"/".as_ptr()).into())?;
            if let Some(cwd) = &self.cwd {
                check(libc::chdir(cwd.as_ptr()).into())?;
            }
        }
        Ok(())
    }
}
