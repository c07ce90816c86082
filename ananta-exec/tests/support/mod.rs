//! Helpers shared by the executor's integration tests: the process table (from `/proc`) and a
//! TCP listener that counts connections.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A process from `/proc/PID/stat`.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Its id.
    pub pid: i32,
    /// Its process group.
    pub pgrp: i32,
}

impl Proc {
    /// Its command line, arguments joined by spaces.
    pub fn cmdline(&self) -> String {
        let raw = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        String::from_utf8_lossy(&raw).replace('\0', " ")
    }

    /// Its environment as one text (`NAME=value` entries NUL-separated).
    pub fn environ(&self) -> String {
        let raw = std::fs::read(format!("/proc/{}/environ", self.pid)).unwrap_or_default();
        String::from_utf8_lossy(&raw).into_owned()
    }

    /// Its cgroup memberships (`/proc/PID/cgroup`).
    pub fn cgroups(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid)).unwrap_or_default()
    }
}

/// The live (not zombie) process `pid`, if there is one.
pub fn live(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may contain spaces, so split after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    if state == "Z" || state == "X" {
        return None;
    }
    Some(Proc {
        pid,
        pgrp: fields.get(2)?.parse().ok()?,
    })
}

/// Every live (not zombie) process.
pub fn live_processes() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(live)
        .collect()
}

/// Accepts connections on 127.0.0.1 and counts them (for as long as the test runs).
pub struct Listener {
    /// The port it listens on.
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Listener {
    /// Starts listening on a free port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 256];
                let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                let _ = s.read(&mut buf);
            }
        });
        Self { port, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Runs git in `dir` as the user would on the host, outside any sandbox (with an identity, and
/// no `GIT_DIR` from the environment).
pub fn host_git(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "host")
        .env("GIT_AUTHOR_EMAIL", "host@example.com")
        .env("GIT_COMMITTER_NAME", "host")
        .env("GIT_COMMITTER_EMAIL", "host@example.com")
        .env_remove("GIT_DIR")
        .output()
        .unwrap()
}

/// Whether a strict sandbox can run on this machine. When it cannot, prints a NOT RUN line
/// naming `what` was skipped and returns false, unless `ANANTA_REQUIRE_SANDBOX` is set, in
/// which case it fails the test.
#[cfg(target_os = "linux")]
pub fn strict_sandbox_available(what: &str) -> bool {
    let probe = tempfile::tempdir().unwrap();
    match ananta_exec::SandboxConfig::new(probe.path()).plan(ananta_exec::KernelSupport::current())
    {
        Ok(_) => true,
        Err(err) => {
            assert!(
                std::env::var_os("ANANTA_REQUIRE_SANDBOX").is_none(),
                "ANANTA_REQUIRE_SANDBOX is set but a strict sandbox cannot run here: {err}"
            );
            #[allow(clippy::print_stderr)]
            {
                eprintln!("NOT RUN: {what}: strict sandbox unavailable: {err}");
            }
            false
        }
    }
}
