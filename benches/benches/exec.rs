//! Executor overhead: running a trivial command (`true`) through `ShellExecutor`, without and
//! with the Linux sandbox, next to a bare `tokio::process::Command` spawn-and-wait of `true`
//! and of `sh -c true` (the shell the executor starts).
//!
//! `cargo bench -p ananta-benches --bench exec`; the ratios are the executor's times divided
//! by `bare/true`. The sandboxed case needs a kernel and privileges for a strict sandbox
//! (Landlock, seccomp, cgroups, mount namespaces); without them it prints NOT RUN.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::Duration;

use ananta_core::Executor;
use ananta_core::exec::ExecRequest;
use ananta_exec::{KernelSupport, SandboxConfig, ShellExecutor};
use criterion::{Criterion, criterion_group, criterion_main};

fn exec(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("exec_overhead");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));

    group.bench_function("bare/true", |b| {
        b.to_async(&rt).iter(|| async {
            let status = tokio::process::Command::new("true")
                .current_dir(dir.path())
                .status()
                .await
                .unwrap();
            assert!(status.success());
        })
    });
    group.bench_function("bare/sh_c_true", |b| {
        b.to_async(&rt).iter(|| async {
            let status = tokio::process::Command::new("/bin/sh")
                .args(["-c", "true"])
                .current_dir(dir.path())
                .status()
                .await
                .unwrap();
            assert!(status.success());
        })
    });

    let plain = ShellExecutor::new(dir.path());
    group.bench_function("shell_executor/true", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = plain.run(ExecRequest::new("true"), None).await.unwrap();
            assert!(outcome.success());
        })
    });

    let config = SandboxConfig::new(dir.path());
    match config.plan(KernelSupport::current()) {
        Ok(report) => {
            eprintln!("sandbox: {report}");
            let sandboxed = ShellExecutor::new(dir.path()).sandbox(config);
            group.bench_function("shell_executor_sandboxed/true", |b| {
                b.to_async(&rt).iter(|| async {
                    let outcome = sandboxed.run(ExecRequest::new("true"), None).await.unwrap();
                    assert!(outcome.success(), "{outcome:?}");
                })
            });
        }
        Err(e) => eprintln!("shell_executor_sandboxed NOT RUN: {e}"),
    }
    group.finish();
}

criterion_group!(benches, exec);
criterion_main!(benches);
