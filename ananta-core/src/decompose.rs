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
    /// Every problem of the plan: no tasks, too many, empty or duplicate ids, empty
    /// descriptions, unknown dependencies, self-dependencies, cycles. Empty = valid.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tasks.is_empty() {
            problems.push("the plan has no tasks".to_string());
        }
        if self.tasks.len() > MAX_PLAN_TASKS {
            problems.push(format!(
                "the plan has {} tasks, at most {MAX_PLAN_TASKS} are allowed",
                self.tasks.len()
            ));
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
#[cfg_attr(feature = "mocks", mockall::automock)]
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
