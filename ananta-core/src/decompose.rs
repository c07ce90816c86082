//! The [`Decomposer`] trait and the plan it produces, with validation.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::DecomposeError;
use crate::task::Priority;

/// One task of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedTask {
    /// Id unique within the plan (e.g. `t1`).
    pub id: String,
    /// What to do.
    pub description: String,
    /// Ids of tasks that must finish first.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Urgency.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Name of an agent the model suggests.
    #[serde(default)]
    pub agent_hint: Option<String>,
}

/// A prompt split into a dependency DAG of tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// The model's reasoning.
    #[serde(default)]
    pub reasoning: String,
    /// The tasks.
    pub tasks: Vec<PlannedTask>,
}

/// Largest plan accepted by [`Plan::validate`].
pub const MAX_PLAN_TASKS: usize = 200;

impl Plan {
    /// Every problem of the plan: no tasks, too many (more than [`MAX_PLAN_TASKS`], the
    /// limit for a model's plan), empty or duplicate ids, empty descriptions, unknown
    /// dependencies, self-dependencies, cycles. Empty = valid.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.structural_problems();
        if self.tasks.len() > MAX_PLAN_TASKS {
            problems.insert(
                usize::from(self.tasks.is_empty()),
                format!(
                    "the plan has {} tasks, at most {MAX_PLAN_TASKS} are allowed",
                    self.tasks.len()
                ),
            );
        }
        problems
    }

    /// [`Plan::problems`] without the size limit: whether the plan can run at all (a host's
    /// own large plans run through a [`Pipeline`](crate::pipeline::Pipeline) too).
    pub fn structural_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tasks.is_empty() {
            problems.push("the plan has no tasks".to_string());
        }
        let mut seen = BTreeSet::new();
        for t in &self.tasks {
            if t.id.trim().is_empty() {
                problems.push("a task has an empty id".to_string());
            } else if !seen.insert(t.id.as_str()) {
                problems.push(format!("task id {:?} is used more than once", t.id));
            }
            if t.description.trim().is_empty() {
                problems.push(format!("task {:?} has an empty description", t.id));
            }
        }
        for t in &self.tasks {
            for d in &t.dependencies {
                if d == &t.id {
                    problems.push(format!("task {:?} depends on itself", t.id));
                } else if !seen.contains(d.as_str()) {
                    problems.push(format!("task {:?} depends on unknown task {d:?}", t.id));
                }
            }
        }
        if problems.is_empty() && self.waves().is_none() {
            problems.push("the dependencies form a cycle".to_string());
        }
        problems
    }

    /// Checks the plan; the error lists every problem.
    pub fn validate(&self) -> Result<(), DecomposeError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DecomposeError::InvalidPlan {
                problems,
                raw: String::new(),
            })
        }
    }

    /// Topological waves: each wave's tasks depend only on earlier waves and can run in
    /// parallel. `None` when the dependencies form a cycle or name unknown tasks.
    pub fn waves(&self) -> Option<Vec<Vec<String>>> {
        let mut indegree: BTreeMap<&str, usize> =
            self.tasks.iter().map(|t| (t.id.as_str(), 0)).collect();
        let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in &self.tasks {
            for d in &t.dependencies {
                if !indegree.contains_key(d.as_str()) {
                    return None;
                }
                *indegree.get_mut(t.id.as_str())? += 1;
                dependents
                    .entry(d.as_str())
                    .or_default()
                    .push(t.id.as_str());
            }
        }
        let mut waves = Vec::new();
        let mut ready: Vec<&str> = indegree
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut done = 0;
        while !ready.is_empty() {
            let mut next = Vec::new();
            for id in &ready {
                for dep in dependents.get(id).map(Vec::as_slice).unwrap_or_default() {
                    let n = indegree.get_mut(dep)?;
                    *n -= 1;
                    if *n == 0 {
                        next.push(*dep);
                    }
                }
            }
            done += ready.len();
            waves.push(ready.iter().map(|s| s.to_string()).collect());
            next.sort_unstable();
            ready = next;
        }
        (done == indegree.len()).then_some(waves)
    }
}

