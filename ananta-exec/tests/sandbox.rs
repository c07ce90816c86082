//! The Linux sandbox of `ShellExecutor` against real processes.
//!
//! Tests that run hostile commands check first that a strict sandbox is available (else they
//! return early: a strict executor would refuse anyway), and prefix the command with a canary
//! write outside the workspace: if it succeeds the shell exits 97 before the hostile part.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::print_stderr)] // skip notices and the kernel report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ananta_core::error::ExecError;
use ananta_core::exec::{ExecOutcome, ExecRequest, Executor};
use ananta_exec::sandbox::Feature;

mod support;
use ananta_exec::{Enforcement, KernelSupport, Limits, SandboxConfig, ShellExecutor};

/// Exit code of the canary prefix when the sandbox is not active.
const UNCONFINED: i32 = 97;
const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// A workspace and an outside directory holding a secret.
struct Fixture {
    _root: tempfile::TempDir,
    workspace: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().canonicalize().unwrap();
        let workspace = base.join("ws");
        let outside = base.join("outside");
        std::fs::create_dir(&workspace).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "TOP-SECRET-42\n").unwrap();
        Self {
            _root: root,
            workspace,
            outside,
        }
    }

    fn config(&self) -> SandboxConfig {
        let mut limits = Limits::default();
        limits.max_processes = 64;
        limits.max_file_size = 1 << 20;
        limits.max_address_space = 1 << 30;
        limits.max_cpu_seconds = 10;
        SandboxConfig::new(&self.workspace).limits(limits)
    }

    fn executor(&self, config: SandboxConfig) -> ShellExecutor {
        ShellExecutor::new(&self.workspace)
            .timeout(Duration::from_secs(10))
            .kill_grace(Duration::from_millis(500))
            .sandbox(config)
    }

    fn request(&self, command: &str) -> ExecRequest {
        let mut env = BTreeMap::new();
        env.insert("OUTSIDE".to_string(), self.outside.display().to_string());
        env.insert("PATH".to_string(), PATH.to_string());
        let mut req = ExecRequest::new(command);
        req.env = env;
        req
    }

    /// Runs `command` after the canary check; fails the test if the sandbox was not active.
    async fn run_guarded(&self, exec: &ShellExecutor, command: &str) -> ExecOutcome {
        let guarded =
            format!("touch \"$OUTSIDE/canary\" 2>/dev/null && exit {UNCONFINED}\n{command}");
        let out = exec.run(self.request(&guarded), None).await.unwrap();
        assert_ne!(
            out.exit_code,
            Some(UNCONFINED),
            "the sandbox was not active: the canary write outside the workspace succeeded"
        );
        out
    }
}

/// Whether a strict sandbox can run here; tests return early when not.
fn strict_available() -> bool {
    support::strict_sandbox_available("sandbox test")
}

/// Pids of live processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    support::live_processes()
        .into_iter()
        .filter(|p| p.cmdline().contains(needle))
        .map(|p| p.pid)
        .collect()
}

#[test]
fn kernel_support_is_reported() {
    let kernel = KernelSupport::detect();
    eprintln!("{kernel}");
    assert_eq!(&kernel, KernelSupport::current());
    let fx = Fixture::new();
    let report = fx
        .config()
        .enforcement(Enforcement::BestEffort)
        .plan(&kernel)
        .unwrap();
    eprintln!("{report}");
    assert_eq!(report.landlock_abi, kernel.landlock_abi);
    assert!(report.applies(Feature::ResourceLimits));
}

#[tokio::test]
async fn strict_refuses_when_the_kernel_lacks_a_feature() {
    let fx = Fixture::new();
    let exec = fx.executor(fx.config().min_landlock_abi(999));
    let result = exec.run(fx.request("touch ran"), None).await;
    match result {
        Err(ExecError::SandboxUnavailable(msg)) => assert!(msg.contains("Landlock"), "{msg}"),
        other => panic!("expected SandboxUnavailable, got {other:?}"),
    }
    assert!(!fx.workspace.join("ran").exists(), "the command ran");
    assert!(exec.sandbox_report().is_err());
}

#[tokio::test]
async fn best_effort_runs_and_reports_what_is_missing() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let config = fx
        .config()
        .min_landlock_abi(999)
        .enforcement(Enforcement::BestEffort);
    let report = config.plan(KernelSupport::current()).unwrap();
    assert!(
        report
            .missing
            .iter()
            .any(|(f, _)| *f == Feature::Filesystem)
    );
    let exec = fx.executor(config);
    let out = fx.run_guarded(&exec, "touch ran && echo ok").await;
    assert_eq!(out.stdout, "ok\n");
    assert!(fx.workspace.join("ran").exists());
}

