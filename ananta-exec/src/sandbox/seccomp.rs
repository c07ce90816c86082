//! A small seccomp-BPF filter, built in the parent and loaded in the child with one system
//! call:
//! - `setsid` and `setpgid` fail with `EPERM`, so nothing leaves the command's process group
//!   (and session) and killing the group at the end of a run kills every process it started;
//! - `kill(-1, …)` fails with `EPERM` (a second fence next to Landlock's signal scope);
//! - `io_uring_*` fail with `ENOSYS` (io_uring operations bypass seccomp's view of syscalls);
//! - without network: `socket` for `AF_INET`, `AF_INET6`, `AF_PACKET` and `AF_NETLINK`
//!   fails with `EAFNOSUPPORT` (Landlock only covers TCP: this also stops UDP, ICMP and raw).
//!
//! Any other architecture than the native one (e.g. 32-bit `int 0x80` calls on x86-64, or the
//! x32 ABI) is refused.

use std::io;

// Classic BPF opcodes (uapi/linux/filter.h, bpf_common.h).
/// `BPF_LD | BPF_W | BPF_ABS` (the first two are 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
#[cfg(target_arch = "x86_64")]
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// Low 32 bits of `args[0]` (little-endian architectures only).
const OFFSET_ARG0_LO: u32 = 16;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Whether this crate can build a filter for the target architecture.
pub(crate) const SUPPORTED_ARCH: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JMP_JEQ_K,
        jt,
        jf,
        k,
    }
}

fn errno(e: i32) -> libc::sock_filter {
    stmt(BPF_RET_K, RET_ERRNO | (e as u32 & 0xffff))
}

fn nr(n: libc::c_long) -> u32 {
    n as u32
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    program: Vec<libc::sock_filter>,
}

impl Filter {
    /// The filter for a run; `deny_network` adds the socket-family rules.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    pub(crate) fn new(deny_network: bool) -> Self {
        let mut p = vec![
            stmt(BPF_LD_W_ABS, OFFSET_ARCH),
            jeq(AUDIT_ARCH, 1, 0),
            stmt(BPF_RET_K, RET_KILL_PROCESS),
            stmt(BPF_LD_W_ABS, OFFSET_NR),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            // x32 system calls (bit 30) go through a different table: refuse them all.
            p.push(libc::sock_filter {
                code: BPF_JMP_JGE_K,
                jt: 0,
                jf: 1,
                k: 0x4000_0000,
            });
            p.push(errno(libc::ENOSYS));
        }
        for (call, e) in [
            (libc::SYS_setsid, libc::EPERM),
            (libc::SYS_setpgid, libc::EPERM),
            (libc::SYS_io_uring_setup, libc::ENOSYS),
            (libc::SYS_io_uring_enter, libc::ENOSYS),
            (libc::SYS_io_uring_register, libc::ENOSYS),
        ] {
            p.push(jeq(nr(call), 0, 1));
            p.push(errno(e));
        }
        // kill(-1, sig): signal every process we may signal.
        p.push(jeq(nr(libc::SYS_kill), 0, 4));
        p.push(stmt(BPF_LD_W_ABS, OFFSET_ARG0_LO));
        p.push(jeq(u32::MAX, 0, 1));
        p.push(errno(libc::EPERM));
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        if deny_network {
            let families = [
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_PACKET,
                libc::AF_NETLINK,
            ];
            let block = 1 + 2 * families.len() + 1;
            p.push(jeq(nr(libc::SYS_socket), 0, block as u8));
            p.push(stmt(BPF_LD_W_ABS, OFFSET_ARG0_LO));
            for family in families {
                p.push(jeq(family as u32, 0, 1));
                p.push(errno(libc::EAFNOSUPPORT));
            }
            p.push(stmt(BPF_RET_K, RET_ALLOW));
        }
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        Self { program: p }
    }

    /// Unsupported architecture: an empty filter that [`load`](Self::load) refuses.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub(crate) fn new(_deny_network: bool) -> Self {
        Self {
            program: Vec::new(),
        }
    }

    /// Installs the filter on the calling thread. Async-signal-safe (no allocation): one
    /// system call. Requires `PR_SET_NO_NEW_PRIVS` (or `CAP_SYS_ADMIN`).
    pub(crate) fn load(&self) -> io::Result<()> {
        if self.program.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: prog points at our program, alive for the duration of the call; the kernel
        // copies it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0u32,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