impl Plan {
    /// The longest chain of dependent tasks, first to last (each task counts one step): the
    /// least number of rounds the plan needs however many agents work in parallel. `None`
    /// when the dependencies are broken (unknown ids, a cycle).
    pub fn critical_path(&self) -> Option<Vec<String>> {
        let waves = self.waves()?;
        let by_id: BTreeMap<&str, &PlannedTask> =
            self.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        // Longest chain ending at each task, in topological (wave) order.
        let mut best: BTreeMap<&str, (usize, Option<&str>)> = BTreeMap::new();
        for id in waves.iter().flatten() {
            let task = by_id.get(id.as_str())?;
            let (len, prev) = task
                .dependencies
                .iter()
                .filter_map(|d| best.get(d.as_str()).map(|(l, _)| (*l, d.as_str())))
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
                .map_or((1, None), |(l, d)| (l + 1, Some(d)));
            best.insert(task.id.as_str(), (len, prev));
        }
        let (mut at, _) = best
            .iter()
            .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.0.cmp(a.0)))
            .map(|(id, v)| (*id, *v))?;
        let mut path = vec![at.to_string()];
        while let Some((_, Some(prev))) = best.get(at) {
            path.push(prev.to_string());
            at = prev;
        }
        path.reverse();
        Some(path)
    }

    /// A readable table of the plan: one row per task in run order, with its wave (tasks of
    /// one wave can run in parallel), id, dependencies and description (cut at 60 characters),
    /// then the critical path.
    pub fn table(&self) -> String {
        let Some(waves) = self.waves() else {
            return format!("invalid plan: {}", self.problems().join("; "));
        };
        let by_id: BTreeMap<&str, &PlannedTask> =
            self.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        let id_width = self
            .tasks
            .iter()
            .map(|t| t.id.chars().count())
            .max()
            .unwrap_or(2)
            .max(2);
        let deps = |t: &PlannedTask| {
            if t.dependencies.is_empty() {
                "-".to_string()
            } else {
                t.dependencies.join(", ")
            }
        };
        let dep_width = self
            .tasks
            .iter()
            .map(|t| deps(t).chars().count())
            .max()
            .unwrap_or(1)
            .max(10);
        let mut out = format!(
            "{:<4}  {:<id_width$}  {:<dep_width$}  description\n",
            "wave", "id", "depends on"
        );
        for (i, wave) in waves.iter().enumerate() {
            for id in wave {
                let Some(task) = by_id.get(id.as_str()) else {
                    continue;
                };
                let mut description: String = task.description.chars().take(60).collect();
                if task.description.chars().count() > 60 {
                    description.push('…');
                }
                out.push_str(&format!(
                    "{:<4}  {:<id_width$}  {:<dep_width$}  {}\n",
                    i + 1,
                    task.id,
                    deps(task),
                    description.replace('\n', " ")
                ));
            }
        }
        if let Some(path) = self.critical_path() {
            out.push_str(&format!(
                "critical path: {} ({} step{})\n",
                path.join(" → "),
                path.len(),
                if path.len() == 1 { "" } else { "s" }
            ));
        }
        out
    }
}

