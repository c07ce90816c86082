//! `ShellExecutor` against real processes (Linux: uses `/proc` to check nothing is left).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use ananta_core::error::ExecError;
use ananta_core::exec::{ExecRequest, Executor, OutputChunk, OutputStream};
use ananta_exec::{DEFAULT_OUTPUT_CAP, ShellExecutor};
use tokio::sync::mpsc;

mod support;

/// A hang guard for tests that must return promptly (not a performance assertion).
const PROMPT: Duration = Duration::from_secs(10);

fn executor(dir: &Path) -> ShellExecutor {
    ShellExecutor::new(dir).timeout(Duration::from_secs(30))
}

async fn run(exec: &ShellExecutor, req: ExecRequest) -> ananta_core::exec::ExecOutcome {
    exec.run(req, None).await.expect("command should run")
}

/// Pids of the live (non-zombie) processes whose process group is `pgid`.
fn live_group_members(pgid: i32) -> Vec<i32> {
    support::live_processes()
        .into_iter()
        .filter(|p| p.pgrp == pgid)
        .map(|p| p.pid)
        .collect()
}

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    support::live(pid).is_some()
}

/// Polls until group `pgid` has no live member; panics with the survivors after 5 s.
async fn assert_group_gone(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let members = live_group_members(pgid);
        if members.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of group {pgid} still alive: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn echo_succeeds_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&executor(dir.path()), ExecRequest::new("echo hello")).await;
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "");
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.signal, None);
    assert!(out.success() && !out.timed_out && !out.stdout_truncated);
}

#[tokio::test]
async fn nonzero_exit_code_is_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&executor(dir.path()), ExecRequest::new("exit 3")).await;
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.success());
}

#[tokio::test]
async fn stderr_is_captured_separately() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &executor(dir.path()),
        ExecRequest::new("echo out; echo oops >&2; exit 1"),
    )
    .await;
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.exit_code, Some(1));
}

#[tokio::test]
async fn working_directory_default_relative_and_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let exec = executor(&root);

    let out = run(&exec, ExecRequest::new("pwd -P")).await;
    assert_eq!(out.stdout.trim(), root.to_str().unwrap());

    let out = run(&exec, ExecRequest::new("pwd -P").cwd("sub")).await;
    assert_eq!(out.stdout.trim(), root.join("sub").to_str().unwrap());

    let abs = other.path().canonicalize().unwrap();
    let out = run(&exec, ExecRequest::new("pwd -P").cwd(&abs)).await;
    assert_eq!(out.stdout.trim(), abs.to_str().unwrap());
}

