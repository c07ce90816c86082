use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::decompose::PlannedTask;

fn task(id: &str, deps: &[&str]) -> PlannedTask {
    PlannedTask {
        id: id.into(),
        description: format!("do {id}"),
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
        priority: None,
        agent_hint: None,
    }
}

fn plan(tasks: Vec<PlannedTask>) -> Plan {
    Plan {
        reasoning: String::new(),
        tasks,
    }
}

/// Records the tokio task it runs on.
struct WhereAmI(Mutex<Vec<Option<tokio::task::Id>>>);

#[async_trait]
impl NodeAgent for WhereAmI {
    async fn run(&self, input: NodeInput, _: CancellationToken) -> Result<NodeOutput, AgentError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tokio::task::try_id());
        Ok(NodeOutput::text(input.task_id))
    }
}

#[tokio::test]
async fn a_one_task_plan_runs_on_the_callers_task() {
    for (tasks, inline) in [
        (vec![task("only", &[])], true),
        (vec![task("a", &[]), task("b", &[])], false),
    ] {
        let probe = Arc::new(WhereAmI(Mutex::default()));
        let mut pipeline = Pipeline::new(PipelineOptions::default());
        for t in &tasks {
            pipeline.assign(
                &t.id,
                AgentId::new("probe").unwrap_or_else(|e| panic!("{e}")),
                1.0,
                probe.clone(),
            );
        }
        let plan = plan(tasks);
        let (caller, outcome) =
            tokio::spawn(async move { (tokio::task::id(), pipeline.run(&plan).await) })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(outcome.is_ok());
        let seen = probe.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(!seen.is_empty());
        assert_eq!(
            seen.iter().all(|id| *id == Some(caller)),
            inline,
            "inline: {inline}, caller {caller:?}, agents on {seen:?}"
        );
    }
}

/// Records what it saw; fails or sleeps as told per task.
#[derive(Default)]
struct Probe {
    running: AtomicUsize,
    max_running: AtomicUsize,
    events: Mutex<Vec<String>>,
    inputs: Mutex<HashMap<String, NodeInput>>,
    calls: Mutex<HashMap<String, u32>>,
    /// task → failures before success (transient), or u32::MAX for a permanent one.
    fail: HashMap<String, u32>,
    slow: HashMap<String, Duration>,
    cancelled: AtomicUsize,
}