/// Turns a prompt into a validated plan.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait Decomposer: Send + Sync {
    /// Splits `prompt` into a plan that passes [`Plan::validate`].
    async fn decompose(&self, prompt: String) -> Result<Plan, DecomposeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, deps: &[&str]) -> PlannedTask {
        PlannedTask {
            id: id.into(),
            description: format!("do {id}"),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
            priority: None,
            agent_hint: None,
        }
    }

    #[test]
    fn critical_path_and_table() {
        let diamond = Plan {
            reasoning: String::new(),
            tasks: vec![
                task("research_a", &[]),
                task("research_b", &[]),
                task("compare", &["research_a", "research_b"]),
                task("translate", &["compare"]),
            ],
        };
        assert_eq!(
            diamond.critical_path().unwrap(),
            ["research_a", "compare", "translate"]
        );
        let table = diamond.table();
        assert!(table.starts_with("wave"));
        assert!(table.contains("research_a, research_b"), "{table}");
        assert!(
            table.contains("critical path: research_a → compare → translate (3 steps)"),
            "{table}"
        );
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with('1') && lines[3].starts_with('2') && lines[4].starts_with('3'),
            "{table}"
        );
        let single = Plan {
            reasoning: String::new(),
            tasks: vec![task("only", &[])],
        };
        assert_eq!(single.critical_path().unwrap(), ["only"]);
        let cyclic = Plan {
            reasoning: String::new(),
            tasks: vec![task("a", &["b"]), task("b", &["a"])],
        };
        assert!(cyclic.critical_path().is_none());
        assert!(cyclic.table().starts_with("invalid plan"));
    }

    #[test]
    fn waves_and_validation() {
        let plan = Plan {
            reasoning: String::new(),
            tasks: vec![
                task("a", &[]),
                task("b", &["a"]),
                task("c", &["a"]),
                task("d", &["b", "c"]),
            ],
        };
        assert!(plan.validate().is_ok());
        assert_eq!(
            plan.waves().unwrap(),
            vec![
                vec!["a".to_string()],
                vec!["b".into(), "c".into()],
                vec!["d".into()]
            ]
        );
        let cyclic = Plan {
            reasoning: String::new(),
            tasks: vec![task("a", &["b"]), task("b", &["a"])],
        };
        assert_eq!(
            cyclic.problems(),
            vec!["the dependencies form a cycle".to_string()]
        );
        let bad = Plan {
            reasoning: String::new(),
            tasks: vec![task("a", &["zz", "a"]), task("a", &[])],
        };
        let p = bad.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        let empty = Plan {
            reasoning: String::new(),
            tasks: vec![],
        };
        assert!(matches!(
            empty.validate(),
            Err(DecomposeError::InvalidPlan { .. })
        ));
    }
}

/// A [`Decomposer`] that asks an LLM for the plan with the plan's JSON schema (structured
/// output), validates the answer ([`Plan::problems`]: at least one task, unique ids, known
/// dependencies, no cycles, no empty descriptions, a size limit), and sends an invalid plan
/// back to the model with the exact problems, up to [`repair_attempts`](Self::repair_attempts)
/// times. Then it fails with [`DecomposeError::InvalidPlan`], which carries the last raw answer.
///
/// ```
/// # #[cfg(feature = "testing")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ananta_core::decompose::{Decomposer, LlmDecomposer};
/// use ananta_core::mocks::MockLlmProvider;
/// use ananta_core::llm::ChatResponse;
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let mut llm = MockLlmProvider::new();
/// llm.expect_complete().returning(|_| Ok(ChatResponse::text(
///     r#"{"reasoning": "two steps", "tasks": [
///         {"id": "research", "description": "Research AI trends"},
///         {"id": "summary", "description": "Summarise them", "dependencies": ["research"]}]}"#)));
/// let plan = LlmDecomposer::new(Arc::new(llm)).decompose("Research and summarise".into()).await?;
/// assert_eq!(plan.waves().unwrap(), vec![vec!["research".to_string()], vec!["summary".to_string()]]);
/// # Ok::<(), ananta_core::DecomposeError>(())
/// # })?;
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "testing"))]
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct LlmDecomposer {
    llm: std::sync::Arc<dyn crate::llm::LlmProvider>,
    repair_attempts: u32,
    max_tasks: usize,
    model: Option<String>,
    max_tokens: u32,
    agents: Vec<String>,
}

impl std::fmt::Debug for LlmDecomposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmDecomposer")
            .field("llm", &self.llm.name())
            .field("repair_attempts", &self.repair_attempts)
            .field("max_tasks", &self.max_tasks)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// The longest prompt [`LlmDecomposer`] accepts, in bytes.
pub const MAX_PROMPT_BYTES: usize = 32 * 1024;

const DECOMPOSE_SYSTEM_PROMPT: &str = "You split a user's request into a plan of small, atomic tasks for a team of agents. \
Answer with a single JSON object and nothing else: {\"reasoning\": \"<why this split>\", \"tasks\": [{\"id\": \"<short unique id>\", \"description\": \"<what to do, self-contained>\", \"dependencies\": [\"<ids of tasks whose output this task needs>\"], \"priority\": \"normal\", \"agent_hint\": \"<the kind of agent that fits, optional>\"}]}. \
Use as few tasks as the request needs (one task for a simple request). A task may only depend on ids of other tasks in the plan, and the dependencies must not form a cycle. \
Tasks without a dependency between them run in parallel.";