#[tokio::test]
async fn writes_inside_the_workspace_only() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let secret = std::fs::metadata(fx.outside.join("secret.txt")).unwrap();
    let exec = fx.executor(fx.config());
    let out = fx
        .run_guarded(
            &exec,
            "mkdir -p sub && echo hi > sub/file && cat sub/file; \
             echo x > \"$OUTSIDE/new\" && echo WROTE-OUTSIDE; \
             echo x > /tmp/ananta-sandbox-test-escape && echo WROTE-TMP; \
             rm \"$OUTSIDE/secret.txt\" && echo REMOVED; \
             truncate -s 0 \"$OUTSIDE/secret.txt\" && echo TRUNCATED; \
             ln -s \"$OUTSIDE\" out; echo y > out/pwned && echo VIA-SYMLINK; \
             chmod 000 \"$OUTSIDE/secret.txt\" \"$OUTSIDE\" && echo CHMODDED; \
             touch -d 2000-01-01 \"$OUTSIDE/secret.txt\" && echo TOUCHED; \
             setfattr -n user.x -v 1 \"$OUTSIDE/secret.txt\" 2>/dev/null && echo XATTR; \
             chmod +x sub/file && touch -d 2000-01-01 sub/file && echo META-INSIDE",
        )
        .await;
    // `/tmp` is the run's own (the host's stays untouched, checked below).
    assert_eq!(
        out.stdout, "hi\nWROTE-TMP\nMETA-INSIDE\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(fx.workspace.join("sub/file")).unwrap(),
        "hi\n"
    );
    assert!(!fx.outside.join("new").exists());
    assert!(!fx.outside.join("pwned").exists());
    assert!(!Path::new("/tmp/ananta-sandbox-test-escape").exists());
    assert_eq!(
        std::fs::read_to_string(fx.outside.join("secret.txt")).unwrap(),
        "TOP-SECRET-42\n"
    );
    let after = std::fs::metadata(fx.outside.join("secret.txt")).unwrap();
    assert_eq!(secret.permissions(), after.permissions());
    assert_eq!(secret.modified().unwrap(), after.modified().unwrap());
}

#[tokio::test]
async fn reads_outside_the_allowlist_are_denied() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let exec = fx.executor(fx.config());
    let out = fx
        .run_guarded(
            &exec,
            "cat \"$OUTSIDE/secret.txt\"; ls \"$OUTSIDE\"; cat /etc/shadow; \
             cat /etc/hostname >/dev/null && echo ETC-OK; ls /usr/bin >/dev/null && echo USR-OK",
        )
        .await;
    assert!(!out.stdout.contains("TOP-SECRET"), "{}", out.stdout);
    assert!(!out.stdout.contains("secret.txt"), "{}", out.stdout);
    assert!(!out.stdout.contains("root:"), "{}", out.stdout);
    assert!(out.stdout.contains("ETC-OK") && out.stdout.contains("USR-OK"));
}

#[tokio::test]
async fn home_and_tmpdir_are_private_and_removed_after_the_run() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let exec = fx.executor(fx.config());
    let out = fx
        .run_guarded(
            &exec,
            "test \"$HOME\" = \"$TMPDIR\" && touch \"$HOME/x\" \"$TMPDIR/y\" && echo \"$HOME\"",
        )
        .await;
    let home = PathBuf::from(out.stdout.trim());
    assert!(home.is_absolute(), "{out:?}");
    assert!(!home.starts_with(&fx.workspace));
    assert!(
        !home.exists(),
        "the private temporary directory was not removed"
    );
}

