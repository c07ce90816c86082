//! Tests of [`MemoryStore`], of the conformance suites themselves, and of `ananta_core`'s
//! [`InMemoryRegistry`] against the registry suite.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use ananta_core::agent::{AgentCard, AgentInfo, AgentStatus};
use ananta_core::error::{RegistryError, StoreError};
use ananta_core::ids::{AgentId, TaskId, TemplateId};
use ananta_core::log::{Direction, LogEntry, LogQuery};
use ananta_core::registry::{AgentMatch, AgentRegistry, InMemoryRegistry, rank_agents};
use ananta_core::store::{Claim, TaskStore};
use ananta_core::task::{NewTask, StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate};
use ananta_core::template::{Template, TemplateUpdate};
use async_trait::async_trait;
use futures::FutureExt;

use crate::MemoryStore;
use crate::conformance::{self, CASES};
use crate::registry_conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_conformance() {
    conformance::run_all(|| async { MemoryStore::new() }).await;
}

#[tokio::test]
async fn conformance_also_passes_on_a_current_thread_runtime() {
    conformance::run_all(|| async { MemoryStore::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_many_rounds() {
    for _ in 0..5 {
        conformance::concurrent_claims(std::sync::Arc::new(MemoryStore::new())).await;
    }
}

#[tokio::test]
async fn clones_share_state() {
    let store = MemoryStore::new();
    let other = store.clone();
    let task = store
        .create_task(NewTask::new("shared").into_task().unwrap())
        .await
        .unwrap();
    assert_eq!(other.get_task(task.id).await.unwrap().title, "shared");
}

#[tokio::test]
async fn log_seq_starts_at_one() {
    let store = MemoryStore::new();
    for expected in 1..=3 {
        let entry = LogEntry::new(Direction::Out, "status", serde_json::json!(expected));
        assert_eq!(store.append_log(entry).await.unwrap().seq, expected);
    }
}

#[tokio::test]
async fn poisoned_lock_is_recovered() {
    let store = MemoryStore::new();
    let task = store
        .create_task(NewTask::new("survivor").into_task().unwrap())
        .await
        .unwrap();
    let poisoner = store.clone();
    let joined = std::thread::spawn(move || {
        let _guard = poisoner.state.lock();
        panic!("poison the lock on purpose");
    })
    .join();
    assert!(joined.is_err(), "the thread panicked");
    assert!(store.state.is_poisoned());
    assert_eq!(store.get_task(task.id).await.unwrap().title, "survivor");
    let updated = store
        .update_task(task.id, TaskUpdate::status(TaskStatus::Todo), Some(1))
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
}

/// A store with one deliberate bug, to check the suite notices it.
struct Broken {
    inner: MemoryStore,
    bug: Bug,
}

#[derive(Clone, Copy, PartialEq)]
enum Bug {
    IgnoresExpectedVersion,
    LogLimitKeepsOldest,
    ReleaseIgnoresToken,
    ListIgnoresLimit,
    /// Reads the first claimable task, then updates it without any guard (check-then-act).
    RacyClaim,
}

#[async_trait]
impl TaskStore for Broken {
    async fn create_task(&self, task: Task) -> Result<Task, StoreError> {
        self.inner.create_task(task).await
    }
    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, mut filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        if self.bug == Bug::ListIgnoresLimit {
            filter.limit = None;
        }
        self.inner.list_tasks(filter).await
    }
    async fn update_task(
        &self,
        id: TaskId,
        update: TaskUpdate,
        expected_version: Option<u64>,
    ) -> Result<Task, StoreError> {
        let expected = if self.bug == Bug::IgnoresExpectedVersion {
            None
        } else {
            expected_version
        };
        self.inner.update_task(id, update, expected).await
    }
    async fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        self.inner.delete_task(id).await
    }
    async fn append_step(&self, id: TaskId, step: StepRecord) -> Result<Task, StoreError> {
        self.inner.append_step(id, step).await
    }
    async fn create_template(&self, template: Template) -> Result<Template, StoreError> {
        self.inner.create_template(template).await
    }
    async fn get_template(&self, id: TemplateId) -> Result<Template, StoreError> {
        self.inner.get_template(id).await
    }
    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        self.inner.list_templates().await
    }
    async fn update_template(
        &self,
        id: TemplateId,
        update: TemplateUpdate,
    ) -> Result<Template, StoreError> {
        self.inner.update_template(id, update).await
    }
    async fn delete_template(&self, id: TemplateId) -> Result<(), StoreError> {
        self.inner.delete_template(id).await
    }
    async fn append_log(&self, entry: LogEntry) -> Result<LogEntry, StoreError> {
        self.inner.append_log(entry).await
    }
    async fn logs(&self, query: LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        if self.bug == Bug::LogLimitKeepsOldest {
            let limit = query.limit.unwrap_or(usize::MAX);
            let all = self
                .inner
                .logs(LogQuery {
                    limit: None,
                    ..query
                })
                .await?;
            return Ok(all.into_iter().take(limit).collect());
        }
        self.inner.logs(query).await
    }
    async fn claim(&self, agent: AgentId, lease: Duration) -> Result<Option<Claim>, StoreError> {
        if self.bug == Bug::RacyClaim {
            let filter = TaskFilter {
                statuses: vec![TaskStatus::Todo],
                limit: Some(1),
                ..TaskFilter::default()
            };
            let Some(task) = self.inner.list_tasks(filter).await?.pop() else {
                return Ok(None);
            };
            tokio::time::sleep(Duration::from_millis(1)).await;
            let update = TaskUpdate {
                status: Some(TaskStatus::InProgress),
                assigned_agent: Some(Some(agent.clone())),
                ..TaskUpdate::default()
            };
            let task = self.inner.update_task(task.id, update, None).await?;
            let expires_at =
                chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
            return Ok(Some(Claim {
                task_id: task.id,
                agent,
                token: task.version,
                expires_at,
            }));
        }
        self.inner.claim(agent, lease).await
    }
    async fn renew(&self, claim: Claim, lease: Duration) -> Result<Claim, StoreError> {
        self.inner.renew(claim, lease).await
    }
    async fn release(&self, mut claim: Claim, status: TaskStatus) -> Result<Task, StoreError> {
        if self.bug == Bug::ReleaseIgnoresToken
            && let Some(lease) = self.inner.get_task(claim.task_id).await?.lease
        {
            claim.token = lease.token;
            claim.agent = lease.agent;
        }
        self.inner.release(claim, status).await
    }
}

