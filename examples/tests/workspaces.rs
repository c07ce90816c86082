//! A workspace per task: two tasks of one Worker do not see each other's files, in the sandbox
//! a task cannot write into another's directory, and a worktree task leaves a branch a human
//! can review. Real commands in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ananta_core::llm::{ChatRequest, ChatResponse};
use ananta_core::worker::{Cleanup, Workspaces};
use ananta_core::{AgentId, Hub, NewTask, StepLimits, StopReason, TaskId, TaskStatus, Worker};
use ananta_exec::{SandboxConfig, ShellExecutor};
use ananta_llm::ScriptedProvider;
use ananta_store::MemoryStore;

/// A model that writes a file named after the task, lists the directory, then finishes.
fn file_writer() -> ScriptedProvider {
    ScriptedProvider::from_fn(|request: &ChatRequest| {
        let task = request.messages[1].content.clone();
        let name = if task.contains("alpha") {
            "alpha"
        } else {
            "beta"
        };
        let answer = if request.messages.len() <= 2 {
            format!(
                r#"{{"analysis": "write", "next": {{"run": "sleep 0.3; echo {name} > {name}.txt; ls"}}}}"#
            )
        } else {
            r#"{"analysis": "written", "next": {"finish": "wrote my file"}}"#.to_string()
        };
        Ok(ChatResponse::text(answer))
    })
}

async fn hub_with(worker: &Worker) -> Hub {
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    hub.register_worker(worker).await.unwrap();
    hub
}

async fn assigned(hub: &Hub, new: NewTask) -> TaskId {
    let task = hub.create_task(new).await.unwrap();
    hub.assign(task.id, &AgentId::new("w").unwrap())
        .await
        .unwrap();
    task.id
}

#[tokio::test]
async fn two_tasks_of_one_worker_in_parallel_see_only_their_own_files() {
    let root = tempfile::tempdir().unwrap();
    let worker = Worker::builder(AgentId::new("w").unwrap())
        .llm(Arc::new(file_writer()))
        .executor(Arc::new(
            ShellExecutor::new(root.path()).timeout(Duration::from_secs(20)),
        ))
        .workspaces(Workspaces::per_task(root.path().join("tasks")))
        .build()
        .unwrap();
    let hub = hub_with(&worker).await;
    // Each check passes only when the task's directory holds its own file alone.
    let alpha = assigned(
        &hub,
        NewTask::new("alpha").check("test \"$(ls)\" = alpha.txt"),
    )
    .await;
    let beta = assigned(
        &hub,
        NewTask::new("beta").check("test \"$(ls)\" = beta.txt"),
    )
    .await;
    let limits = StepLimits::steps(4);
    let (a, b) = tokio::join!(hub.run(alpha, &limits), hub.run(beta, &limits));
    for report in [a.unwrap(), b.unwrap()] {
        assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    }
    for (id, name) in [(alpha, "alpha"), (beta, "beta")] {
        let task = hub.get_task(id).await.unwrap();
        assert_eq!(task.status, TaskStatus::Done);
        assert_eq!(task.steps[0].outcome.stdout.trim(), format!("{name}.txt"));
        let dir = worker.workspace_of(id).unwrap();
        assert!(dir.starts_with(root.path().join("tasks")));
        assert!(dir.join(format!("{name}.txt")).is_file());
    }
    assert!(
        !root.path().join("alpha.txt").exists(),
        "nothing lands in the shared root"
    );
}

#[tokio::test]
async fn a_done_workspace_is_removed_when_the_policy_says_so() {
    let root = tempfile::tempdir().unwrap();
    let worker = Worker::builder(AgentId::new("w").unwrap())
        .llm(Arc::new(file_writer()))
        .executor(Arc::new(ShellExecutor::new(root.path())))
        .workspaces(Workspaces::per_task(root.path()).cleanup(Cleanup::RemoveWhenDone))
        .build()
        .unwrap();
    let hub = hub_with(&worker).await;
    let done = assigned(&hub, NewTask::new("alpha").check("test -f alpha.txt")).await;
    let report = hub.run(done, &StepLimits::steps(4)).await.unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert!(
        !worker.workspace_of(done).unwrap().exists(),
        "removed when done"
    );
    // A task for review keeps its files for the human.
    let review = assigned(&hub, NewTask::new("beta")).await;
    hub.run(review, &StepLimits::steps(4)).await.unwrap();
    assert_eq!(
        hub.get_task(review).await.unwrap().status,
        TaskStatus::Review
    );
    assert!(
        worker
            .workspace_of(review)
            .unwrap()
            .join("beta.txt")
            .is_file()
    );
}

