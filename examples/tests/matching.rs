//! Agent matching accuracy on a labelled set: 48 task descriptions over 8 agents, top-1 with
//! the model-free lexical embedder (always) and with the real local LLM server's embeddings
//! (when `ANANTA_TEST_OPENAI_URL` is set; `ANANTA_REQUIRE_REAL_LLM=1` makes its absence a
//! failure). Also: pinning, the threshold and its fallback, offline agents, card changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use ananta_core::matching::{AgentMatcher, MatchReason};
use ananta_core::registry::InMemoryRegistry;
use ananta_core::{AgentCard, AgentId, AgentRegistry, AgentStatus};
use ananta_llm::OpenAiProvider;

const AGENTS: &[(&str, &str, &[&str])] = &[
    (
        "researcher",
        "Researches topics on the web, finds sources, papers and current trends, collects facts",
        &["web", "search"],
    ),
    (
        "summariser",
        "Summarises long texts, articles and reports into short, clear summaries and key points",
        &["summary"],
    ),
    (
        "translator",
        "Translates text between German, English, French and Spanish",
        &["translation", "language"],
    ),
    (
        "code-reviewer",
        "Reviews source code and pull requests for bugs, security issues and style",
        &["git", "review"],
    ),
    (
        "data-analyst",
        "Analyses data sets, CSV files and statistics, builds charts and plots",
        &["pandas", "csv", "charts"],
    ),
    (
        "devops",
        "Deploys services, writes Dockerfiles, CI pipelines and Kubernetes manifests, manages servers",
        &["docker", "kubernetes", "ci"],
    ),
    (
        "tester",
        "Writes and runs unit tests and integration tests, finds failing tests and flaky tests",
        &["cargo", "pytest", "testing"],
    ),
    (
        "docs-writer",
        "Writes documentation, READMEs, tutorials and API reference pages in Markdown",
        &["markdown", "documentation"],
    ),
];

const TASKS: &[(&str, &str)] = &[
    ("Research the current AI trends", "researcher"),
    (
        "Find recent papers on retrieval augmented generation",
        "researcher",
    ),
    ("Collect sources about the history of Rust", "researcher"),
    (
        "Search the web for the latest news on quantum computing",
        "researcher",
    ),
    ("Find facts about the population of Berlin", "researcher"),
    ("Look up current trends in web frameworks", "researcher"),
    (
        "Summarise the research findings in five bullet points",
        "summariser",
    ),
    ("Write a short summary of this long article", "summariser"),
    (
        "Condense the quarterly report into key points",
        "summariser",
    ),
    ("Give me the key points of the meeting notes", "summariser"),
    ("Summarise the changelog for the release", "summariser"),
    ("Make a brief summary of the research paper", "summariser"),
    ("Translate the summary into English", "translator"),
    ("Translate this German text into French", "translator"),
    (
        "Übersetze den Text ins Englische: translate to English",
        "translator",
    ),
    (
        "Translate the user interface strings to Spanish",
        "translator",
    ),
    ("Translate the email from English to German", "translator"),
    (
        "Provide a French translation of the announcement",
        "translator",
    ),
    ("Review the pull request for bugs", "code-reviewer"),
    (
        "Check this source code for security issues",
        "code-reviewer",
    ),
    ("Do a code review of the new parser module", "code-reviewer"),
    (
        "Review the style of the Rust code in the diff",
        "code-reviewer",
    ),
    (
        "Look for bugs in the git diff of the last commit",
        "code-reviewer",
    ),
    ("Review the security of the login code", "code-reviewer"),
    (
        "Analyse the sales CSV and compute monthly totals",
        "data-analyst",
    ),
    ("Plot a chart of the user growth data", "data-analyst"),
    ("Compute statistics on the survey data set", "data-analyst"),
    (
        "Load the CSV file with pandas and find outliers",
        "data-analyst",
    ),
    ("Build charts from the metrics data", "data-analyst"),
    ("Analyse the data set of website visits", "data-analyst"),
    ("Write a Dockerfile for the web service", "devops"),
    ("Deploy the service to Kubernetes", "devops"),
    ("Set up a CI pipeline for the repository", "devops"),
    ("Write Kubernetes manifests for the database", "devops"),
    ("Manage the servers and restart the deployment", "devops"),
    ("Deploy the new version with docker compose", "devops"),
    ("Write unit tests for the parser", "tester"),
    ("Run the integration tests and report failures", "tester"),
    ("Find the flaky test in the test suite", "tester"),
    ("Run cargo test and fix failing tests", "tester"),
    ("Add pytest tests for the data loader", "tester"),
    ("Write integration tests for the HTTP API", "tester"),
    ("Write a README for the library", "docs-writer"),
    ("Document the public API in Markdown", "docs-writer"),
    ("Write a tutorial for new users", "docs-writer"),
    ("Create API reference pages for the client", "docs-writer"),
    (
        "Improve the documentation of the configuration options",
        "docs-writer",
    ),
    ("Write a getting started guide in Markdown", "docs-writer"),
];

