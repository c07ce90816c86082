//! Pipeline overhead per node: 1,000-node plans run with agents that answer at once (no
//! latency, no work), so what is measured is the scheduler — readiness, context assembly,
//! spawning, joining, tracing. Three shapes: a chain (each node depends on the previous), a
//! wide fan-out (one root, 998 parallel nodes, one sink), and a layered lattice (25 layers of
//! 40, each node depending on two of the layer before).
//!
//! Reported as time per plan; divide by 1,000 for the time per node. Also: a one-task plan
//! (run inline), and durable runs through the Hub (100-node fan-out on `MemoryStore` and
//! `SqliteStore`: the board bookkeeping per node).
//! `cargo bench -p ananta-benches --bench pipeline`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ananta_core::decompose::{Plan, PlannedTask};
use ananta_core::orchestrate::RunOptions;
use ananta_core::pipeline::{NodeAgent, NodeInput, NodeOutput, Pipeline, PipelineOptions};
use ananta_core::{AgentCard, AgentError, AgentId, CancellationToken, Hub, TaskStore};
use ananta_store::{MemoryStore, SqliteStore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

struct Instant;

#[async_trait::async_trait]
impl NodeAgent for Instant {
    async fn run(&self, input: NodeInput, _: CancellationToken) -> Result<NodeOutput, AgentError> {
        Ok(NodeOutput::text(input.task_id))
    }
}

fn node(id: String, deps: Vec<String>) -> PlannedTask {
    PlannedTask {
        description: format!("node {id}"),
        id,
        dependencies: deps,
        priority: None,
        agent_hint: None,
    }
}

fn chain(n: usize) -> Plan {
    let tasks = (0..n)
        .map(|i| {
            node(
                format!("n{i}"),
                if i == 0 {
                    vec![]
                } else {
                    vec![format!("n{}", i - 1)]
                },
            )
        })
        .collect();
    Plan {
        reasoning: String::new(),
        tasks,
    }
}

fn fan_out(n: usize) -> Plan {
    let mut tasks = vec![node("root".into(), vec![])];
    let middle: Vec<String> = (0..n - 2).map(|i| format!("m{i}")).collect();
    for id in &middle {
        tasks.push(node(id.clone(), vec!["root".into()]));
    }
    tasks.push(node("sink".into(), middle));
    Plan {
        reasoning: String::new(),
        tasks,
    }
}

fn lattice(layers: usize, width: usize) -> Plan {
    let mut tasks = Vec::new();
    for l in 0..layers {
        for w in 0..width {
            let deps = if l == 0 {
                vec![]
            } else {
                vec![
                    format!("l{}w{}", l - 1, w),
                    format!("l{}w{}", l - 1, (w + 1) % width),
                ]
            };
            tasks.push(node(format!("l{l}w{w}"), deps));
        }
    }
    Plan {
        reasoning: String::new(),
        tasks,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("pipeline_1000_nodes");
    group.throughput(Throughput::Elements(1_000));
    group.sample_size(20);
    for (name, plan) in [
        ("chain", chain(1_000)),
        ("fan_out", fan_out(1_000)),
        ("lattice", lattice(25, 40)),
    ] {
        assert_eq!(plan.tasks.len(), 1_000);
        let options = PipelineOptions {
            parallelism: 64,
            ..PipelineOptions::default()
        };
        let mut pipeline = Pipeline::new(options);
        let agent: Arc<dyn NodeAgent> = Arc::new(Instant);
        for t in &plan.tasks {
            pipeline.assign(&t.id, AgentId::new("instant").unwrap(), 1.0, agent.clone());
        }
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(pipeline.run(&plan)).unwrap())
        });
    }
    group.finish();

    // A one-task plan runs on the caller's task (no spawn, no scheduling).
    let mut group = c.benchmark_group("pipeline_one_task");
    let one = chain(1);
    let mut pipeline = Pipeline::new(PipelineOptions::default());
    pipeline.assign(
        "n0",
        AgentId::new("instant").unwrap(),
        1.0,
        Arc::new(Instant),
    );
    group.bench_function("inline", |b| {
        b.iter(|| rt.block_on(pipeline.run(&one)).unwrap())
    });
    group.finish();
}

/// Durable runs through the Hub: the same zero-latency agents, but every run and task is a
/// board task (created, moved to in_progress and done, its output logged) and every node
/// publishes events — the bookkeeping a resumable run costs per node, on `MemoryStore` and on
/// `SqliteStore` (a file; every write a durable commit).
fn durable(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn TaskStore> = Arc::new(
        rt.block_on(SqliteStore::open(dir.path().join("runs.db")))
            .unwrap(),
    );
    let memory: Arc<dyn TaskStore> = Arc::new(MemoryStore::new());
    let mut group = c.benchmark_group("durable_run_100_nodes");
    group.throughput(Throughput::Elements(100));
    group.sample_size(10);
    for (name, store) in [("memory", memory), ("sqlite", sqlite)] {
        let hub = Hub::builder().store(store).build().unwrap();
        rt.block_on(hub.add_node_agent(
            AgentCard::in_process(AgentId::new("instant").unwrap()).description("anything"),
            Arc::new(Instant),
        ))
        .unwrap();
        let plan = fan_out(100);
        let options = RunOptions::default().pipeline(PipelineOptions {
            parallelism: 64,
            ..PipelineOptions::default()
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(hub.run_plan("bench", plan.clone(), options.clone()))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, durable);
criterion_main!(benches);
