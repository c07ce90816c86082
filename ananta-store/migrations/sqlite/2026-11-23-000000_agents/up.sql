-- The agent registry. Like the task board, each row keeps the whole agent (its `AgentInfo`) as
-- JSON in `data` (the source of truth); the other columns are copies written in the same
-- statement, for lookups and ordering. `name` is the agent's id; it sorts bytewise (SQLite's
-- default BINARY collation), so `ORDER BY name` is the registry's order.

CREATE TABLE agents (
    name TEXT PRIMARY KEY NOT NULL,
    -- 'unknown', 'online' or 'offline'
    status TEXT NOT NULL,
    -- microseconds since the Unix epoch
    last_seen BIGINT NOT NULL,
    registered_at BIGINT NOT NULL,
    card_version BIGINT NOT NULL,
    data TEXT NOT NULL
);
