DROP INDEX tasks_template;
CREATE INDEX tasks_template ON tasks (template_id);
CREATE INDEX tasks_claim ON tasks (priority DESC, id)
    WHERE status IN ('todo', 'in_progress', 'proposing');
DROP INDEX tasks_rescue;
DROP INDEX tasks_mine;
DROP INDEX tasks_open;
