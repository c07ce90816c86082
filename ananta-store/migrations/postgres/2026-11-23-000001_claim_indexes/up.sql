-- One index per arm of the claim statement, each matching its arm, so that the plan does not
-- hinge on statistics (which lag far behind a queue's churn). With the former single index
-- and one `OR` query, PostgreSQL planned on stale statistics a bitmap scan and sort of every
-- claimable task for each claim.
--
-- Unassigned `todo` tasks, in claim order. The predicate is written `(…) IS TRUE`, and the
-- claim statement says the same: no other index can serve that condition, so the planner's
-- only choices are this index in order (stopping after the first few) or a scan of the whole
-- table, and it takes the index whatever its statistics say.
CREATE INDEX tasks_open ON tasks (priority DESC, id)
    WHERE (status = 'todo' AND assigned_agent IS NULL) IS TRUE;
-- `todo` tasks assigned to one agent, in claim order.
CREATE INDEX tasks_mine ON tasks (assigned_agent, priority DESC, id) WHERE status = 'todo';
-- Leases that may have expired: only tasks in an active status.
CREATE INDEX tasks_rescue ON tasks (lease_expires_at)
    WHERE status IN ('in_progress', 'proposing');
DROP INDEX tasks_claim;

-- Every update that changes an indexed column adds an entry to every index of the row, so
-- the template index keeps only tasks that have a template (most have none).
DROP INDEX tasks_template;
CREATE INDEX tasks_template ON tasks (template_id) WHERE template_id IS NOT NULL;
