-- The agent registry on PostgreSQL. Like the task board, each row keeps the whole agent (its
-- `AgentInfo`) as JSONB in `data`; the other columns are copies kept in step with it (written
-- in the same statement), for lookups and ordering. Names sort bytewise (COLLATE "C"), so
-- `ORDER BY name` is the registry's order on every server, whatever its locale.

CREATE TABLE agents (
    name TEXT COLLATE "C" PRIMARY KEY,
    -- 'unknown', 'online' or 'offline'
    status TEXT NOT NULL,
    -- microseconds since the Unix epoch
    last_seen BIGINT NOT NULL,
    registered_at BIGINT NOT NULL,
    card_version BIGINT NOT NULL,
    data JSONB NOT NULL
);