#[tokio::test]
async fn a_workspace_outside_the_executor_is_refused() {
    use ananta_core::Executor;
    use ananta_core::exec::ExecRequest;
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let shell = ShellExecutor::new(root.path());
    let e = shell
        .run(
            ExecRequest::new("touch x").workspace(elsewhere.path()),
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
    let e = shell
        .run(ExecRequest::new("touch x").workspace("../"), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
    assert!(!elsewhere.path().join("x").exists());
}

fn sandbox_runs_here(shell: &ShellExecutor) -> bool {
    match shell.sandbox_report() {
        Ok(_) => true,
        Err(err) => {
            assert!(
                std::env::var_os("ANANTA_REQUIRE_SANDBOX").is_none(),
                "ANANTA_REQUIRE_SANDBOX is set but a strict sandbox cannot run here: {err}"
            );
            eprintln!("NOT RUN: strict sandbox unavailable on this machine: {err}");
            false
        }
    }
}

#[tokio::test]
async fn in_the_sandbox_a_task_cannot_write_into_another_tasks_workspace() {
    let root = tempfile::tempdir().unwrap();
    let shell = ShellExecutor::new(root.path())
        .timeout(Duration::from_secs(30))
        .sandbox(SandboxConfig::strict());
    if !sandbox_runs_here(&shell) {
        return;
    }
    let workspaces = Workspaces::per_task(root.path());
    let snoop = ScriptedProvider::new([
        r#"{"analysis": "mine", "next": {"run": "echo mine > own.txt"}}"#,
        r#"{"analysis": "theirs", "next": {"run": "echo x > ../other/intruder.txt"}}"#,
        r#"{"analysis": "done", "next": {"finish": "wrote"}}"#,
    ]);
    let worker = Worker::builder(AgentId::new("w").unwrap())
        .llm(Arc::new(snoop))
        .executor(Arc::new(shell))
        .workspaces(workspaces)
        .build()
        .unwrap();
    std::fs::create_dir_all(root.path().join("other")).unwrap();
    let mut task = NewTask::new("snoop")
        .check("test -f own.txt")
        .into_task()
        .unwrap();
    let report = worker
        .run(&mut task, None, &StepLimits::steps(4))
        .await
        .unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert!(
        worker
            .workspace_of(task.id)
            .unwrap()
            .join("own.txt")
            .is_file()
    );
    assert_ne!(
        task.steps[1].outcome.exit_code,
        Some(0),
        "{:?}",
        task.steps[1]
    );
    assert!(!root.path().join("other/intruder.txt").exists());
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_worktree_task_leaves_a_branch_to_review() {
    let repo = tempfile::tempdir().unwrap();
    let shell = ShellExecutor::new(repo.path()).timeout(Duration::from_secs(30));
    worktree_task(repo.path(), shell).await;
}

#[tokio::test]
async fn a_worktree_task_commits_inside_the_sandbox() {
    let repo = tempfile::tempdir().unwrap();
    let shell = ShellExecutor::new(repo.path())
        .timeout(Duration::from_secs(30))
        .sandbox(SandboxConfig::strict());
    if !sandbox_runs_here(&shell) {
        return;
    }
    worktree_task(repo.path(), shell).await;
}

async fn worktree_task(repo: &Path, shell: ShellExecutor) {
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(repo, &["add", "README"]);
    git(
        repo,
        &[
            "-c",
            "user.email=h@example.org",
            "-c",
            "user.name=h",
            "commit",
            "-qm",
            "init",
        ],
    );
    let model = ScriptedProvider::new([
        r#"{"analysis": "add a note", "next": {"run": "echo note > NOTE && git add NOTE && git -c user.email=a@example.org -c user.name=agent commit -qm 'add a note'"}}"#,
        r#"{"analysis": "committed", "next": {"finish": "the note is committed"}}"#,
    ]);
    let worker = Worker::builder(AgentId::new("w").unwrap())
        .llm(Arc::new(model))
        .executor(Arc::new(shell))
        .workspaces(Workspaces::worktrees(repo).cleanup(Cleanup::RemoveWhenDone))
        .build()
        .unwrap();
    let hub = hub_with(&worker).await;
    let task = assigned(
        &hub,
        NewTask::new("Add a note").check("git log -1 --format=%s | grep -q 'add a note'"),
    )
    .await;
    let report = hub.run(task, &StepLimits::steps(4)).await.unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    let branch = format!("ananta/{}", task.to_string().to_ascii_lowercase());
    let branches = git(repo, &["branch", "--list", "ananta/*"]);
    assert!(branches.contains(&branch), "{branches}");
    let files = git(repo, &["ls-tree", "--name-only", &branch]);
    assert!(files.lines().any(|f| f == "NOTE"), "{files}");
    let main = git(repo, &["ls-tree", "--name-only", "main"]);
    assert!(!main.contains("NOTE"), "main is untouched: {main}");
    assert!(
        !worker.workspace_of(task).unwrap().exists(),
        "the worktree is removed when done, the branch stays"
    );
    let status = git(repo, &["status", "--porcelain"]);
    assert!(
        status.trim().is_empty(),
        "no stray files in the repository: {status}"
    );
}