/// Runs the whole suite on a store with `bug` and returns the failure message.
async fn failure_of(bug: Bug) -> String {
    let run = conformance::run_all(move || async move {
        Broken {
            inner: MemoryStore::new(),
            bug,
        }
    });
    match AssertUnwindSafe(run).catch_unwind().await {
        Ok(()) => panic!("the suite passed a store that {}", bug_name(bug)),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "(no message)".to_string()),
    }
}

fn bug_name(bug: Bug) -> &'static str {
    match bug {
        Bug::IgnoresExpectedVersion => "ignores expected versions",
        Bug::LogLimitKeepsOldest => "keeps the oldest log entries on limit",
        Bug::ReleaseIgnoresToken => "releases with stale tokens",
        Bug::ListIgnoresLimit => "ignores the list limit",
        Bug::RacyClaim => "claims with check-then-act",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suite_names_the_cases_a_broken_store_fails() {
    let expectations = [
        (Bug::IgnoresExpectedVersion, &["optimistic_versioning"][..]),
        (
            Bug::LogLimitKeepsOldest,
            &["log_order_and_filters", "log_paging"][..],
        ),
        (
            Bug::ReleaseIgnoresToken,
            &["stale_token_rejected_after_takeover"][..],
        ),
        (Bug::ListIgnoresLimit, &["list_filters"][..]),
        (Bug::RacyClaim, &["concurrent_claims"][..]),
    ];
    for (bug, cases) in expectations {
        let message = failure_of(bug).await;
        for case in cases {
            assert!(
                message.contains(&format!("- {case}: ")),
                "a store that {} fails {case}:\n{message}",
                bug_name(bug)
            );
        }
        let failed = message.lines().filter(|l| l.starts_with("- ")).count();
        assert!(failed < CASES.len(), "only some cases fail:\n{message}");
    }
}

#[tokio::test]
async fn run_cases_runs_a_selection() {
    let selection: Vec<_> = CASES
        .iter()
        .copied()
        .filter(|c| c.name.starts_with("log_"))
        .collect();
    assert_eq!(selection.len(), 2);
    conformance::run_cases(&selection, || async { MemoryStore::new() }).await;
}

// ---- the registry suite ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_registry_passes_registry_conformance() {
    registry_conformance::run_all(|| async { InMemoryRegistry::new() }).await;
}

#[tokio::test]
async fn registry_conformance_also_passes_on_a_current_thread_runtime() {
    registry_conformance::run_all(|| async { InMemoryRegistry::new() }).await;
}

