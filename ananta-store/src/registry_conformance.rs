//! The conformance suite every [`AgentRegistry`] backend must pass.
//!
//! Each case is a public `async fn(DynRegistry)` that panics when the registry breaks a rule.
//! Cases use the trait only and expect a fresh (empty) registry. The rules checked are those of
//! [`InMemoryRegistry`](ananta_core::registry::InMemoryRegistry), the reference: registration follows [`AgentInfo::registered`] (the card
//! version goes up only when the card changes; `registered_at` is kept), `list` is ordered by
//! name, unknown agents give [`RegistryError::NotFound`], invalid cards
//! [`RegistryError::InvalidCard`], and [`best_match`](AgentRegistry::best_match) ranks exactly
//! like [`rank_agents`]. [`concurrent_registrations`] and [`concurrent_reregistration`] spawn
//! tokio tasks; run them on a multi-thread runtime
//! (`#[tokio::test(flavor = "multi_thread", worker_threads = 4)]`) to really race.
//!
//! Run everything with [`run_all`]; it gives each case a new registry and, when cases fail,
//! panics with the names of the failed cases and their messages. Run a selection with
//! [`run_cases`] and [`CASES`], or call one case directly:
//!
//! ```
//! use std::sync::Arc;
//! use ananta_core::registry::InMemoryRegistry;
//! use ananta_store::registry_conformance;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! // The whole suite, a fresh registry per case:
//! registry_conformance::run_all(|| async { InMemoryRegistry::new() }).await;
//!
//! // One case:
//! registry_conformance::best_match_ranking(Arc::new(InMemoryRegistry::new())).await;
//! # }
//! ```
//!
//! Timestamps are compared with a tolerance of one millisecond, so backends may store them
//! with microsecond precision.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use ananta_core::agent::{AgentCard, AgentEndpoint, AgentInfo, AgentStatus};
use ananta_core::error::RegistryError;
use ananta_core::ids::AgentId;
use ananta_core::registry::{AgentMatch, AgentRegistry, rank_agents};
use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;

use crate::conformance::run_suite;

/// The registry under test, shared so that cases can hand it to spawned tasks.
pub type DynRegistry = Arc<dyn AgentRegistry>;

/// How long cases sleep between two operations whose `last_seen` must differ.
pub const TICK: Duration = Duration::from_millis(5);

/// One conformance case: its name and the function that runs it on a fresh registry.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The case's name (the name of its function in this module).
    pub name: &'static str,
    /// Runs the case; the future panics when the registry fails it.
    pub run: fn(DynRegistry) -> BoxFuture<'static, ()>,
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case of the suite, in the order [`run_all`] runs them.
        pub const CASES: &[Case] = &[
            $(Case { name: stringify!($name), run: |registry| Box::pin($name(registry)) },)*
        ];
    };
}

cases!(
    register_get_list,
    reregister_same_card_keeps_version,
    reregister_changed_card_bumps_version,
    invalid_card_rejected,
    deregister_removes,
    deregister_unknown_not_found,
    heartbeat_sets_online,
    unknown_agent_not_found,
    set_status_offline_excludes_from_best_match,
    best_match_ranking,
    best_match_no_candidate_when_empty,
    concurrent_registrations,
    concurrent_reregistration,
);

