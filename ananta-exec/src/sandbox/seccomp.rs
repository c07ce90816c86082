//! Seccomp filters, compiled in the parent with `seccompiler` (the compiler Firecracker uses)
//! and loaded in the child with one system call each:
//! - `setsid` and `setpgid` fail with `EPERM`, so nothing leaves the command's process group
//!   (and session) and killing the group at the end of a run kills every process it started;
//! - `kill(-1, …)` fails with `EPERM` (a second fence next to Landlock's signal scope and the
//!   PID namespace);
//! - `io_uring_*` fail with `ENOSYS` (io_uring operations bypass seccomp's view of syscalls);
//! - without network: `socket` for `AF_INET`, `AF_INET6`, `AF_PACKET` and `AF_NETLINK`
//!   fails with `EAFNOSUPPORT` (Landlock only covers TCP: this also stops UDP, ICMP and raw).
//!
//! A call from another architecture (32-bit `int 0x80` on x86-64) kills the process; the x32
//! numbers of the same calls (bit 30 set, which the architecture check does not tell apart)
//! get the same rules.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Whether `seccompiler` can build a filter for the target architecture.
pub(crate) const SUPPORTED_ARCH: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

#[cfg(target_arch = "x86_64")]
const ARCH: Option<TargetArch> = Some(TargetArch::x86_64);
#[cfg(target_arch = "aarch64")]
const ARCH: Option<TargetArch> = Some(TargetArch::aarch64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH: Option<TargetArch> = None;

/// Bit 30 of an x86-64 system call number: the x32 ABI, numbered like the 64-bit calls.
const X32: i64 = 0x4000_0000;

/// The compiled programs of a run, loaded in order.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    programs: Vec<BpfProgram>,
}

/// One rule that matches when argument `index` equals `value` (compared as 32 bits).
fn arg_is(index: u8, value: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        index,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        value,
    )?])
}

/// A program returning `errno` for the calls in `rules` (an empty rule list matches every
/// call of that number) and allowing everything else.
fn program(rules: Vec<(i64, Vec<SeccompRule>)>, errno: i32) -> io::Result<BpfProgram> {
    let arch = ARCH.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOSYS))?;
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (call, rule) in rules {
        if cfg!(target_arch = "x86_64") {
            map.insert(call | X32, rule.clone());
        }
        map.insert(call, rule);
    }
    let filter = SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(io::Error::other)?;
    filter.try_into().map_err(io::Error::other)
}

impl Filter {
    /// The filters of a run; `deny_network` adds the socket-family rules.
    pub(crate) fn new(deny_network: bool) -> io::Result<Self> {
        let minus_one = u64::from(u32::MAX); // -1 as a 32-bit argument
        let mut programs = vec![
            program(
                vec![
                    (libc::SYS_setsid, vec![]),
                    (libc::SYS_setpgid, vec![]),
                    (
                        libc::SYS_kill,
                        vec![arg_is(0, minus_one).map_err(io::Error::other)?],
                    ),
                ],
                libc::EPERM,
            )?,
            program(
                vec![
                    (libc::SYS_io_uring_setup, vec![]),
                    (libc::SYS_io_uring_enter, vec![]),
                    (libc::SYS_io_uring_register, vec![]),
                ],
                libc::ENOSYS,
            )?,
        ];
        if deny_network {
            let families = [
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_PACKET,
                libc::AF_NETLINK,
            ]
            .into_iter()
            .map(|family| arg_is(0, family as u64))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
            programs.push(program(
                vec![(libc::SYS_socket, families)],
                libc::EAFNOSUPPORT,
            )?);
        }
        Ok(Self { programs })
    }

    /// Installs the filters on the calling thread. Async-signal-safe (no allocation): one
    /// `prctl` and one `seccomp` call per program.
    pub(crate) fn load(&self) -> io::Result<()> {
        for program in &self.programs {
            seccompiler::apply_filter(program).map_err(|e| match e {
                seccompiler::Error::Prctl(err) | seccompiler::Error::Seccomp(err) => err,
                _ => io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_with_and_without_network_rules() {
        if !SUPPORTED_ARCH {
            return;
        }
        let offline = Filter::new(true).unwrap();
        let online = Filter::new(false).unwrap();
        assert_eq!(offline.programs.len(), 3);
        assert_eq!(online.programs.len(), 2);
        assert!(offline.programs.iter().all(|p| !p.is_empty()));
    }
}
