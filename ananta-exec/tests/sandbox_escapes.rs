//! Escape classes the sandbox closes on its own (no policy): Unix sockets outside the
//! workspace, the host's SysV IPC, processes that would outlive a killed runner, and git
//! metadata that would run planted code when the user later runs git outside.
//!
//! Each test returns early (with a NOT RUN line) only when a strict sandbox cannot run here;
//! with `ANANTA_REQUIRE_SANDBOX` set that is a failure instead.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ananta_core::exec::{ExecOutcome, ExecRequest, Executor};
use ananta_exec::{GitIdentity, SandboxConfig, ShellExecutor};

mod support;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// A workspace and a directory outside it.
struct World {
    _root: tempfile::TempDir,
    ws: PathBuf,
    outside: PathBuf,
}

impl World {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().canonicalize().unwrap();
        let (ws, outside) = (base.join("ws"), base.join("outside"));
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&outside).unwrap();
        Self {
            _root: root,
            ws,
            outside,
        }
    }

    fn executor(&self, config: SandboxConfig) -> ShellExecutor {
        ShellExecutor::new(&self.ws)
            .timeout(Duration::from_secs(60))
            .sandbox(config)
    }

    async fn run(&self, exec: &ShellExecutor, command: &str) -> ExecOutcome {
        let mut request = ExecRequest::new(command);
        request.env = BTreeMap::from([
            ("PATH".to_string(), PATH.to_string()),
            ("OUTSIDE".to_string(), self.outside.display().to_string()),
        ]);
        exec.run(request, None).await.unwrap()
    }
}

/// Counts connections to a Unix socket.
fn unix_listener(path: &Path) -> Arc<AtomicUsize> {
    let listener = UnixListener::bind(path).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = stream.read(&mut [0u8; 16]);
        }
    });
    count
}

fn connect_script(paths: &[&Path]) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("'{}'", p.display())).collect();
    format!(
        "python3 -c \"
import socket
for p in [{}]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(p); print('CONNECTED', p)
    except OSError as e:
        print('REFUSED', e.errno, p)
\"",
        list.join(", ")
    )
}

