//! Quickstart: an in-process Hub and Worker run one task end to end.
//!
//! `cargo run --example quickstart`
//!
//! By default the Worker's LLM is a `ScriptedProvider` — scripted answers, no model is called —
//! so the demo runs anywhere. With `ANANTA_LLM_URL` set to an OpenAI-compatible server's base
//! URL (e.g. `http://127.0.0.1:8080/v1` for llama.cpp, `http://localhost:1234/v1` for LM Studio;
//! `ANANTA_LLM_MODEL` and `OPENAI_API_KEY` are used when set), a real model proposes the
//! commands, with structured output, retries and a small demo guard that only lets harmless
//! programs run. The commands are real: a `ShellExecutor` runs them in a temporary workspace
//! directory that is removed at the end.
//!
//! Steps print as they happen: the command's output line by line while it runs. Set
//! `RUST_LOG=ananta_core=debug` (or `info`, `trace`) for the library's own tracing on stderr.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use ananta_core::TaskStore;
use ananta_core::{
    AgentId, EventKind, Executor, Hub, LlmProvider, LogQuery, NewTask, NewTemplate, Proposed,
    StepLimits, StopReason, TaskStatus, Worker,
};
use ananta_exec::ShellExecutor;
use ananta_llm::{OpenAiProvider, ProviderExt, RetryPolicy, ScriptedProvider};
use ananta_quickstart::DemoGuard;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `RUST_LOG=ananta_core=debug` shows what the library does, on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let workspace = tempfile::tempdir()?;

    // The model's answers, in the shapes real models use: JSON, REASON/COMMAND lines, a fenced
    // shell block, and finally "done".
    let scripted = ScriptedProvider::new([
        r#"{"reason": "Create a notes folder with a first note", "command": "mkdir -p notes && echo 'Ananta was here' > notes/hello.txt"}"#,
        "REASON: Check that the note exists and read it\nCOMMAND: ls notes && cat notes/hello.txt",
        "Let me count the bytes to be sure it is not empty:\n```bash\nwc -c < notes/hello.txt\n```",
        r#"{"reason": "notes/hello.txt exists and holds the note.", "done": true}"#,
    ]);
    let shell = ShellExecutor::new(workspace.path());

    let real_url = std::env::var("ANANTA_LLM_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let (llm, executor, label): (Arc<dyn LlmProvider>, Arc<dyn Executor>, String) = match &real_url
    {
        Some(url) => {
            let mut builder = OpenAiProvider::builder(url);
            if let Ok(model) = std::env::var("ANANTA_LLM_MODEL") {
                builder = builder.model(model);
            }
            if let Ok(key) = std::env::var("OPENAI_API_KEY") {
                builder = builder.api_key(key);
            }
            let provider = builder.build()?.with_retry(RetryPolicy::default());
            (
                Arc::new(provider),
                Arc::new(DemoGuard(shell)),
                format!("OpenAiProvider at {url} (structured output; demo guard on commands)"),
            )
        }
        None => (
            Arc::new(scripted),
            Arc::new(shell),
            "ScriptedProvider (scripted answers for this demo; no model is called)".into(),
        ),
    };

    // The board lives in a SQLite file under the working directory (run the quickstart twice
    // and the second run shows the first run's tasks), or where DATABASE_URL points, e.g.
    // postgres://user@host/db.
    // The agents registry lives in the same database, so the Hub's agents survive a restart
    // like its tasks.
    let (opened, store_label) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let opened = ananta_store::open_url_with_registry(&url).await?;
            let shown = url
                .rsplit_once('@')
                .map_or(url.clone(), |(_, host)| format!("…@{host}"));
            (opened, format!("{shown} (DATABASE_URL)"))
        }
        _ => {
            std::fs::create_dir_all(".ananta")?;
            let opened = ananta_store::open_url_with_registry(".ananta/quickstart.db").await?;
            (opened, "SqliteStore in .ananta/quickstart.db".to_string())
        }
    };
    let store: Arc<dyn TaskStore> = opened.store;
    let earlier = store.list_tasks(Default::default()).await?;
    let hub = Hub::builder()
        .store(store.clone())
        .registry(opened.registry)
        .build()?;
    let worker = Worker::builder(AgentId::new("worker-1")?)
        .llm(llm)
        .executor(executor)
        .specialisation("keeps notes in plain text files")
        .structured_output(real_url.is_some())
        .temperature(0.0)
        .max_tokens(256)
        .build()?;
    let info = hub.register_worker(&worker).await?;

    println!("Ananta quickstart");
    println!("  LLM:       {label}");
    println!(
        "  executor:  ShellExecutor in {}",
        workspace.path().display()
    );
    println!("  store:     {store_label}");
    println!(
        "  agent:     {} (registered {}, card version {})",
        info.card.name,
        info.registered_at.format("%Y-%m-%d %H:%M:%S UTC"),
        info.card_version
    );
    if earlier.is_empty() {
        println!("  (an empty board: this is the first run here)");
    } else {
        println!("  tasks from earlier runs ({}):", earlier.len());
        for t in earlier.iter().rev().take(5) {
            println!("    {} {:<11} {}", t.id, t.status.to_string(), t.title);
        }
    }
    println!();

    // Every step is published as an event; they are printed as they happen.
    let mut events = hub.subscribe();

    // Templates have unique names, and the board keeps them between runs.
    let template = match hub
        .list_templates()
        .await?
        .into_iter()
        .find(|t| t.name == "notes")
    {
        Some(existing) => existing,
        None => {
            hub.create_template(NewTemplate::new(
                "notes",
                "{{title}}\n\nDetails: {{description}}\nWork in the current directory.",
            ))
            .await?
        }
    };
    let task = hub
        .create_task(
            NewTask::new("Write a first note")
                .description("Create notes/hello.txt with a short line of text, then check it.")
                .template(template.id)
                // The task is done only when this passes, whatever the model says.
                .check("test -s notes/hello.txt"),
        )
        .await?;
    println!("task {} created: {}", task.id, task.title);
    hub.assign(task.id, worker.name()).await?;
    println!("assigned to {}\n", worker.name());

    // The run happens in its own task; this one prints its events as they arrive.
    let run = tokio::spawn({
        let hub = hub.clone();
        async move { hub.run(task.id, &StepLimits::steps(8)).await }
    });
    tokio::pin!(run);
    let result = loop {
        tokio::select! {
            event = events.recv() => {
                if let Ok(event) = event {
                    print_event(task.id, &event.kind);
                }
            }
            result = &mut run => {
                // Everything the run published is queued already.
                while let Ok(event) = events.try_recv() {
                    print_event(task.id, &event.kind);
                }
                break result?;
            }
        }
    };
    let task = hub.get_task(task.id).await?;

    println!();
    let tokens = match &result {
        Ok(report) => {
            match &report.stop {
                StopReason::Done { summary } => {
                    println!("stopped: done and verified by the task's check ({summary})")
                }
                StopReason::Unverified { summary } => {
                    println!(
                        "stopped: the model says it is finished, but no check verified it ({summary})"
                    )
                }
                other => println!("stopped: {other:?}"),
            }
            report.usage.total()
        }
        // A real model can fail a run (a refused command, an answer that is no command);
        // the task and its log keep what happened. The scripted run never does.
        Err(e) if real_url.is_some() => {
            println!("stopped with an error: {e}");
            e.report.usage.total()
        }
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    println!(
        "final status: {} after {} step(s), {tokens} tokens{}",
        task.status,
        task.steps.len(),
        if real_url.is_some() {
            ""
        } else {
            " (estimated by the scripted provider)"
        }
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
    match std::fs::read_to_string(workspace.path().join("notes/hello.txt")) {
        Ok(note) => println!("\nnotes/hello.txt: {}", note.trim()),
        // Only a real model may not get there; the scripted run always writes the note.
        Err(e) if real_url.is_some() => println!("\nnotes/hello.txt was not written ({e})"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// One line (or a few) per event of the task, as it happens.
fn print_event(task: ananta_core::TaskId, kind: &EventKind) {
    if kind.task_id() != Some(task) {
        return;
    }
    match kind {
        EventKind::TaskUpdated { task } if task.status == TaskStatus::Proposing => {
            println!("… the model is thinking");
        }
        EventKind::CommandOutput { stream, text, .. } => {
            let mark = match stream {
                ananta_core::exec::OutputStream::Stdout => '|',
                _ => '!',
            };
            for line in text.lines() {
                println!("  {mark} {line}");
            }
        }
        EventKind::StepProposed { proposed, .. } => match proposed.as_ref() {
            Proposed::Command(p) => {
                println!("proposal: {}", shorten(&p.reason, 160));
                println!("  $ {}", shorten(&p.command, 300).replace('\n', "\n    "));
            }
            Proposed::Done(c) => {
                println!(
                    "the model says it is finished: {}",
                    shorten(&c.summary, 160)
                );
            }
        },
        EventKind::StepExecuted { step, .. } => {
            // Its output was printed live, as it came.
            let o = &step.outcome;
            match o.exit_code {
                Some(code) => println!("  exit {code} in {} ms", o.duration_ms),
                None => println!("  killed (signal {:?}) in {} ms", o.signal, o.duration_ms),
            }
        }
        EventKind::StepFeedback { feedback, .. } => {
            println!(
                "fed back ({}): {}",
                feedback.kind.as_str(),
                shorten(&feedback.message, 200)
            );
        }
        EventKind::TaskVerified { verification, .. } => {
            for check in &verification.checks {
                let verdict = if check.passed { "passed" } else { "failed" };
                println!("check `{}`: {verdict}", check.command);
            }
        }
        _ => {}
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}