/// Runs every case in [`CASES`], each on a new registry from `make_registry`. Panics after the
/// last case if any failed, naming every failed case and its panic message.
pub async fn run_all<F, Fut, R>(make_registry: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = R>,
    R: AgentRegistry + 'static,
{
    run_cases(CASES, make_registry).await;
}

/// Runs the given cases, each on a new registry from `make_registry`; panics like [`run_all`].
pub async fn run_cases<F, Fut, R>(cases: &[Case], make_registry: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = R>,
    R: AgentRegistry + 'static,
{
    let make = &make_registry;
    run_suite(
        "AgentRegistry",
        cases,
        |case| case.name,
        |case| {
            let case = *case;
            async move {
                let registry: DynRegistry = Arc::new(make().await);
                (case.run)(registry).await;
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!(
            "{what}: expected success, got error {e:?} (at {})",
            Location::caller()
        ),
    }
}

#[track_caller]
fn err<T: Debug>(result: Result<T, RegistryError>, what: &str) -> RegistryError {
    match result {
        Ok(value) => panic!(
            "{what}: expected an error, got {value:?} (at {})",
            Location::caller()
        ),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_not_found(e: RegistryError, id: &AgentId, what: &str) {
    assert!(
        matches!(&e, RegistryError::NotFound(got) if got == id),
        "{what}: expected NotFound({id}), got {e:?} (at {})",
        Location::caller()
    );
}

fn id(name: &str) -> AgentId {
    AgentId::new(name).unwrap()
}

/// A card with every field set, so that a backend that drops one is caught.
fn card(name: &str, description: &str) -> AgentCard {
    let mut card = AgentCard::in_process(id(name))
        .description(description)
        .tool("git")
        .tool("cargo")
        .tag("rust");
    card.endpoint = AgentEndpoint::Url(format!("http://{name}.agents.internal:8080"));
    card.system_prompt = format!("You are {name}.");
    card.capabilities
        .insert("max_parallel".into(), serde_json::json!(2));
    card.capabilities.insert(
        "sandbox".into(),
        serde_json::json!({ "kind": "landlock", "paths": ["/work"] }),
    );
    card
}

async fn register(r: &dyn AgentRegistry, card: AgentCard) -> AgentInfo {
    ok(r.register(card).await, "register")
}

async fn get(r: &dyn AgentRegistry, name: &str) -> AgentInfo {
    ok(r.get(id(name)).await, "get")
}

fn close(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).abs() <= TimeDelta::milliseconds(1)
}

#[track_caller]
fn assert_close(expected: DateTime<Utc>, actual: DateTime<Utc>, what: &str) {
    assert!(
        close(expected, actual),
        "{what}: expected a time within 1 ms of {expected}, got {actual} (at {})",
        Location::caller()
    );
}

/// Asserts that two agents are equal, timestamps within 1 ms.
#[track_caller]
fn assert_same_agent(expected: &AgentInfo, actual: &AgentInfo, what: &str) {
    let mut a = actual.clone();
    assert_close(
        expected.last_seen,
        a.last_seen,
        &format!("{what}: last_seen"),
    );
    assert_close(
        expected.registered_at,
        a.registered_at,
        &format!("{what}: registered_at"),
    );
    a.last_seen = expected.last_seen;
    a.registered_at = expected.registered_at;
    assert_eq!(
        expected,
        &a,
        "{what}: agents differ (at {})",
        Location::caller()
    );
}

#[track_caller]
fn assert_same_agents(expected: &[AgentInfo], actual: &[AgentInfo], what: &str) {
    let names = |xs: &[AgentInfo]| {
        xs.iter()
            .map(|a| a.card.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(expected),
        names(actual),
        "{what}: agent names (at {})",
        Location::caller()
    );
    for (e, a) in expected.iter().zip(actual) {
        assert_same_agent(e, a, what);
    }
}

fn names(matches: &[AgentMatch]) -> Vec<&str> {
    matches.iter().map(|m| m.agent.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// Registers three agents out of name order: each is online, at card version 1, registered and
/// last seen at the time of registration, with its card intact; `get` returns what `register`
/// did, and `list` returns all three ordered by name.
pub async fn register_get_list(registry: DynRegistry) {
    let r = &*registry;
    assert!(
        ok(r.list().await, "list").is_empty(),
        "a new registry is empty"
    );
    let before = Utc::now();
    let mut registered = Vec::new();
    for name in ["mallory", "alice", "bob-2"] {
        let input = card(name, &format!("{name} writes code"));
        let info = register(r, input.clone()).await;
        assert_eq!(info.card, input, "register keeps the card as given");
        assert_eq!(info.status, AgentStatus::Online, "a new agent is online");
        assert_eq!(info.card_version, 1, "a new agent is at card version 1");
        assert_eq!(
            info.registered_at, info.last_seen,
            "a new agent was last seen when it registered"
        );
        assert!(
            info.registered_at >= before - TimeDelta::milliseconds(1)
                && info.registered_at <= Utc::now() + TimeDelta::milliseconds(1),
            "registered_at is the time of registration: {} not in [{before}, now]",
            info.registered_at
        );
        assert_same_agent(&info, &get(r, name).await, "get after register");
        registered.push(info);
    }
    registered.sort_by(|a, b| a.card.name.cmp(&b.card.name));
    assert_same_agents(&registered, &ok(r.list().await, "list"), "list is by name");
}

/// Re-registering with the same card (after going offline) keeps the card version and
/// `registered_at`, moves `last_seen`, and brings the agent back online.
pub async fn reregister_same_card_keeps_version(registry: DynRegistry) {
    let r = &*registry;
    let first = register(r, card("alice", "writes Rust")).await;
    ok(
        r.set_status(id("alice"), AgentStatus::Offline).await,
        "set_status",
    );
    tokio::time::sleep(TICK).await;
    let again = register(r, card("alice", "writes Rust")).await;
    assert_eq!(
        again.card_version, 1,
        "the same card keeps the card version"
    );
    assert_close(
        first.registered_at,
        again.registered_at,
        "re-registration keeps registered_at",
    );
    assert!(
        again.last_seen > first.last_seen,
        "re-registration moves last_seen: {} then {}",
        first.last_seen,
        again.last_seen
    );
    assert_eq!(
        again.status,
        AgentStatus::Online,
        "re-registration is online"
    );
    assert_same_agent(&again, &get(r, "alice").await, "get after re-registration");
    assert_eq!(ok(r.list().await, "list").len(), 1, "still one agent");
}

/// Re-registering with a changed card bumps the card version by one each time, keeps
/// `registered_at`, and stores the new card.
pub async fn reregister_changed_card_bumps_version(registry: DynRegistry) {
    let r = &*registry;
    let first = register(r, card("alice", "writes Rust")).await;
    let second = register(r, card("alice", "writes Rust and Go")).await;
    assert_eq!(
        second.card_version, 2,
        "a changed card bumps the card version"
    );
    assert_close(
        first.registered_at,
        second.registered_at,
        "a changed card keeps registered_at",
    );
    let mut changed = card("alice", "writes Rust and Go");
    changed.tags.push("go".into());
    let third = register(r, changed.clone()).await;
    assert_eq!(third.card_version, 3, "every change bumps the card version");
    let same = register(r, changed.clone()).await;
    assert_eq!(same.card_version, 3, "the same card again does not");
    let stored = get(r, "alice").await;
    assert_eq!(stored.card, changed, "the newest card is stored");
    assert_eq!(stored.card_version, 3, "stored card version");
    assert_close(
        first.registered_at,
        stored.registered_at,
        "stored registered_at",
    );
}

/// A card that fails [`AgentCard::validate`] is refused with `InvalidCard` and changes nothing,
/// neither for a new agent nor for a registered one.
pub async fn invalid_card_rejected(registry: DynRegistry) {
    let r = &*registry;
    let mut bad = card("mallory", "");
    bad.endpoint = AgentEndpoint::Url("ftp://mallory".into());
    let e = err(r.register(bad).await, "register with an ftp:// endpoint");
    assert!(
        matches!(e, RegistryError::InvalidCard(_)),
        "expected InvalidCard, got {e:?}"
    );
    assert_not_found(
        err(r.get(id("mallory")).await, "get a refused agent"),
        &id("mallory"),
        "a refused card is not registered",
    );
    assert!(
        ok(r.list().await, "list").is_empty(),
        "nothing was registered"
    );

    let good = register(r, card("alice", "writes Rust")).await;
    let mut bad = card("alice", "");
    bad.description = "x".repeat(17 * 1024);
    let e = err(
        r.register(bad).await,
        "register with a too long description",
    );
    assert!(
        matches!(e, RegistryError::InvalidCard(_)),
        "expected InvalidCard, got {e:?}"
    );
    assert_same_agent(
        &good,
        &get(r, "alice").await,
        "a refused card leaves the registered agent as it was",
    );
}

/// Deregistering removes the agent (get gives `NotFound`, list and best_match leave it out)
/// and only it; registering the name again starts afresh at card version 1.
pub async fn deregister_removes(registry: DynRegistry) {
    let r = &*registry;
    register(r, card("alice", "writes Rust")).await;
    register(r, card("alice", "writes Rust, changed")).await;
    let bob = register(r, card("bob", "writes Rust")).await;
    ok(r.deregister(id("alice")).await, "deregister");
    assert_not_found(
        err(r.get(id("alice")).await, "get after deregister"),
        &id("alice"),
        "a deregistered agent is gone",
    );
    assert_same_agents(
        &[bob],
        &ok(r.list().await, "list"),
        "list after deregistering the other agent",
    );
    let best = ok(r.best_match("writes Rust".into(), 5).await, "best_match");
    assert_eq!(
        names(&best),
        ["bob"],
        "best_match leaves a deregistered agent out"
    );
    let back = register(r, card("alice", "writes Rust, changed")).await;
    assert_eq!(
        back.card_version, 1,
        "a registration after deregistering is new"
    );
}

/// Deregistering an unknown agent gives `NotFound` with its id.
pub async fn deregister_unknown_not_found(registry: DynRegistry) {
    let r = &*registry;
    register(r, card("alice", "")).await;
    assert_not_found(
        err(r.deregister(id("ghost")).await, "deregister unknown"),
        &id("ghost"),
        "deregister unknown",
    );
    ok(r.deregister(id("alice")).await, "deregister");
    assert_not_found(
        err(r.deregister(id("alice")).await, "deregister twice"),
        &id("alice"),
        "deregister twice",
    );
}

/// A heartbeat makes the agent online and moves `last_seen` forward, and changes nothing else;
/// the change is stored.
pub async fn heartbeat_sets_online(registry: DynRegistry) {
    let r = &*registry;
    let first = register(r, card("alice", "writes Rust")).await;
    let offline = ok(
        r.set_status(id("alice"), AgentStatus::Offline).await,
        "set_status",
    );
    assert_eq!(offline.status, AgentStatus::Offline);
    tokio::time::sleep(TICK).await;
    let beat = ok(r.heartbeat(id("alice")).await, "heartbeat");
    assert_eq!(beat.status, AgentStatus::Online, "a heartbeat sets online");
    assert!(
        beat.last_seen > first.last_seen,
        "a heartbeat moves last_seen: {} then {}",
        first.last_seen,
        beat.last_seen
    );
    assert_eq!(beat.card, first.card, "a heartbeat keeps the card");
    assert_eq!(beat.card_version, 1, "a heartbeat keeps the card version");
    assert_close(
        first.registered_at,
        beat.registered_at,
        "a heartbeat keeps registered_at",
    );
    assert_same_agent(&beat, &get(r, "alice").await, "get after heartbeat");
    tokio::time::sleep(TICK).await;
    let later = ok(r.heartbeat(id("alice")).await, "second heartbeat");
    assert!(
        later.last_seen > beat.last_seen,
        "each heartbeat moves last_seen"
    );
}

/// `get`, `heartbeat` and `set_status` of an unknown agent give `NotFound` with its id and
/// register nothing.
pub async fn unknown_agent_not_found(registry: DynRegistry) {
    let r = &*registry;
    let ghost = id("ghost");
    assert_not_found(
        err(r.get(ghost.clone()).await, "get"),
        &ghost,
        "get unknown",
    );
    assert_not_found(
        err(r.heartbeat(ghost.clone()).await, "heartbeat"),
        &ghost,
        "heartbeat unknown",
    );
    assert_not_found(
        err(
            r.set_status(ghost.clone(), AgentStatus::Online).await,
            "set_status",
        ),
        &ghost,
        "set_status unknown",
    );
    assert!(
        ok(r.list().await, "list").is_empty(),
        "operations on an unknown agent register nothing"
    );
}

/// `set_status` stores the status and nothing else; an offline agent is not a candidate of
/// `best_match`, an agent of unknown status is; with every agent offline there is no candidate.
pub async fn set_status_offline_excludes_from_best_match(registry: DynRegistry) {
    let r = &*registry;
    let rust = register(r, card("rust", "runs cargo build and cargo test")).await;
    register(r, card("docs", "writes markdown documentation")).await;
    let best = ok(r.best_match("cargo test".into(), 5).await, "best_match");
    assert_eq!(names(&best), ["rust", "docs"], "both are candidates");

    tokio::time::sleep(TICK).await;
    let offline = ok(
        r.set_status(id("rust"), AgentStatus::Offline).await,
        "set_status offline",
    );
    assert_eq!(offline.status, AgentStatus::Offline);
    let mut expected = rust.clone();
    expected.status = AgentStatus::Offline;
    assert_same_agent(&expected, &offline, "set_status changes only the status");
    assert_same_agent(&expected, &get(r, "rust").await, "get after set_status");
    let best = ok(r.best_match("cargo test".into(), 5).await, "best_match");
    assert_eq!(
        names(&best),
        ["docs"],
        "an offline agent is not a candidate"
    );

    ok(
        r.set_status(id("rust"), AgentStatus::Unknown).await,
        "set_status unknown",
    );
    let best = ok(r.best_match("cargo test".into(), 5).await, "best_match");
    assert_eq!(
        names(&best),
        ["rust", "docs"],
        "an agent of unknown status is a candidate"
    );

    for name in ["rust", "docs"] {
        ok(
            r.set_status(id(name), AgentStatus::Offline).await,
            "set_status offline",
        );
    }
    let e = err(r.best_match("cargo test".into(), 5).await, "best_match");
    assert!(
        matches!(e, RegistryError::NoCandidate(_)),
        "with every agent offline: expected NoCandidate, got {e:?}"
    );
}

/// `best_match` ranks like [`rank_agents`] on the listed agents: best first, scores in `[0, 1]`
/// and never increasing, equal scores by name, `k` results at most (and at least one).
pub async fn best_match_ranking(registry: DynRegistry) {
    let r = &*registry;
    let agents = [
        ("rust", "writes Rust code, runs cargo build and cargo test"),
        ("docs", "writes documentation and markdown"),
        ("ops", "deploys containers with docker and kubectl"),
        ("zz-idle", "knows nothing useful"),
        ("aa-idle", "knows nothing useful"),
    ];
    for (name, description) in agents {
        let mut c = AgentCard::in_process(id(name)).description(description);
        c.tags.push("team".into());
        register(r, c).await;
    }
    let listed = ok(r.list().await, "list");
    let text = "run cargo test for the Rust crate, then update the markdown docs";

    let all = ok(r.best_match(text.into(), 10).await, "best_match k=10");
    let expected = rank_agents(&listed, text, 10).unwrap();
    assert_eq!(all, expected, "best_match ranks exactly like rank_agents");
    assert_eq!(
        all.len(),
        agents.len(),
        "k larger than the registry gives every agent"
    );
    assert_eq!(all[0].agent.as_str(), "rust", "the best fit comes first");
    assert!(all[0].score > all[1].score, "the best fit scores higher");
    for pair in all.windows(2) {
        assert!(
            pair[0].score >= pair[1].score,
            "scores never increase: {all:?}"
        );
        if pair[0].score == pair[1].score {
            assert!(
                pair[0].agent < pair[1].agent,
                "equal scores by name: {all:?}"
            );
        }
    }
    assert!(
        all.iter().all(|m| (0.0..=1.0).contains(&m.score)),
        "scores are in [0, 1]: {all:?}"
    );
    let idle: Vec<&str> = names(&all)
        .into_iter()
        .filter(|n| n.ends_with("-idle"))
        .collect();
    assert_eq!(idle, ["aa-idle", "zz-idle"], "equal scores by name");

    let two = ok(r.best_match(text.into(), 2).await, "best_match k=2");
    assert_eq!(two, all[..2], "k=2 gives the two best");
    let none = ok(r.best_match(text.into(), 0).await, "best_match k=0");
    assert_eq!(none, all[..1], "k=0 still gives the best one");
    let unrelated = ok(r.best_match("?! …".into(), 3).await, "unrelated");
    assert_eq!(
        names(&unrelated),
        ["aa-idle", "docs", "ops"],
        "a text without words has nothing in common: every score 0, ordered by name"
    );
    assert!(unrelated.iter().all(|m| m.score == 0.0), "{unrelated:?}");
}

/// `best_match` on an empty registry gives `NoCandidate`.
pub async fn best_match_no_candidate_when_empty(registry: DynRegistry) {
    let e = err(
        registry.best_match("anything".into(), 3).await,
        "best_match on an empty registry",
    );
    assert!(
        matches!(e, RegistryError::NoCandidate(_)),
        "expected NoCandidate, got {e:?}"
    );
}

/// 50 agents registered at once from 50 tokio tasks are all there afterwards, each at card
/// version 1, listed by name.
pub async fn concurrent_registrations(registry: DynRegistry) {
    const AGENTS: usize = 50;
    let handles: Vec<_> = (0..AGENTS)
        .map(|i| {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let name = format!("agent-{i:02}");
                ok(
                    registry.register(card(&name, "works in parallel")).await,
                    &format!("register {name}"),
                )
            })
        })
        .collect();
    let mut registered = Vec::new();
    for handle in handles {
        let info = handle
            .await
            .unwrap_or_else(|e| panic!("a registering task failed: {e}"));
        assert_eq!(info.card_version, 1, "{}: card version", info.card.name);
        registered.push(info);
    }
    registered.sort_by(|a, b| a.card.name.cmp(&b.card.name));
    let listed = ok(registry.list().await, "list");
    assert_eq!(listed.len(), AGENTS, "every registered agent is listed");
    assert_same_agents(&registered, &listed, "list after concurrent registrations");
}

/// 20 tokio tasks register the same name at once, each with a different card: registration is
/// atomic, so each change is counted once — the registrations see card versions 1 to 20 (one
/// each), all keep the first `registered_at`, and the stored card is the one at version 20.
pub async fn concurrent_reregistration(registry: DynRegistry) {
    const WRITERS: usize = 20;
    let handles: Vec<_> = (0..WRITERS)
        .map(|i| {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                ok(
                    registry
                        .register(card("shared", &format!("version by writer {i}")))
                        .await,
                    "register",
                )
            })
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(
            handle
                .await
                .unwrap_or_else(|e| panic!("a registering task failed: {e}")),
        );
    }
    let versions: BTreeSet<u64> = results.iter().map(|i| i.card_version).collect();
    assert_eq!(
        versions,
        (1..=WRITERS as u64).collect::<BTreeSet<_>>(),
        "each registration bumps the card version exactly once (a lost update repeats one)"
    );
    let first = results.iter().find(|i| i.card_version == 1).unwrap();
    for info in &results {
        assert_close(
            first.registered_at,
            info.registered_at,
            "every re-registration keeps the first registered_at",
        );
    }
    let last = results
        .iter()
        .find(|i| i.card_version == WRITERS as u64)
        .unwrap();
    let stored = get(&*registry, "shared").await;
    assert_eq!(stored.card_version, WRITERS as u64, "stored card version");
    assert_eq!(
        stored.card, last.card,
        "the last registration's card is stored"
    );
    assert_eq!(ok(registry.list().await, "list").len(), 1, "one agent");
}