impl LlmDecomposer {
    /// A decomposer asking `llm`, with 2 repair attempts and at most [`MAX_PLAN_TASKS`] tasks.
    pub fn new(llm: std::sync::Arc<dyn crate::llm::LlmProvider>) -> Self {
        Self {
            llm,
            repair_attempts: 2,
            max_tasks: MAX_PLAN_TASKS,
            model: None,
            max_tokens: 2048,
            agents: Vec::new(),
        }
    }

    /// The longest answer the model may give, in tokens (default 2048).
    pub fn max_tokens(mut self, tokens: u32) -> Self {
        self.max_tokens = tokens.max(1);
        self
    }

    /// How often an invalid plan is sent back to the model with its problems (default 2).
    pub fn repair_attempts(mut self, attempts: u32) -> Self {
        self.repair_attempts = attempts;
        self
    }

    /// The most tasks a plan may have (default and upper bound [`MAX_PLAN_TASKS`]).
    pub fn max_tasks(mut self, max: usize) -> Self {
        self.max_tasks = max.clamp(1, MAX_PLAN_TASKS);
        self
    }

    /// The model to ask.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Names and descriptions of the agents available, shown to the model so its
    /// `agent_hint`s fit (e.g. `"translator: translates between German and English"`).
    pub fn agents(mut self, agents: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.agents = agents.into_iter().map(Into::into).collect();
        self
    }

    fn problems(&self, plan: &Plan) -> Vec<String> {
        let mut problems = plan.problems();
        if plan.tasks.len() > self.max_tasks && self.max_tasks < MAX_PLAN_TASKS {
            problems.push(format!(
                "the plan has {} tasks, at most {} are allowed",
                plan.tasks.len(),
                self.max_tasks
            ));
        }
        problems
    }
}

#[async_trait]
impl Decomposer for LlmDecomposer {
    async fn decompose(&self, prompt: String) -> Result<Plan, DecomposeError> {
        let prompt = prompt.trim();
        if prompt.is_empty() {
            return Err(DecomposeError::InvalidPrompt("the prompt is empty".into()));
        }
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(DecomposeError::InvalidPrompt(format!(
                "the prompt has {} bytes, at most {MAX_PROMPT_BYTES} are allowed",
                prompt.len()
            )));
        }
        let mut system = DECOMPOSE_SYSTEM_PROMPT.to_string();
        if !self.agents.is_empty() {
            system.push_str("\n\nThe agents available:\n- ");
            system.push_str(&self.agents.join("\n- "));
        }
        let mut messages = vec![
            crate::llm::ChatMessage::system(system),
            crate::llm::ChatMessage::user(prompt),
        ];
        let mut last = (Vec::new(), String::new());
        for attempt in 0..=self.repair_attempts {
            let mut request = crate::llm::ChatRequest::new(messages.clone())
                .temperature(0.0)
                .json_schema_for::<Plan>();
            request.model = self.model.clone();
            request.max_tokens = Some(self.max_tokens);
            let raw = self.llm.complete(request).await?.content;
            // Past `<think>` blocks, fences and prose: the first balanced JSON object.
            let answer = crate::parse::strip_think(&raw);
            let json = crate::parse::first_object(&answer).unwrap_or(answer.trim());
            let problems = match serde_json::from_str::<Plan>(json) {
                Ok(plan) => {
                    let problems = self.problems(&plan);
                    if problems.is_empty() {
                        tracing::debug!(attempt, tasks = plan.tasks.len(), "plan accepted");
                        return Ok(plan);
                    }
                    problems
                }
                Err(e) => vec![format!(
                    "the answer is not a plan in the requested JSON shape: {e}"
                )],
            };
            tracing::info!(attempt, problems = ?problems, "the model's plan is invalid");
            messages.push(crate::llm::ChatMessage::assistant(raw.clone()));
            messages.push(crate::llm::ChatMessage::user(format!(
                "That plan is invalid:\n- {}\nAnswer again with the whole corrected plan as one JSON object.",
                problems.join("\n- ")
            )));
            last = (problems, raw);
        }
        Err(DecomposeError::InvalidPlan {
            problems: last.0,
            raw: last.1,
        })
    }
}

