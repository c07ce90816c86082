//! Diesel's view of the PostgreSQL schema (see `migrations/postgres`).

diesel::table! {
    templates (id) {
        id -> Text,
        name -> Text,
        created_at -> BigInt,
        data -> Jsonb,
    }
}

diesel::table! {
    tasks (id) {
        id -> Text,
        status -> Text,
        priority -> Integer,
        assigned_agent -> Nullable<Text>,
        template_id -> Nullable<Text>,
        lease_agent -> Nullable<Text>,
        lease_token -> Nullable<BigInt>,
        lease_expires_at -> Nullable<BigInt>,
        fence -> BigInt,
        version -> BigInt,
        data -> Jsonb,
    }
}

diesel::table! {
    task_steps (task_id, idx) {
        task_id -> Text,
        idx -> Integer,
        data -> Jsonb,
    }
}

diesel::table! {
    logs (seq) {
        seq -> BigInt,
        task_id -> Nullable<Text>,
        data -> Jsonb,
    }
}

diesel::table! {
    agents (name) {
        name -> Text,
        status -> Text,
        last_seen -> BigInt,
        registered_at -> BigInt,
        card_version -> BigInt,
        data -> Jsonb,
    }
}

diesel::allow_tables_to_appear_in_same_query!(templates, tasks, task_steps, logs, agents);
