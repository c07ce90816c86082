-- Ananta's task board. Each row keeps the whole entity as JSON in `data` (the source of truth);
-- the other columns are copies written in the same statement, for lookups, ordering and claims.

CREATE TABLE templates (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    data TEXT NOT NULL
);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    assigned_agent TEXT,
    template_id TEXT REFERENCES templates (id),
    lease_agent TEXT,
    lease_token BIGINT,
    -- microseconds since the Unix epoch
    lease_expires_at BIGINT,
    version BIGINT NOT NULL,
    data TEXT NOT NULL
);

-- The claim queries: `todo` tasks in claim order (highest priority, then oldest = smallest id),
-- and leases that may have expired (only rows holding a lease are in that index).
CREATE INDEX tasks_claim ON tasks (status, priority DESC, id);
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX tasks_template ON tasks (template_id);
CREATE INDEX tasks_agent ON tasks (assigned_agent);

CREATE TABLE task_steps (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (task_id, idx)
) WITHOUT ROWID;

CREATE TABLE logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT,
    data TEXT NOT NULL
);

CREATE INDEX logs_task ON logs (task_id, seq);
