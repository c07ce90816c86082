//! The agent suite against a real model: `cargo run -p ananta-examples --example agent_suite --
//! --url http://127.0.0.1:8080/v1`.
//!
//! Options: `--protocols text,structured,tools` (default all three), `--tasks N` (the first N
//! tasks; default all), `--max-steps N` (default 8), `--max-tokens N` (default 256),
//! `--timeout-secs N` per task (default 900; longer counts as a hang), `--no-sandbox`,
//! `--model NAME`. The URL may also come from `ANANTA_LLM_URL`.
//!
//! Prints a line per run and the report table. Exits 1 when a run crashed or hung, or said
//! "done" while its check fails; how many tasks are solved is reported, not judged.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use ananta_examples::suite::{SuiteOptions, SuiteProtocol, TASKS, report, run_suite};

fn main() -> anyhow::Result<()> {
    let mut options = SuiteOptions {
        url: std::env::var("ANANTA_LLM_URL").unwrap_or_default(),
        model: None,
        protocols: vec![
            SuiteProtocol::Text,
            SuiteProtocol::Structured,
            SuiteProtocol::Tools,
        ],
        tasks: TASKS.to_vec(),
        max_steps: 8,
        max_tokens: 256,
        task_timeout: Duration::from_secs(900),
        sandbox: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match arg.as_str() {
            "--url" => options.url = value("--url")?,
            "--model" => options.model = Some(value("--model")?),
            "--protocols" => {
                options.protocols = value("--protocols")?
                    .split(',')
                    .map(|p| {
                        SuiteProtocol::parse(p.trim())
                            .ok_or_else(|| anyhow::anyhow!("unknown protocol {p:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--tasks" => {
                let n: usize = value("--tasks")?.parse()?;
                options.tasks.truncate(n.max(1));
            }
            "--max-steps" => options.max_steps = value("--max-steps")?.parse()?,
            "--max-tokens" => options.max_tokens = value("--max-tokens")?.parse()?,
            "--timeout-secs" => {
                options.task_timeout = Duration::from_secs(value("--timeout-secs")?.parse()?);
            }
            "--no-sandbox" => options.sandbox = false,
            other => anyhow::bail!("unknown option {other:?} (see the example's docs)"),
        }
    }
    anyhow::ensure!(
        !options.url.trim().is_empty(),
        "give --url (or ANANTA_LLM_URL): an OpenAI-compatible server"
    );
    let model = options
        .model
        .clone()
        .unwrap_or_else(|| "SmolLM2-135M".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "agent suite: {} task(s) x {} protocol(s) against {}",
        options.tasks.len(),
        options.protocols.len(),
        options.url
    );
    let results = runtime.block_on(run_suite(&options, |r| {
        println!(
            "{:<11} {:<14} {:<18} solved={:<5} steps={} fed_back={}",
            r.protocol.name(),
            r.task,
            r.outcome.chars().take(60).collect::<String>(),
            r.solved,
            r.steps,
            r.fed_back
        );
    }));
    println!("\n{}", report(&model, &results));
    let broken: Vec<_> = results
        .iter()
        .filter(|r| !r.completed || r.false_done)
        .collect();
    if !broken.is_empty() {
        for r in &broken {
            eprintln!(
                "FAILED: {} ({}): {}{}",
                r.task,
                r.protocol.name(),
                r.outcome,
                if r.false_done {
                    " — said done, check fails"
                } else {
                    ""
                }
            );
        }
        std::process::exit(1);
    }
    Ok(())
}