#[async_trait]
impl NodeAgent for Probe {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        let id = input.task_id.clone();
        let call = {
            let mut calls = self.calls.lock().unwrap();
            let c = calls.entry(id.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.events.lock().unwrap().push(format!("start {id}"));
        self.inputs
            .lock()
            .unwrap()
            .insert(id.clone(), input.clone());
        let wait = self
            .slow
            .get(&id)
            .copied()
            .unwrap_or(Duration::from_millis(20));
        let result = tokio::select! {
            () = cancel.cancelled() => {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                Err(AgentError::Cancelled)
            }
            () = tokio::time::sleep(wait) => {
                match self.fail.get(&id) {
                    Some(&u32::MAX) => Err(AgentError::Rejected { status: 400, message: format!("{id} is broken") }),
                    Some(&n) if call <= n => Err(AgentError::Unreachable("flaky".into())),
                    _ => Ok(NodeOutput { text: format!("out:{id}"), usage: Some(TokenUsage { prompt_tokens: 3, completion_tokens: 2 }) }),
                }
            }
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.events.lock().unwrap().push(format!("end {id}"));
        result
    }
}

fn pipeline(probe: &Arc<Probe>, plan: &Plan, options: PipelineOptions) -> Pipeline {
    let mut p = Pipeline::new(options);
    for t in &plan.tasks {
        p.assign(&t.id, AgentId::new("probe").unwrap(), 0.5, probe.clone());
    }
    p
}

#[tokio::test]
async fn independent_tasks_overlap_dependants_wait_and_get_context() {
    let diamond = plan(vec![
        task("a", &[]),
        task("b", &[]),
        task("compare", &["a", "b"]),
    ]);
    let probe = Arc::new(Probe::default());
    let outcome = pipeline(&probe, &diamond, PipelineOptions::default())
        .run(&diamond)
        .await
        .unwrap();
    assert_eq!(outcome.output, "out:compare");
    assert_eq!(
        probe.max_running.load(Ordering::SeqCst),
        2,
        "a and b overlap"
    );
    let events = probe.events.lock().unwrap().clone();
    let pos = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(
        pos("start compare") > pos("end a") && pos("start compare") > pos("end b"),
        "{events:?}"
    );
    let context = probe.inputs.lock().unwrap()["compare"].context.clone();
    assert!(
        context.contains("Output of task a:\nout:a") && context.contains("out:b"),
        "{context}"
    );
    assert!(
        outcome
            .trace
            .iter()
            .all(|t| t.status == NodeStatus::Done && t.attempts == 1)
    );
    assert_eq!(outcome.trace[2].tokens.completion_tokens, 2);

    // A parallelism of 1 runs one at a time.
    let probe = Arc::new(Probe::default());
    let options = PipelineOptions {
        parallelism: 1,
        ..PipelineOptions::default()
    };
    pipeline(&probe, &diamond, options)
        .run(&diamond)
        .await
        .unwrap();
    assert_eq!(probe.max_running.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_follow_the_policy() {
    let chain = plan(vec![task("a", &[]), task("b", &["a"])]);
    let probe = Arc::new(Probe {
        fail: HashMap::from([("a".to_string(), 2)]),
        ..Probe::default()
    });
    let options = PipelineOptions {
        backoff: Duration::from_millis(1),
        ..PipelineOptions::default()
    };
    let outcome = pipeline(&probe, &chain, options).run(&chain).await.unwrap();
    assert_eq!(outcome.trace[0].attempts, 3);

    // Fail fast: the broken task cancels its slow sibling.
    let wide = plan(vec![
        task("broken", &[]),
        task("slow", &[]),
        task("after", &["slow"]),
    ]);
    let probe = Arc::new(Probe {
        fail: HashMap::from([("broken".to_string(), u32::MAX)]),
        slow: HashMap::from([("slow".to_string(), Duration::from_secs(30))]),
        ..Probe::default()
    });
    let err = pipeline(&probe, &wide, PipelineOptions::default())
        .run(&wide)
        .await
        .unwrap_err();
    let PipelineError::Failed {
        task: failed,
        partial,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(failed, "broken");
    assert_eq!(
        probe.cancelled.load(Ordering::SeqCst),
        1,
        "the slow sibling saw the cancel"
    );
    assert_eq!(partial.trace[1].status, NodeStatus::Cancelled);
    assert_eq!(partial.trace[2].status, NodeStatus::Skipped);

    // Finish the independent branches: the sibling's branch completes, dependants skip.
    let branches = plan(vec![
        task("broken", &[]),
        task("child", &["broken"]),
        task("other", &[]),
        task("next", &["other"]),
    ]);
    let probe = Arc::new(Probe {
        fail: HashMap::from([("broken".to_string(), u32::MAX)]),
        ..Probe::default()
    });
    let options = PipelineOptions {
        failure: FailurePolicy::FinishIndependent,
        ..PipelineOptions::default()
    };
    let err = pipeline(&probe, &branches, options)
        .run(&branches)
        .await
        .unwrap_err();
    let PipelineError::Failed { partial, .. } = err else {
        panic!("{err:?}")
    };
    let status: Vec<&NodeStatus> = partial.trace.iter().map(|t| &t.status).collect();
    assert!(matches!(status[0], NodeStatus::Failed { .. }));
    assert_eq!(status[1], &NodeStatus::Skipped);
    assert_eq!(
        (status[2], status[3]),
        (&NodeStatus::Done, &NodeStatus::Done)
    );
    assert_eq!(partial.outputs["next"], "out:next");
}

#[tokio::test]
async fn cancellation_reaches_running_agents_and_timeouts_count() {
    let chain = plan(vec![task("long", &[]), task("later", &["long"])]);
    let probe = Arc::new(Probe {
        slow: HashMap::from([("long".to_string(), Duration::from_secs(30))]),
        ..Probe::default()
    });
    let options = PipelineOptions::default();
    let cancel = options.cancel.clone();
    let p = pipeline(&probe, &chain, options);
    let run = tokio::spawn(async move { p.run(&chain).await });
    while !probe
        .events
        .lock()
        .unwrap()
        .contains(&"start long".to_string())
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert!(matches!(err, PipelineError::Cancelled { .. }), "{err:?}");
    assert_eq!(probe.cancelled.load(Ordering::SeqCst), 1);
    assert!(
        !probe
            .events
            .lock()
            .unwrap()
            .contains(&"start later".to_string())
    );

    let one = plan(vec![task("stuck", &[])]);
    let probe = Arc::new(Probe {
        slow: HashMap::from([("stuck".to_string(), Duration::from_secs(30))]),
        ..Probe::default()
    });
    let options = PipelineOptions {
        task_timeout: Some(Duration::from_millis(30)),
        retries: 1,
        backoff: Duration::from_millis(1),
        ..PipelineOptions::default()
    };
    let err = pipeline(&probe, &one, options).run(&one).await.unwrap_err();
    let PipelineError::Failed { error, partial, .. } = err else {
        panic!("{err:?}")
    };
    assert!(error.contains("did not answer within"), "{error}");
    assert_eq!(
        partial.trace[0].attempts, 2,
        "a timeout is transient: retried once"
    );
}

#[tokio::test]
async fn budgets_stop_the_run_cleanly_with_the_partial_trace() {
    let chain = plan(vec![task("a", &[]), task("b", &["a"]), task("c", &["b"])]);
    // Calls: two allowed, the third task is refused.
    let probe = Arc::new(Probe::default());
    let options = PipelineOptions {
        budget: Budget {
            max_calls: Some(2),
            ..Budget::default()
        },
        ..PipelineOptions::default()
    };
    let err = pipeline(&probe, &chain, options)
        .run(&chain)
        .await
        .unwrap_err();
    let PipelineError::BudgetExceeded { limit, partial } = err else {
        panic!("{err:?}")
    };
    assert_eq!(limit, "calls");
    assert_eq!(partial.outputs.len(), 2);
    assert_eq!(partial.trace[2].attempts, 0);
    // Tokens: each task reports 5; a budget of 7 is passed by the second.
    let probe = Arc::new(Probe::default());
    let options = PipelineOptions {
        budget: Budget {
            max_tokens: Some(7),
            ..Budget::default()
        },
        ..PipelineOptions::default()
    };
    let err = pipeline(&probe, &chain, options)
        .run(&chain)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::BudgetExceeded { ref limit, .. } if limit == "tokens"),
        "{err:?}"
    );
    // Time: a slow task is cancelled when the run's time is up.
    let slow = plan(vec![task("slow", &[])]);
    let probe = Arc::new(Probe {
        slow: HashMap::from([("slow".to_string(), Duration::from_secs(30))]),
        ..Probe::default()
    });
    let options = PipelineOptions {
        budget: Budget {
            max_duration: Some(Duration::from_millis(50)),
            ..Budget::default()
        },
        ..PipelineOptions::default()
    };
    let err = pipeline(&probe, &slow, options)
        .run(&slow)
        .await
        .unwrap_err();
    let PipelineError::BudgetExceeded { limit, partial } = err else {
        panic!("{err:?}")
    };
    assert_eq!(limit, "time");
    assert_eq!(partial.trace[0].status, NodeStatus::Cancelled);
    assert_eq!(
        probe.cancelled.load(Ordering::SeqCst),
        1,
        "the agent saw the cancel"
    );
}

#[test]
fn context_is_fitted_with_a_marker_not_dropped() {
    let parts = vec![
        ("a".to_string(), "x".repeat(10_000)),
        ("b".to_string(), "short".to_string()),
    ];
    let fitted = fit_context(&parts, 1_000);
    assert!(fitted.contains("Output of task a:") && fitted.contains("Output of task b:\nshort"));
    assert!(fitted.chars().count() < 1_300, "{}", fitted.chars().count());
    assert!(
        fitted.contains("cut") || fitted.contains("…"),
        "a marker shows the cut"
    );
}

#[tokio::test]
async fn bad_plans_and_missing_agents_are_refused() {
    let cyclic = plan(vec![task("a", &["b"]), task("b", &["a"])]);
    let p = Pipeline::new(PipelineOptions::default());
    assert!(matches!(
        p.run(&cyclic).await,
        Err(PipelineError::InvalidPlan(_))
    ));
    let ok = plan(vec![task("a", &[])]);
    assert!(matches!(
        p.run(&ok).await,
        Err(PipelineError::Unassigned(_))
    ));
}
