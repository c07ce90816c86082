//! The hot statements (claim, release), written out as query fragments so that each pooled
//! connection prepares them once and then only binds and runs them: diesel prepares a
//! `sql_query` statement anew (parse, analyse, plan) for every call.

use ananta_core::error::StoreError;
use ananta_core::store::Claim;
use ananta_core::task::TaskStatus;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Jsonb, Text, Untyped};

use crate::sql::i64_of;

/// Pushes `sql` with each `$n` replaced by the `n`th bind, which `bind(n, out)` pushes. A
/// number may appear more than once; each occurrence is bound again (diesel numbers the
/// parameters itself, in the order they are pushed).
fn walk_numbered<'b>(
    sql: &str,
    out: &mut AstPass<'_, 'b, Pg>,
    mut bind: impl FnMut(usize, &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>,
) -> QueryResult<()> {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 {
            out.push_sql(&rest[..=at]);
            rest = &rest[at + 1..];
            continue;
        }
        out.push_sql(&rest[..at]);
        let n: usize = rest[at + 1..at + 1 + digits]
            .parse()
            .map_err(|_| unknown_parameter(sql))?;
        bind(n, out)?;
        rest = &rest[at + 1 + digits..];
    }
    out.push_sql(rest);
    Ok(())
}

fn unknown_parameter(sql: &str) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        format!("a statement names a parameter it does not bind: {sql}").into(),
    )
}

/// [`super::claim_sql`] with its parameters.
#[derive(QueryId)]
pub(super) struct ClaimStatement {
    pub(super) agent: String,
    pub(super) expires_at: i64,
    pub(super) now: i64,
    pub(super) patch: serde_json::Value,
    pub(super) lease: serde_json::Value,
    pub(super) limit: i64,
}

static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(super::claim_sql);

impl QueryFragment<Pg> for ClaimStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        walk_numbered(&CLAIM_SQL, &mut out, |n, out| match n {
            1 => out.push_bind_param::<Text, _>(&self.agent),
            2 => out.push_bind_param::<BigInt, _>(&self.expires_at),
            3 => out.push_bind_param::<BigInt, _>(&self.now),
            4 => out.push_bind_param::<Jsonb, _>(&self.patch),
            5 => out.push_bind_param::<Jsonb, _>(&self.lease),
            6 => out.push_bind_param::<BigInt, _>(&self.limit),
            _ => Err(unknown_parameter(&CLAIM_SQL)),
        })
    }
}

impl Query for ClaimStatement {
    type SqlType = Untyped;
}

/// [`super::release_many_sql`] with its parameters: one entry per claim in each array.
#[derive(QueryId)]
pub(super) struct ReleaseManyStatement {
    pub(super) ids: Vec<String>,
    pub(super) tokens: Vec<i64>,
    pub(super) agents: Vec<String>,
    pub(super) statuses: Vec<String>,
    /// The statuses each task may leave for its new one, comma-separated.
    pub(super) froms: Vec<String>,
    pub(super) now: serde_json::Value,
}

static RELEASE_MANY_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(super::release_many_sql);

impl ReleaseManyStatement {
    /// A statement releasing nothing yet, at the current time.
    pub(super) fn new() -> Result<Self, StoreError> {
        Ok(Self {
            ids: Vec::new(),
            tokens: Vec::new(),
            agents: Vec::new(),
            statuses: Vec::new(),
            froms: Vec::new(),
            now: serde_json::to_value(chrono::Utc::now())
                .map_err(|e| StoreError::Backend(format!("encoding a time: {e}")))?,
        })
    }

    /// Adds `claim`, to be moved to `status` (from the statuses that may move there).
    pub(super) fn push(&mut self, claim: &Claim, status: TaskStatus) -> Result<(), StoreError> {
        self.ids.push(claim.task_id.to_string());
        self.tokens.push(i64_of(claim.token)?);
        self.agents.push(claim.agent.to_string());
        self.statuses.push(status.as_str().to_string());
        self.froms.push(
            TaskStatus::ALL
                .into_iter()
                .filter(|s| s.can_transition_to(status))
                .map(TaskStatus::as_str)
                .collect::<Vec<_>>()
                .join(","),
        );
        Ok(())
    }

    /// Whether no claim was added.
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl QueryFragment<Pg> for ReleaseManyStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        walk_numbered(&RELEASE_MANY_SQL, &mut out, |n, out| match n {
            1 => out.push_bind_param::<Array<Text>, _>(&self.ids),
            2 => out.push_bind_param::<Array<BigInt>, _>(&self.tokens),
            3 => out.push_bind_param::<Array<Text>, _>(&self.agents),
            4 => out.push_bind_param::<Array<Text>, _>(&self.statuses),
            5 => out.push_bind_param::<Array<Text>, _>(&self.froms),
            6 => out.push_bind_param::<Jsonb, _>(&self.now),
            _ => Err(unknown_parameter(&RELEASE_MANY_SQL)),
        })
    }
}

impl Query for ReleaseManyStatement {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::query_builder::QueryBuilder;

    fn sql_of(q: &impl QueryFragment<Pg>) -> String {
        let mut builder = diesel::pg::PgQueryBuilder::default();
        q.to_sql(&mut builder, &Pg).unwrap();
        builder.finish()
    }

    #[test]
    fn repeated_parameters_are_bound_again_in_order() {
        let q = ClaimStatement {
            agent: "a".into(),
            expires_at: 2,
            now: 1,
            patch: serde_json::json!({}),
            lease: serde_json::json!({}),
            limit: 1,
        };
        let sql = sql_of(&q);
        // `$1` (the agent) appears three times, `$3` (now) three times and `$6` (the limit)
        // four times in the template: thirteen occurrences in all, numbered in order.
        assert!(sql.contains("$13") && !sql.contains("$14"), "{sql}");
        assert!(
            sql.trim_end()
                .ends_with("LIMIT $13) RETURNING id, priority, lease_token AS token"),
            "{sql}"
        );
    }

    #[test]
    fn the_release_statement_checks_where_each_task_may_move_from() {
        let mut q = ReleaseManyStatement::new().unwrap();
        let claim = Claim {
            task_id: ananta_core::ids::TaskId::new(),
            agent: ananta_core::ids::AgentId::new("a").unwrap(),
            token: 1,
            expires_at: chrono::Utc::now(),
        };
        q.push(&claim, TaskStatus::Done).unwrap();
        assert_eq!(
            q.froms,
            vec!["in_progress,proposing,review,done".to_string()]
        );
        let sql = sql_of(&q);
        assert!(sql.contains("status = ANY(string_to_array("), "{sql}");
    }
}