#[tokio::test]
async fn environment_is_an_allowlist() {
    // SAFETY: the only other environment access in this test binary is Rust's own
    // (`std::env::var_os` in the executor and std's process spawning), which is serialised
    // with `set_var` by std's environment lock; no C code reads the environment here.
    unsafe { std::env::set_var("ANANTA_TEST_SECRET", "hunter2") };
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).env("FIXED_VAR", "fixed");

    let out = run(
        &exec,
        ExecRequest::new(
            r#"echo "secret=[$ANANTA_TEST_SECRET] req=[$REQ_VAR] fixed=[$FIXED_VAR]""#,
        )
        .env("REQ_VAR", "from request"),
    )
    .await;
    assert_eq!(out.stdout, "secret=[] req=[from request] fixed=[fixed]\n");

    // PATH comes through (when the test process has one), so plain commands resolve.
    if let Some(path) = std::env::var_os("PATH") {
        let out = run(&exec, ExecRequest::new(r#"printf %s "$PATH""#)).await;
        assert_eq!(out.stdout, path.to_str().unwrap());
    }

    // Nothing outside the allowlist leaks: not even the variables cargo sets for tests.
    let out = run(&exec, ExecRequest::new("env")).await;
    for line in out.stdout.lines() {
        let name = line.split('=').next().unwrap();
        assert!(
            !name.starts_with("CARGO") && name != "ANANTA_TEST_SECRET",
            "leaked: {line}"
        );
    }

    // A request can override an allowlisted variable; an added name is inherited.
    let out = run(
        &exec,
        ExecRequest::new(r#"printf %s "$HOME""#).env("HOME", "/nowhere"),
    )
    .await;
    assert_eq!(out.stdout, "/nowhere");
    // An allowlisted variable with a secret-looking name comes through to the command, and
    // its value is redacted in what the command prints.
    let exec = exec.allowed_env("ANANTA_TEST_SECRET");
    let out = run(
        &exec,
        ExecRequest::new(
            r#"[ "$ANANTA_TEST_SECRET" = hunter2 ] && printf %s "$ANANTA_TEST_SECRET""#,
        ),
    )
    .await;
    assert_eq!(out.stdout, "[redacted ANANTA_TEST_SECRET]");
}

#[tokio::test]
async fn invalid_requests_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let exec = executor(dir.path());
    let bad = [
        ExecRequest::new(""),
        ExecRequest::new("  \n\t "),
        ExecRequest::new("echo a\0b"),
        ExecRequest::new("true").cwd("does-not-exist"),
        ExecRequest::new("true").cwd(dir.path().join("file")),
        ExecRequest::new("true").env("A=B", "x"),
        ExecRequest::new("true").env("", "x"),
        ExecRequest::new("true").env("A", "x\0y"),
        ExecRequest::new("true").timeout(Duration::ZERO),
    ];
    for req in bad {
        let described = format!("{req:?}");
        match exec.run(req, None).await {
            Err(ExecError::InvalidRequest(msg)) => assert!(!msg.is_empty()),
            other => panic!("{described}: expected InvalidRequest, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn missing_shell_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).shell("/nonexistent/ananta-shell");
    match exec.run(ExecRequest::new("true"), None).await {
        Err(ExecError::Spawn(msg)) => assert!(msg.contains("/nonexistent/ananta-shell")),
        other => panic!("expected Spawn, got {other:?}"),
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_group_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let exec = executor(dir.path());
    let started = Instant::now();
    let out = run(
        &exec,
        ExecRequest::new("echo $$ > pid; sleep 100 & sleep 100").timeout(Duration::from_secs(1)),
    )
    .await;
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    assert!(out.timed_out);
    assert!(!out.success());
    assert_eq!(out.exit_code, None);
    assert!(out.signal.is_some());
    assert!(out.duration_ms >= 1000);
    assert_group_gone(read_pid(&pid_file)).await;
}

#[tokio::test]
async fn term_ignoring_command_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let exec = executor(dir.path()).kill_grace(Duration::from_millis(500));
    let started = Instant::now();
    let out = run(
        &exec,
        ExecRequest::new("echo $$ > pid; trap '' TERM; sleep 100").timeout(Duration::from_secs(1)),
    )
    .await;
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    assert!(out.timed_out);
    assert_eq!(out.signal, Some(libc::SIGKILL));
    assert!(
        out.duration_ms >= 1000,
        "grace period skipped: {} ms",
        out.duration_ms
    );
    assert_group_gone(read_pid(&pid_file)).await;
}

#[tokio::test]
async fn background_grandchild_holding_the_pipes_does_not_hang_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path());
    for script in [
        "echo $$ > pid; sleep 100 & echo $! > gc; echo started",
        "echo $$ > pid; (sleep 100 & echo $! > gc); echo started",
        "echo $$ > pid; sleep 100 >/dev/null 2>&1 & echo $! > gc; echo started",
    ] {
        let started = Instant::now();
        let out = run(&exec, ExecRequest::new(script)).await;
        assert!(
            started.elapsed() < PROMPT,
            "{script}: took {:?}",
            started.elapsed()
        );
        assert_eq!(out.stdout, "started\n", "{script}");
        assert_eq!(out.exit_code, Some(0), "{script}");
        assert!(!out.timed_out, "{script}");
        let grandchild = read_pid(&dir.path().join("gc"));
        assert_group_gone(read_pid(&dir.path().join("pid"))).await;
        assert!(
            !alive(grandchild),
            "{script}: grandchild {grandchild} survived"
        );
    }
}

#[tokio::test]
async fn huge_output_is_capped_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path());
    let before = vm_hwm_kib();
    let started = Instant::now();
    let out = run(
        &exec,
        ExecRequest::new("head -c 200000000 /dev/zero; head -c 200000000 /dev/zero >&2"),
    )
    .await;
    let grown_mib = vm_hwm_kib().saturating_sub(before) / 1024;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.exit_code, Some(0));
    assert!(out.stdout.len() <= DEFAULT_OUTPUT_CAP && out.stderr.len() <= DEFAULT_OUTPUT_CAP);
    assert_eq!(out.stdout.len(), DEFAULT_OUTPUT_CAP);
    assert!(out.stdout_truncated && out.stderr_truncated);
    assert!(grown_mib < 100, "peak memory grew by {grown_mib} MiB");
}

#[tokio::test]
async fn small_caps_apply_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).stdout_cap(4).stderr_cap(100);
    let out = run(&exec, ExecRequest::new("echo 0123456789; echo short >&2")).await;
    assert_eq!(out.stdout, "0123");
    assert!(out.stdout_truncated);
    assert_eq!(out.stderr, "short\n");
    assert!(!out.stderr_truncated);
}

