//! The step loop's costs: answer parsing, one Hub step (propose + execute) with no I/O, one
//! step with a real shell command, and the ShellExecutor alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use ananta_benches::NoopExecutor;
use ananta_core::exec::ExecRequest;
use ananta_core::parse::parse_answer;
use ananta_core::{AgentId, Executor, Hub, NewTask, Worker};
use ananta_exec::ShellExecutor;
use ananta_llm::ScriptedProvider;
use ananta_store::MemoryStore;
use criterion::{Criterion, criterion_group, criterion_main};

const ANSWERS: [(&str, &str); 5] = [
    (
        "json",
        r#"{"reason": "See what is in the repo", "command": "ls -la"}"#,
    ),
    (
        "json_fence_prose",
        "Sure, next step:\n```json\n{\"reason\": \"run the tests\", \"command\": \"cargo test\"}\n```\nDone.",
    ),
    (
        "lines",
        "REASON: Need to see the manifest\nCOMMAND: cat Cargo.toml",
    ),
    (
        "shell_fence",
        "Let's check the failing test.\n\n```bash\ncargo test -p core 2>&1 | tail -n 20\n```\n",
    ),
    (
        "refusal",
        "I'm sorry, but I can't help with deleting system files.",
    ),
];

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_answer");
    for (name, answer) in ANSWERS {
        group.bench_function(name, |b| b.iter(|| parse_answer(black_box(answer))));
    }
    group.finish();
}

async fn hub_with(executor: Arc<dyn Executor>) -> Hub {
    let llm = ScriptedProvider::new([r#"{"reason": "step", "command": "true"}"#]).repeat_last();
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let worker = Worker::builder(AgentId::new("bench").unwrap())
        .llm(Arc::new(llm))
        .executor(executor)
        .history_steps(5)
        .build()
        .unwrap();
    hub.register_agent(worker.card(), Arc::new(worker.clone()))
        .await
        .unwrap();
    hub
}

fn hub_step(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut group = c.benchmark_group("hub_step");
    group.measurement_time(Duration::from_secs(5));

    // A fresh task per batch keeps the step history (and so the prompt) from growing unbounded.
    let executors: [(&str, Arc<dyn Executor>); 2] = [
        ("propose_execute_noop_executor", Arc::new(NoopExecutor)),
        (
            "propose_execute_shell_true",
            Arc::new(ShellExecutor::new(&dir)),
        ),
    ];
    for (name, executor) in executors {
        let hub = rt.block_on(hub_with(executor));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    rt.block_on(async {
                        let t = hub.create_task(NewTask::new("bench")).await.unwrap();
                        hub.assign(t.id, &AgentId::new("bench").unwrap())
                            .await
                            .unwrap();
                        t.id
                    })
                },
                |id| {
                    rt.block_on(async {
                        hub.propose(id).await.unwrap();
                        hub.execute(id, None).await.unwrap();
                    })
                },
                criterion::BatchSize::SmallInput,
            );
        });
    }
    group.finish();

    let shell = ShellExecutor::new(&dir);
    let mut group = c.benchmark_group("shell_executor");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("echo", |b| {
        b.iter(|| {
            rt.block_on(shell.run(ExecRequest::new("echo hi"), None))
                .unwrap()
        })
    });
    group.bench_function("10MB_output_capped_1MiB", |b| {
        b.iter(|| {
            rt.block_on(shell.run(ExecRequest::new("head -c 10000000 /dev/zero"), None))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, parsing, hub_step);
criterion_main!(benches);
