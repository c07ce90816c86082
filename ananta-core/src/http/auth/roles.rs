//! Roles, the access a route needs, and who made a request.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Roles carried by a user's JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, like the system token.
    Admin,
    /// Reads and writes (tasks, templates, steps), but no administration.
    User,
    /// Reads only.
    Reader,
}

impl Role {
    /// The role's name as in JWTs: `admin`, `user`, `reader`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Reader => "reader",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, with or without credentials (`/health`, `/login`).
    Public,
    /// Any authenticated caller, whatever its role.
    Read,
    /// Role [`Role::User`] or [`Role::Admin`].
    Write,
    /// Role [`Role::Admin`] (the system token has it).
    Admin,
}

impl Access {
    /// Whether a caller with `role` may use a route that needs this access.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::Read => true,
            Access::Write => matches!(role, Role::User | Role::Admin),
            Access::Admin => role == Role::Admin,
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `agent-token` for the system token, a JWT's `sub` for a user, `anonymous` otherwise.
    pub subject: String,
    /// What the caller may do.
    pub role: Role,
}

impl Principal {
    pub(super) fn anonymous(role: Role) -> Self {
        Self {
            subject: "anonymous".into(),
            role,
        }
    }
}

/// The rate-limited endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateBucket {
    /// `POST /login` (default 10 a minute per client IP).
    Login,
    /// `POST /register` (default 60 a minute per client IP).
    Register,
}
