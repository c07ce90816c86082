//! Quickstart: an in-process Hub and Worker run one task end to end.
//!
//! `cargo run --example quickstart`
//!
//! The Worker's LLM is a `ScriptedProvider` — scripted answers, no model is called — so the
//! demo runs anywhere. The commands are real: a `ShellExecutor` runs them in a temporary
//! workspace directory that is removed at the end.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use ananta_core::{
    AgentId, EventKind, Hub, LogQuery, NewTask, NewTemplate, Proposed, RunLimits, StopReason,
    Worker,
};
use ananta_exec::ShellExecutor;
use ananta_llm::ScriptedProvider;
use ananta_store::MemoryStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;

    // The model's answers, in the shapes real models use: JSON, REASON/COMMAND lines, a fenced
    // shell block, and finally "done".
    let llm = ScriptedProvider::new([
        r#"{"reason": "Create a notes folder with a first note", "command": "mkdir -p notes && echo 'Ananta was here' > notes/hello.txt"}"#,
        "REASON: Check that the note exists and read it\nCOMMAND: ls notes && cat notes/hello.txt",
        "Let me count the bytes to be sure it is not empty:\n```bash\nwc -c < notes/hello.txt\n```",
        r#"{"reason": "notes/hello.txt exists and holds the note.", "done": true}"#,
    ]);

    let hub = Hub::builder().store(Arc::new(MemoryStore::new())).build()?;
    let worker = Worker::builder(AgentId::new("worker-1")?)
        .llm(Arc::new(llm))
        .executor(Arc::new(ShellExecutor::new(workspace.path())))
        .specialisation("keeps notes in plain text files")
        .build()?;
    hub.register_agent(worker.card(), Arc::new(worker.clone()))
        .await?;

    println!("Ananta quickstart");
    println!("  LLM:       ScriptedProvider (scripted answers for this demo; no model is called)");
    println!(
        "  executor:  ShellExecutor in {}",
        workspace.path().display()
    );
    println!();

    // Every step is published as an event; we print them after the run.
    let mut events = hub.subscribe();

    let template = hub
        .create_template(NewTemplate::new(
            "notes",
            "{{title}}\n\nDetails: {{description}}\nWork in the current directory.",
        ))
        .await?;
    let task = hub
        .create_task(
            NewTask::new("Write a first note")
                .description("Create notes/hello.txt with a short line of text, then check it.")
                .template(template.id),
        )
        .await?;
    println!("task {} created: {}", task.id, task.title);
    hub.assign(task.id, worker.name().clone()).await?;
    println!("assigned to {}\n", worker.name());

    let report = hub.run(task.id, &RunLimits::steps(5)).await?;
    while let Ok(event) = events.try_recv() {
        match event.kind {
            EventKind::StepProposed { proposed, .. } => match *proposed {
                Proposed::Command(p) => {
                    println!("proposal: {}", p.reason);
                    println!("  $ {}", p.command.replace('\n', "\n    "));
                }
                Proposed::Done(c) => println!("done:     {}", c.summary),
            },
            EventKind::StepExecuted { step, .. } => {
                let o = &step.outcome;
                match o.exit_code {
                    Some(code) => println!("  exit {code} in {} ms", o.duration_ms),
                    None => println!("  killed (signal {:?}) in {} ms", o.signal, o.duration_ms),
                }
                for line in o.stdout.lines() {
                    println!("  | {line}");
                }
                for line in o.stderr.lines() {
                    println!("  ! {line}");
                }
            }
            _ => {}
        }
    }
    let task = hub.get_task(task.id).await?;

    println!();
    match &report.stop {
        StopReason::Done { summary } => println!("stopped: the model says done ({summary})"),
        other => println!("stopped: {other:?}"),
    }
    println!(
        "final status: {} after {} step(s), {} tokens (estimated by the scripted provider)",
        task.status,
        task.steps.len(),
        report.usage.total()
    );
    println!("\ntask log:");
    for entry in hub.logs(LogQuery::task(task.id)).await? {
        println!(
            "  #{:<3} step {:<2} {:<4} {:<9} {}",
            entry.seq,
            entry.step.map(|s| s.to_string()).unwrap_or_default(),
            format!("{:?}", entry.direction).to_lowercase(),
            entry.kind,
            shorten(&entry.payload.to_string(), 90)
        );
    }
    let note = std::fs::read_to_string(workspace.path().join("notes/hello.txt"))?;
    println!("\nnotes/hello.txt: {}", note.trim());
    Ok(())
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}