#[tokio::test]
async fn invalid_utf8_is_replaced_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &executor(dir.path()),
        ExecRequest::new(r"printf '\377\376abc'; printf '\377' >&2"),
    )
    .await;
    assert_eq!(out.stdout, "\u{FFFD}\u{FFFD}abc");
    assert_eq!(out.stderr, "\u{FFFD}");
    assert!(out.success());
}

#[tokio::test]
async fn streaming_delivers_every_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(1024);
    let out = executor(dir.path())
        .run(
            ExecRequest::new("printf 'one\\n'; sleep 0.05; echo err >&2; printf 'two\\n'"),
            Some(tx),
        )
        .await
        .unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(chunk) = rx.recv().await {
        match chunk.stream {
            OutputStream::Stdout => stdout.extend(chunk.data),
            OutputStream::Stderr => stderr.extend(chunk.data),
        }
    }
    assert_eq!(out.stdout, "one\ntwo\n");
    assert_eq!(String::from_utf8(stdout).unwrap(), out.stdout);
    assert_eq!(String::from_utf8(stderr).unwrap(), out.stderr);
}

#[tokio::test]
async fn full_or_closed_sink_never_blocks_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path());

    // Capacity 1, never read while the command runs.
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(1);
    let started = Instant::now();
    let out = exec
        .run(ExecRequest::new("yes | head -c 1000000"), Some(tx))
        .await
        .unwrap();
    assert!(started.elapsed() < PROMPT);
    assert_eq!(out.stdout.len(), 1_000_000);
    assert!(!out.stdout_truncated && out.success());
    assert!(rx.recv().await.is_some());

    // Receiver already gone.
    let (tx, rx) = mpsc::channel::<OutputChunk>(1);
    drop(rx);
    let out = exec
        .run(ExecRequest::new("echo still runs"), Some(tx))
        .await
        .unwrap();
    assert_eq!(out.stdout, "still runs\n");
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let exec = executor(dir.path()).timeout(Duration::from_secs(60));
    let req = ExecRequest::new("echo $$ > pid.tmp; mv pid.tmp pid; sleep 100 & sleep 100");
    let started = Instant::now();
    let mut run = Box::pin(exec.run(req, None));
    // Drive the run until the command is certainly going, then drop it (caller cancels).
    while !pid_file.exists() {
        tokio::select! {
            result = &mut run => panic!("the run should still be going: {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert!(started.elapsed() < PROMPT, "the command never started");
    }
    drop(run);
    assert_group_gone(read_pid(&pid_file)).await;
}

#[tokio::test]
async fn parent_death_signal_option_still_runs_commands() {
    let dir = tempfile::tempdir().unwrap();
    let exec = ShellExecutor::new(dir.path()).kill_on_parent_death(true);
    assert!(exec.config().kill_on_parent_death);
    assert!(
        !ShellExecutor::new(dir.path()).config().kill_on_parent_death,
        "off by default"
    );
    let outcome = exec.run(ExecRequest::new("echo ok"), None).await.unwrap();
    assert_eq!(
        (outcome.exit_code, outcome.stdout.as_str()),
        (Some(0), "ok\n")
    );
}

#[tokio::test]
async fn secret_looking_values_never_leave_the_executor() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).env("SERVICE_PASSWORD", "configured-pass-42");
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let req = ExecRequest::new("echo \"key=$MY_API_TOKEN\"; env; echo \"$SERVICE_PASSWORD\" >&2")
        .env("MY_API_TOKEN", "tok-0123456789abcdef")
        .env("PLAIN", "visible-value");
    let outcome = exec.run(req, Some(tx)).await.unwrap();
    assert!(outcome.success(), "{outcome:?}");
    for secret in ["tok-0123456789abcdef", "configured-pass-42"] {
        assert!(
            !outcome.stdout.contains(secret) && !outcome.stderr.contains(secret),
            "{secret} leaked: {outcome:?}"
        );
    }
    assert!(outcome.stdout.contains("key=[redacted MY_API_TOKEN]"));
    assert!(
        outcome.stdout.contains("PLAIN=visible-value"),
        "other values stay"
    );
    assert!(outcome.stderr.contains("[redacted SERVICE_PASSWORD]"));
    let mut streamed = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        streamed.extend_from_slice(&chunk.data);
    }
    let streamed = String::from_utf8_lossy(&streamed);
    assert!(
        !streamed.contains("tok-0123456789abcdef") && streamed.contains("[redacted MY_API_TOKEN]"),
        "streamed chunks are redacted too: {streamed}"
    );
}