/// A registry with one deliberate bug, to check the registry suite notices it. Agents are kept
/// in registration order.
struct BrokenRegistry {
    agents: std::sync::Mutex<Vec<AgentInfo>>,
    bug: RegistryBug,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum RegistryBug {
    /// Bumps the card version on every re-registration, changed card or not.
    AlwaysBumpsVersion,
    /// Lists agents in registration order.
    ListUnsorted,
    /// Moves `last_seen` on a heartbeat but leaves the status.
    HeartbeatKeepsStatus,
    /// Offers offline agents to `best_match`.
    MatchesOffline,
    /// Reads the agent, then writes the new version without holding a lock (check-then-act).
    RacyRegister,
}

impl BrokenRegistry {
    fn new(bug: RegistryBug) -> Self {
        Self {
            agents: std::sync::Mutex::default(),
            bug,
        }
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, Vec<AgentInfo>> {
        self.agents.lock().unwrap()
    }

    fn find(&self, id: &AgentId) -> Option<AgentInfo> {
        self.agents().iter().find(|a| &a.card.name == id).cloned()
    }

    fn put(&self, info: AgentInfo) {
        let mut agents = self.agents();
        match agents.iter_mut().find(|a| a.card.name == info.card.name) {
            Some(slot) => *slot = info,
            None => agents.push(info),
        }
    }

    fn change(
        &self,
        id: AgentId,
        f: impl FnOnce(&mut AgentInfo),
    ) -> Result<AgentInfo, RegistryError> {
        let mut agents = self.agents();
        let info = agents
            .iter_mut()
            .find(|a| a.card.name == id)
            .ok_or(RegistryError::NotFound(id))?;
        f(info);
        Ok(info.clone())
    }
}

#[async_trait]
impl AgentRegistry for BrokenRegistry {
    async fn register(&self, card: AgentCard) -> Result<AgentInfo, RegistryError> {
        card.validate()?;
        let existing = self.find(&card.name);
        if self.bug == RegistryBug::RacyRegister {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut info = AgentInfo::registered(existing.as_ref(), card, chrono::Utc::now());
        if let (RegistryBug::AlwaysBumpsVersion, Some(existing)) = (self.bug, &existing) {
            info.card_version = existing.card_version + 1;
        }
        self.put(info.clone());
        Ok(info)
    }
    async fn deregister(&self, id: AgentId) -> Result<(), RegistryError> {
        let mut agents = self.agents();
        let before = agents.len();
        agents.retain(|a| a.card.name != id);
        if agents.len() == before {
            return Err(RegistryError::NotFound(id));
        }
        Ok(())
    }
    async fn get(&self, id: AgentId) -> Result<AgentInfo, RegistryError> {
        self.find(&id).ok_or(RegistryError::NotFound(id))
    }
    async fn list(&self) -> Result<Vec<AgentInfo>, RegistryError> {
        let mut agents = self.agents().clone();
        if self.bug != RegistryBug::ListUnsorted {
            agents.sort_by(|a, b| a.card.name.cmp(&b.card.name));
        }
        Ok(agents)
    }
    async fn heartbeat(&self, id: AgentId) -> Result<AgentInfo, RegistryError> {
        let keep_status = self.bug == RegistryBug::HeartbeatKeepsStatus;
        self.change(id, |a| {
            a.last_seen = chrono::Utc::now();
            if !keep_status {
                a.status = AgentStatus::Online;
            }
        })
    }
    async fn set_status(
        &self,
        id: AgentId,
        status: AgentStatus,
    ) -> Result<AgentInfo, RegistryError> {
        self.change(id, |a| a.status = status)
    }
    async fn best_match(&self, text: String, k: usize) -> Result<Vec<AgentMatch>, RegistryError> {
        let mut agents = self.list().await?;
        if self.bug == RegistryBug::MatchesOffline {
            for a in &mut agents {
                a.status = AgentStatus::Online;
            }
        }
        rank_agents(&agents, &text, k)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_suite_names_the_cases_a_broken_registry_fails() {
    let expectations = [
        (
            RegistryBug::AlwaysBumpsVersion,
            &["reregister_same_card_keeps_version"][..],
        ),
        (RegistryBug::ListUnsorted, &["register_get_list"][..]),
        (
            RegistryBug::HeartbeatKeepsStatus,
            &["heartbeat_sets_online"][..],
        ),
        (
            RegistryBug::MatchesOffline,
            &["set_status_offline_excludes_from_best_match"][..],
        ),
        (
            RegistryBug::RacyRegister,
            &["concurrent_reregistration"][..],
        ),
    ];
    for (bug, cases) in expectations {
        let run = registry_conformance::run_all(move || async move { BrokenRegistry::new(bug) });
        let message = match AssertUnwindSafe(run).catch_unwind().await {
            Ok(()) => panic!("the registry suite passed a registry with bug {bug:?}"),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "(no message)".to_string()),
        };
        for case in cases {
            assert!(
                message.contains(&format!("- {case}: ")),
                "a registry with bug {bug:?} fails {case}:\n{message}"
            );
        }
        let failed = message.lines().filter(|l| l.starts_with("- ")).count();
        assert!(
            failed < registry_conformance::CASES.len(),
            "only some cases fail:\n{message}"
        );
    }
}

#[tokio::test]
async fn registry_run_cases_runs_a_selection() {
    let selection: Vec<_> = registry_conformance::CASES
        .iter()
        .copied()
        .filter(|c| c.name.starts_with("best_match"))
        .collect();
    assert_eq!(selection.len(), 2);
    registry_conformance::run_cases(&selection, || async { InMemoryRegistry::new() }).await;
}
