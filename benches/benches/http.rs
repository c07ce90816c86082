//! HTTP throughput and latency of the hub's router, next to a bare axum handler returning the
//! same JSON (the ceiling), measured from this process against a server in its own process
//! (`http-bench-server`).
//!
//! - `http/{hub,bare}/get_task`: `GET /tasks/{id}` (the hub reads the task from a
//!   `MemoryStore`, checks the bearer token, and runs its whole middleware stack).
//! - `http/{hub,bare}/create_task`: `POST /tasks` with a small JSON body.
//!
//! Each iteration is one request; 32 requests are in flight at once (32 client tasks, HTTP/1.1
//! keep-alive), and every sample sends at least 2,048 requests so the ramp-up of the client
//! tasks does not count. Throughput is in requests/s; p50/p99 latencies of a separate run of
//! 20,000 requests per case are printed with the ratio hub/bare.
//!
//! On a small machine the client and the server compete for the same cores; with
//! `ANANTA_BENCH_SERVER_CPUS` (a `taskset` CPU list) the server runs on those CPUs only, so run
//! the bench itself on the others to keep them apart:
//!
//! `ANANTA_BENCH_SERVER_CPUS=1 taskset -c 0 cargo bench -p ananta-benches --bench http`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CONCURRENCY: u64 = 32;
const TOKEN: &str = "bench-token";

struct Target {
    base: String,
    task: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Get,
    Create,
}

async fn one(client: &reqwest::Client, target: &Target, kind: Kind) {
    let response = match kind {
        Kind::Get => client
            .get(format!("{}/tasks/{}", target.base, target.task))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
        Kind::Create => client
            .post(format!("{}/tasks", target.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(r#"{"title": "created by the bench", "tags": ["bench"]}"#)
            .send()
            .await
            .unwrap(),
    };
    assert!(response.status().is_success(), "{}", response.status());
    let _ = response.bytes().await.unwrap();
}

/// `total` requests over `CONCURRENCY` client tasks; returns the latencies.
async fn run(
    client: &reqwest::Client,
    target: &Arc<Target>,
    kind: Kind,
    total: u64,
) -> Vec<Duration> {
    let mut handles = Vec::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        let target = target.clone();
        let n = total / CONCURRENCY + u64::from(worker < total % CONCURRENCY);
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let start = Instant::now();
                one(&client, &target, kind).await;
                latencies.push(start.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

/// CPU time (user + system) the server process has used so far, from `/proc` (Linux).
fn server_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn bench(c: &mut Criterion) {
    let binary = env!("CARGO_BIN_EXE_http-bench-server");
    let mut command = match std::env::var("ANANTA_BENCH_SERVER_CPUS") {
        Ok(cpus) if !cpus.trim().is_empty() => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus.trim(), binary]);
            c
        }
        _ => Command::new(binary),
    };
    let mut server = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    let (hub, bare, task) = (parts[1], parts[3], parts[5]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    ananta_core::tls::install_default_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY as usize)
        .build()
        .unwrap();
    let targets = [
        (
            "hub",
            Arc::new(Target {
                base: hub.into(),
                task: task.into(),
            }),
        ),
        (
            "bare",
            Arc::new(Target {
                base: bare.into(),
                task: task.into(),
            }),
        ),
    ];
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));
    for (kind, kind_name) in [(Kind::Get, "get_task"), (Kind::Create, "create_task")] {
        for (name, target) in &targets {
            // Warm the connection pool.
            rt.block_on(run(&client, target, kind, CONCURRENCY * 4));
            group.bench_function(format!("{name}/{kind_name}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let n = iters.max(2_048);
                        let start = Instant::now();
                        run(&client, target, kind, n).await;
                        start.elapsed().mul_f64(iters as f64 / n as f64)
                    })
                })
            });
        }
    }
    group.finish();

    for (kind, kind_name) in [
        (Kind::Get, "GET /tasks/{id}"),
        (Kind::Create, "POST /tasks"),
    ] {
        let mut rows = Vec::new();
        for (name, target) in &targets {
            const N: u64 = 50_000;
            let cpu_before = server_cpu(server.id());
            let start = Instant::now();
            let mut latencies = rt.block_on(run(&client, target, kind, N));
            let elapsed = start.elapsed();
            let cpu = cpu_before
                .zip(server_cpu(server.id()))
                .map(|(a, b)| b.saturating_sub(a) / N as u32);
            latencies.sort();
            let rps = latencies.len() as f64 / elapsed.as_secs_f64();
            rows.push((
                *name,
                rps,
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99),
                cpu,
            ));
        }
        for (name, rps, p50, p99, cpu) in &rows {
            eprintln!(
                "{kind_name} {name}: {rps:.0} req/s, p50 {p50:?}, p99 {p99:?} ({CONCURRENCY} in flight), server CPU {cpu:?} per request"
            );
        }
        let cpu_ratio = match (rows[0].4, rows[1].4) {
            (Some(a), Some(b)) if !b.is_zero() => {
                format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
            }
            _ => "n/a".into(),
        };
        eprintln!(
            "{kind_name} hub/bare: throughput {:.2}, p99 {:.2}, server CPU per request {cpu_ratio}",
            rows[0].1 / rows[1].1,
            rows[0].3.as_secs_f64() / rows[1].3.as_secs_f64()
        );
    }
    drop(server.stdin.take());
    let _ = server.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);