async fn registry() -> Arc<InMemoryRegistry> {
    let registry = Arc::new(InMemoryRegistry::new());
    for (name, description, tags) in AGENTS {
        let mut card =
            AgentCard::in_process(AgentId::new(*name).unwrap()).description(*description);
        for tag in *tags {
            card = card.tag(*tag);
        }
        registry.register(card).await.unwrap();
    }
    registry
}

async fn top1_accuracy(matcher: &AgentMatcher) -> (f32, Vec<String>) {
    let mut misses = Vec::new();
    for (task, expected) in TASKS {
        let best = matcher.best_match(task, 1).await.unwrap();
        if best[0].agent.as_str() != *expected {
            misses.push(format!("{task:?}: {} instead of {expected}", best[0].agent));
        }
    }
    (1.0 - misses.len() as f32 / TASKS.len() as f32, misses)
}

#[tokio::test]
async fn lexical_matching_accuracy_on_the_labelled_set() {
    assert!(TASKS.len() >= 40 && AGENTS.len() >= 8);
    let matcher = AgentMatcher::new(registry().await);
    let (accuracy, misses) = top1_accuracy(&matcher).await;
    eprintln!(
        "lexical top-1 accuracy: {:.1}% ({} of {}); misses: {misses:#?}",
        accuracy * 100.0,
        TASKS.len() - misses.len(),
        TASKS.len()
    );
    assert!(
        accuracy >= 0.8,
        "lexical top-1 accuracy {accuracy} is below 0.8: {misses:#?}"
    );
}

#[tokio::test]
async fn pinning_threshold_fallback_offline_and_card_changes() {
    let registry = registry().await;
    let matcher = AgentMatcher::new(registry.clone())
        .threshold(0.2)
        .fallback(AgentId::new("researcher").unwrap());
    let pinned = matcher
        .choose(
            "Translate the summary into English",
            Some(AgentId::new("tester").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        (pinned.agent.as_str(), pinned.reason),
        ("tester", MatchReason::Pinned)
    );
    let vague = matcher.choose("zzz qqq", None).await.unwrap();
    assert!(
        matches!(vague.reason, MatchReason::Fallback { .. }),
        "{vague:?}"
    );
    assert_eq!(vague.agent.as_str(), "researcher");

    // Offline agents are no candidates; a pinned offline agent is refused.
    registry
        .set_status(AgentId::new("translator").unwrap(), AgentStatus::Offline)
        .await
        .unwrap();
    let without = matcher
        .best_match("Translate the summary into English", 8)
        .await
        .unwrap();
    assert!(without.iter().all(|m| m.agent.as_str() != "translator"));
    assert!(
        matcher
            .choose("x", Some(AgentId::new("translator").unwrap()))
            .await
            .is_err()
    );

    // A changed card is embedded again.
    registry
        .register(
            AgentCard::in_process(AgentId::new("tester").unwrap())
                .description("Translates text into English"),
        )
        .await
        .unwrap();
    let best = matcher
        .best_match("Translate the summary into English", 1)
        .await
        .unwrap();
    assert_eq!(best[0].agent.as_str(), "tester", "the new card counts");
}

#[tokio::test]
async fn matching_accuracy_with_the_real_servers_embeddings() {
    let url = match std::env::var("ANANTA_TEST_OPENAI_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            if std::env::var("ANANTA_REQUIRE_REAL_LLM").is_ok_and(|v| v == "1") {
                panic!("ANANTA_REQUIRE_REAL_LLM=1 but ANANTA_TEST_OPENAI_URL is not set");
            }
            eprintln!(
                "NOT RUN: real-LLM embedding test skipped because ANANTA_TEST_OPENAI_URL is not set"
            );
            return;
        }
    };
    let llm = OpenAiProvider::llama_cpp(&url)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // The server's own embeddings must work (no silent lexical stand-in).
    use ananta_core::LlmProvider;
    let probe = llm.embed(vec!["hello".into()]).await.unwrap();
    assert!(!probe[0].is_empty());
    let matcher = AgentMatcher::new(registry().await).embeddings(Arc::new(llm));
    let decision = matcher.choose(TASKS[0].0, None).await.unwrap();
    assert_eq!(decision.embedder, "llama.cpp", "{decision:?}");
    let (accuracy, misses) = top1_accuracy(&matcher).await;
    eprintln!(
        "server-embedding (SmolLM2-135M, mean pooling) top-1 accuracy: {:.1}% ({} of {})",
        accuracy * 100.0,
        TASKS.len() - misses.len(),
        TASKS.len()
    );
    // Chance is 1/8; a real embedding beats it.
    assert!(accuracy > 0.125, "{accuracy}: {misses:#?}");
}