#[cfg(test)]
mod llm_tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::llm::{ChatRequest, ChatResponse};
    use crate::mocks::MockLlmProvider;

    fn scripted(answers: &[&str]) -> (MockLlmProvider, Arc<Mutex<Vec<ChatRequest>>>) {
        let answers: Vec<String> = answers.iter().map(|a| a.to_string()).collect();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut llm = MockLlmProvider::new();
        let log = seen.clone();
        llm.expect_name().return_const("mock".to_string());
        llm.expect_complete().returning(move |request| {
            let mut log = log.lock().unwrap();
            log.push(request);
            let i = (log.len() - 1).min(answers.len() - 1);
            Ok(ChatResponse::text(answers[i].clone()))
        });
        (llm, seen)
    }

    #[tokio::test]
    async fn invalid_plans_are_repaired_with_their_exact_problems() {
        let (llm, seen) = scripted(&[
            "Sure! Here is my plan: step one, then step two.",
            r#"{"tasks": [{"id": "a", "description": "x", "dependencies": ["b"]}, {"id": "b", "description": "y", "dependencies": ["a"]}]}"#,
            r#"{"tasks": [{"id": "a", "description": "x", "dependencies": ["ghost"]}, {"id": "a", "description": ""}]}"#,
            "<think>fine</think>```json\n{\"reasoning\": \"ok\", \"tasks\": [{\"id\": \"a\", \"description\": \"x\"}, {\"id\": \"b\", \"description\": \"y\", \"dependencies\": [\"a\"]}]}\n```",
        ]);
        let plan = LlmDecomposer::new(Arc::new(llm))
            .repair_attempts(3)
            .decompose("do x then y".into())
            .await
            .unwrap();
        assert_eq!(plan.tasks.len(), 2);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        let feedback = |i: usize| seen[i].messages.last().unwrap().content.clone();
        assert!(
            feedback(1).contains("not a plan in the requested JSON shape"),
            "{}",
            feedback(1)
        );
        assert!(
            feedback(2).contains("the dependencies form a cycle"),
            "{}",
            feedback(2)
        );
        assert!(
            feedback(3).contains("depends on unknown task \"ghost\""),
            "{}",
            feedback(3)
        );
        assert!(
            feedback(3).contains("task id \"a\" is used more than once"),
            "{}",
            feedback(3)
        );
        assert!(feedback(3).contains("empty description"), "{}", feedback(3));
        assert!(
            seen[0].response_format.is_some(),
            "the plan's schema is sent"
        );
    }

    #[tokio::test]
    async fn an_unrepairable_plan_fails_with_the_last_raw_answer() {
        let (llm, seen) = scripted(&[r#"{"tasks": []}"#]);
        let err = LlmDecomposer::new(Arc::new(llm))
            .repair_attempts(1)
            .decompose("anything".into())
            .await
            .unwrap_err();
        match err {
            DecomposeError::InvalidPlan { problems, raw } => {
                assert_eq!(problems, ["the plan has no tasks"]);
                assert_eq!(raw, r#"{"tasks": []}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(seen.lock().unwrap().len(), 2, "one try and one repair");
        let (llm, _) = scripted(&["{}"]);
        let decomposer = LlmDecomposer::new(Arc::new(llm));
        assert!(matches!(
            decomposer.decompose("   ".into()).await,
            Err(DecomposeError::InvalidPrompt(_))
        ));
        assert!(matches!(
            decomposer.decompose("x".repeat(MAX_PROMPT_BYTES + 1)).await,
            Err(DecomposeError::InvalidPrompt(_))
        ));
        let (llm, _) = scripted(&[
            r#"{"tasks": [{"id": "a", "description": "x"}, {"id": "b", "description": "y"}, {"id": "c", "description": "z"}]}"#,
        ]);
        let err = LlmDecomposer::new(Arc::new(llm))
            .max_tasks(2)
            .repair_attempts(0)
            .decompose("three things".into())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at most 2 are allowed"), "{err}");
    }
}