#[tokio::test]
async fn network_is_denied_unless_allowed() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let listener = support::Listener::start();
    let command = format!(
        "curl -s -m 2 http://127.0.0.1:{port}/; \
         python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)' \
         && echo PY-CONNECTED; \
         python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)' \
         && echo UDP-SOCKET; true",
        port = listener.port
    );
    let denied = fx.executor(fx.config());
    let out = fx.run_guarded(&denied, &command).await;
    assert!(!out.stdout.contains("PY-CONNECTED"), "{out:?}");
    assert!(!out.stdout.contains("UDP-SOCKET"), "{out:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listener.accepted(), 0);

    let allowed = fx.executor(fx.config().network(true));
    let out = fx.run_guarded(&allowed, &command).await;
    assert!(out.stdout.contains("PY-CONNECTED"), "{out:?}");
    assert!(out.stdout.contains("UDP-SOCKET"), "{out:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listener.accepted(), 2);
}

#[tokio::test]
async fn no_process_outlives_the_run() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let exec = fx.executor(fx.config());
    let out = fx
        .run_guarded(
            &exec,
            "setsid sleep 1001.5 & nohup sleep 1002.5 >/dev/null 2>&1 & \
             (sleep 1003.5 &) ; python3 -c 'import os; os.setsid()' || echo SETSID-DENIED",
        )
        .await;
    assert!(out.stdout.contains("SETSID-DENIED"), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<i32> = ["sleep 1001.5", "sleep 1002.5", "sleep 1003.5"]
            .iter()
            .flat_map(|n| processes_with(n))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes outlived the run: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn signals_cannot_reach_processes_outside_the_sandbox() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let mut victim = std::process::Command::new("sleep")
        .arg("1004.5")
        .spawn()
        .unwrap();
    let exec = fx.executor(fx.config());
    let out = fx
        .run_guarded(&exec, &format!("kill -9 {} && echo KILLED", victim.id()))
        .await;
    assert!(!out.stdout.contains("KILLED"), "{out:?}");
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the victim was killed"
    );
    let out = fx
        .run_guarded(&exec, "sleep 1005.5 & kill -9 -1; echo SURVIVED")
        .await;
    assert!(out.stdout.contains("SURVIVED"), "{out:?}");
    assert!(
        victim.try_wait().unwrap().is_none(),
        "kill -1 reached the victim"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[tokio::test]
async fn limits_privileges_and_confinement_are_applied() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let exec = fx.executor(fx.config());
    let out = fx
        .run_guarded(
            &exec,
            "cat /proc/self/limits; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
             cat /proc/self/cgroup; ps -o sid= -p $$; echo PID=$$",
        )
        .await;
    let s = &out.stdout;
    let limit = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {s}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        limit("Max file size").contains(&(1u64 << 20).to_string()),
        "{s}"
    );
    assert!(
        limit("Max address space").contains(&(1u64 << 30).to_string()),
        "{s}"
    );
    assert!(limit("Max cpu time").contains(&"10".to_string()), "{s}");
    assert!(
        limit("Max core file size").contains(&"0".to_string()),
        "{s}"
    );
    assert!(s.contains("NoNewPrivs:\t1"), "{s}");
    assert!(s.contains("Seccomp:\t2"), "{s}");
    if KernelSupport::current().cap_setpcap {
        assert!(s.contains("CapEff:\t0000000000000000"), "{s}");
        assert!(s.contains("CapBnd:\t0000000000000000"), "{s}");
    }
    if KernelSupport::current().pids_cgroup.is_some() {
        assert!(s.contains("ananta-sandbox/run-"), "{s}");
    }
    // The shell is the first process of its own PID namespace (its session, led by the
    // process outside that waits for it, has no id inside).
    if KernelSupport::current().pid_namespace {
        let pid = s.lines().find_map(|l| l.strip_prefix("PID=")).unwrap();
        assert_eq!(pid, "1", "{s}");
    }
}

#[tokio::test]
async fn file_size_and_memory_are_bounded() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let exec = fx.executor(fx.config());
    let out = fx
        .run_guarded(
            &exec,
            "fallocate -l 100G big.bin && echo FALLOCATED; \
             head -c 2000000 /dev/zero > two-mb.bin && echo WROTE-2MB; \
             python3 -c 'x = bytearray(2 * 1024**3)' && echo ALLOCATED; true",
        )
        .await;
    for word in ["FALLOCATED", "WROTE-2MB", "ALLOCATED"] {
        assert!(!out.stdout.contains(word), "{word}: {out:?}");
    }
    let size = std::fs::metadata(fx.workspace.join("two-mb.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(size <= 1 << 20, "file grew to {size} bytes");
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_ends_with_the_timeout() {
    if !strict_available() {
        return;
    }
    let fx = Fixture::new();
    let exec = fx.executor(fx.config());
    let start = Instant::now();
    let mut req = fx.request(&format!(
        "touch \"$OUTSIDE/canary\" 2>/dev/null && exit {UNCONFINED}\n:(){{ :|:& }};:"
    ));
    req.timeout = Some(Duration::from_secs(3));
    let out = exec.run(req, None).await.unwrap();
    assert_ne!(out.exit_code, Some(UNCONFINED));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // The machine is still responsive and nothing of the bomb is left.
    let probe = Instant::now();
    let status = std::process::Command::new("true").status().unwrap();
    assert!(status.success() && probe.elapsed() < Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_with(":(){ :|:& };:");
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