#[tokio::test]
async fn unix_sockets_outside_the_workspace_are_out_of_reach() {
    if !support::strict_sandbox_available("unix sockets") {
        return;
    }
    let world = World::new();
    let in_outside = world.outside.join("service.sock");
    let outside_count = unix_listener(&in_outside);
    // Where host services keep theirs (a database on /run/postgresql…).
    let run_dir = tempfile::Builder::new()
        .prefix("ananta-test-")
        .tempdir_in("/run")
        .ok();
    let in_run = run_dir.as_ref().map(|d| d.path().join("db.sock"));
    let run_count = in_run.as_deref().map(unix_listener);

    let exec = world.executor(SandboxConfig::new(&world.ws));
    let mut targets = vec![in_outside.as_path()];
    targets.extend(in_run.as_deref());
    let out = world
        .run(
            &exec,
            &format!(
                "{}; ls /run /var/run /var/run/postgresql 2>&1 | head -n 3; \
                 test -e /var/run/postgresql/.s.PGSQL.5432 && echo POSTGRES-VISIBLE; \
                 test -e /run/mysqld/mysqld.sock && echo MARIADB-VISIBLE; true",
                connect_script(&targets)
            ),
        )
        .await;
    assert!(!out.stdout.contains("CONNECTED"), "{}", out.stdout);
    assert_eq!(
        out.stdout.matches("REFUSED").count(),
        targets.len(),
        "{out:?}"
    );
    assert!(!out.stdout.contains("VISIBLE"), "{}", out.stdout);
    assert_eq!(outside_count.load(Ordering::SeqCst), 0);
    if let Some(count) = &run_count {
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    // The control: the same connection works once the configuration names the socket.
    let exec = world.executor(SandboxConfig::new(&world.ws).unix_socket(&in_outside));
    let out = world.run(&exec, &connect_script(&[&in_outside])).await;
    assert!(out.stdout.contains("CONNECTED"), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while outside_count.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(outside_count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn host_sysv_ipc_is_out_of_reach_and_the_runs_own_does_not_outlive_it() {
    if !support::strict_sandbox_available("sysv ipc") {
        return;
    }
    let world = World::new();
    let base = 0x414e_0000 + (std::process::id() as i32 & 0xffff);
    let (host_key, run_key) = (base, base + 0x1_0000);
    // SAFETY: plain System V calls; the segment is attached, written and detached here and
    // removed at the end of the test.
    let host_id = unsafe { libc::shmget(host_key, 4096, libc::IPC_CREAT | 0o600) };
    assert!(host_id >= 0, "shmget: {}", std::io::Error::last_os_error());
    unsafe {
        let at = libc::shmat(host_id, std::ptr::null(), 0);
        assert_ne!(at as isize, -1);
        std::ptr::copy_nonoverlapping(b"SHM-SENTINEL-3c1e".as_ptr(), at.cast(), 17);
        libc::shmdt(at);
    }
    let exec = world.executor(SandboxConfig::new(&world.ws));
    let out = world
        .run(
            &exec,
            &format!(
                "python3 -c \"
import ctypes
libc = ctypes.CDLL(None)
print('HOST', libc.shmget({host_key}, 0, 0))
print('HOSTID', libc.shmat({host_id}, None, 0))
print('OWN', libc.shmget({run_key}, 4096, 0o1600))
\"; cat /proc/sysvipc/shm"
            ),
        )
        .await;
    // SAFETY: checks and removes segments by id; no memory is touched.
    let run_left = unsafe { libc::shmget(run_key, 0, 0) };
    unsafe { libc::shmctl(host_id, libc::IPC_RMID, std::ptr::null_mut()) };
    assert!(out.stdout.contains("HOST -1"), "{out:?}");
    assert!(out.stdout.contains("HOSTID -1"), "{out:?}");
    let own: i64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("OWN "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1);
    assert!(own >= 0, "creating a segment inside must work: {out:?}");
    assert!(!out.stdout.contains("SHM-SENTINEL"), "{out:?}");
    assert!(
        !out.stdout.contains(&format!("{host_key:>10}")),
        "the host's segment is listed: {out:?}"
    );
    assert_eq!(run_left, -1, "the run's segment outlived the run");
}

/// Set for the runner process of [`no_process_outlives_a_killed_runner`].
const RUNNER_WORKSPACE: &str = "ANANTA_TEST_RUNNER_WORKSPACE";
const RUNNER_MARK: &str = "ANANTA_TEST_RUNNER_MARK";

/// Not a test on its own: the runner process that
/// [`no_process_outlives_a_killed_runner`] starts (this test binary, with the workspace in
/// the environment) and then kills. Without that environment it does nothing.
#[tokio::test]
async fn runner_process_for_the_orphan_test() {
    let (Some(ws), Some(mark)) = (
        std::env::var_os(RUNNER_WORKSPACE),
        std::env::var(RUNNER_MARK).ok(),
    ) else {
        return;
    };
    let exec = ShellExecutor::new(&ws)
        .timeout(Duration::from_secs(120))
        .sandbox(SandboxConfig::new(&ws));
    let mut request = ExecRequest::new(
        "sleep 300 & (sleep 301 &) ; nohup sleep 302 >/dev/null 2>&1 & \
         sh -c 'sleep 303 & exec sleep 304' & echo up > started; wait",
    );
    request.env = BTreeMap::from([
        ("PATH".to_string(), PATH.to_string()),
        (RUNNER_MARK.to_string(), mark),
    ]);
    let _ = exec.run(request, None).await;
}

#[tokio::test]
async fn no_process_outlives_a_killed_runner() {
    if !support::strict_sandbox_available("orphans") {
        return;
    }
    let world = World::new();
    let mark = format!("orphan-{}", std::process::id());
    let mut runner = Command::new(std::env::current_exe().unwrap())
        .args([
            "runner_process_for_the_orphan_test",
            "--exact",
            "--nocapture",
        ])
        .env(RUNNER_WORKSPACE, &world.ws)
        .env(RUNNER_MARK, &mark)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !world.ws.join("started").exists() {
        assert!(
            Instant::now() < deadline,
            "the runner never started its command"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runner_pid = runner.id() as i32;
    let marked = || -> Vec<(i32, String)> {
        support::live_processes()
            .into_iter()
            .filter(|p| p.pid != runner_pid)
            .filter(|p| p.environ().contains(&format!("{RUNNER_MARK}={mark}")))
            .map(|p| (p.pid, p.cmdline()))
            .collect()
    };
    let before = marked();
    assert!(
        before
            .iter()
            .filter(|(_, c)| c.starts_with("sleep"))
            .count()
            >= 4,
        "the command's background jobs should be running: {before:?}"
    );
    // A host crash: the runner dies without any chance to clean up.
    // SAFETY: kill only sends a signal, to our own child.
    unsafe { libc::kill(runner_pid, libc::SIGKILL) };
    runner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = marked();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for (pid, _) in &left {
                // SAFETY: cleaning up this test's own leftovers.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            panic!("processes outlived the killed runner: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ways a sandboxed command could leave code for git to run later, each with `$EVIL` (a
/// script that creates a file in `$OUTSIDE`) at hand.
const PLANTINGS: &[&str] = &[
    "cp \"$EVIL\" .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
    "for h in pre-commit post-commit commit-msg prepare-commit-msg post-index-change \
     reference-transaction fsmonitor-watchman; do cp \"$EVIL\" .git/hooks/$h; \
     chmod +x .git/hooks/$h; done",
    "ln -sf \"$EVIL\" .git/hooks/post-commit",
    "rm -rf .git/hooks; mkdir -p .git/hooks && cp \"$EVIL\" .git/hooks/pre-commit",
    "mv .git/hooks .git/hooks-old; mkdir .git/hooks && cp \"$EVIL\" .git/hooks/pre-commit",
    "mkdir -p myhooks && cp \"$EVIL\" myhooks/pre-commit && git config core.hooksPath myhooks",
    "git config core.fsmonitor \"$EVIL\"",
    "printf '[core]\\n\\tfsmonitor = %s\\n' \"$EVIL\" >> .git/config",
    "sed -i \"s|bare = false|bare = false\\n\\tfsmonitor = $EVIL|\" .git/config",
    "cp .git/config cfg && printf '\\tfsmonitor = %s\\n' \"$EVIL\" >> cfg && cat cfg > .git/config",
    "printf '[include]\\n\\tpath = ../evil.cfg\\n' >> .git/config; \
     printf '[core]\\n\\tfsmonitor = %s\\n' \"$EVIL\" > evil.cfg",
    "mkdir -p common/hooks && cp -r .git/objects .git/refs .git/HEAD common/ && \
     printf '[core]\\n\\tfsmonitor = %s\\n\\trepositoryformatversion = 0\\n' \"$EVIL\" > common/config && \
     cp \"$EVIL\" common/hooks/pre-commit && echo ../common > .git/commondir",
    "printf '[core]\\n\\tfsmonitor = %s\\n' \"$EVIL\" > .git/config.worktree",
    "mv .git dotgit && mkdir .git && cp -r dotgit/. .git/ && cp \"$EVIL\" .git/hooks/pre-commit",
    "rm -rf .git; git init -q . && cp \"$EVIL\" .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
    "cd .git && cd hooks && cp \"$EVIL\" pre-commit",
    "d=.gi; cp \"$EVIL\" \"${d}t/hooks/pre-commit\"",
];

#[tokio::test]
async fn planted_git_hooks_and_settings_never_run_outside() {
    if !support::strict_sandbox_available("git plantings") {
        return;
    }
    for (index, planting) in PLANTINGS.iter().enumerate() {
        let world = World::new();
        let ws = &world.ws;
        std::fs::write(ws.join("README.md"), "repo\n").unwrap();
        assert!(support::host_git(ws, &["init", "-q"]).status.success());
        assert!(support::host_git(ws, &["add", "-A"]).status.success());
        assert!(
            support::host_git(ws, &["commit", "-qm", "init"])
                .status
                .success()
        );
        let evil = world.ws.join("evil.sh");
        let pwned = world.outside.join("pwned");
        std::fs::write(
            &evil,
            format!("#!/bin/sh\necho ran >> '{}'\n", pwned.display()),
        )
        .unwrap();
        Command::new("chmod")
            .args(["+x", evil.to_str().unwrap()])
            .status()
            .unwrap();

        if index == 0 {
            // The control: planted on the host, the hook does run (so `pwned` detects it).
            let hook = ws.join(".git/hooks/pre-commit");
            std::fs::copy(&evil, &hook).unwrap();
            let _ = support::host_git(ws, &["commit", "-q", "--allow-empty", "-m", "control"]);
            assert!(pwned.exists(), "the control hook did not run");
            std::fs::remove_file(&pwned).unwrap();
            std::fs::remove_file(&hook).unwrap();
        }
        let exec = world.executor(
            SandboxConfig::new(ws).git_identity(GitIdentity::new("Sandboxed Agent", "a@b.c")),
        );
        let out = world
            .run(&exec, &format!("EVIL='{}'; {planting}", evil.display()))
            .await;
        // Whatever happened inside, outside nothing runs: not on `git status`, not on commit.
        let status = support::host_git(ws, &["status", "--porcelain"]);
        std::fs::write(ws.join("change.txt"), format!("{index}\n")).unwrap();
        let _ = support::host_git(ws, &["add", "change.txt"]);
        let commit = support::host_git(ws, &["commit", "-qm", "after the planting"]);
        assert!(
            !pwned.exists(),
            "planting {index} `{planting}` ran outside the sandbox\nrun: {out:?}\nstatus: {status:?}\ncommit: {commit:?}"
        );
    }
}

#[tokio::test]
async fn sandboxed_git_commits_work_with_the_configured_identity() {
    if !support::strict_sandbox_available("git identity") {
        return;
    }
    let world = World::new();
    let exec = world.executor(
        SandboxConfig::new(&world.ws).git_identity(GitIdentity::new("Sandboxed Agent", "a@b.c")),
    );
    let out = world
        .run(
            &exec,
            "git init -q && echo one > a.txt && git add a.txt && git commit -qm first && \
             echo two >> a.txt && git commit -qam second && git log --format='%an <%ae>' | sort -u",
        )
        .await;
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, "Sandboxed Agent <a@b.c>\n", "{out:?}");
    // The repository made inside is an ordinary one outside.
    let log = support::host_git(&world.ws, &["log", "--oneline"]);
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 2);
}
