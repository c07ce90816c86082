//! Users: `POST /login` with argon2-hashed passwords.

use std::collections::BTreeMap;
use std::fmt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::http::error::ApiError;

/// `POST /login`: a user's credentials.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoginRequest {
    /// The user name.
    pub username: String,
    /// The password in clear text.
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `POST /login`: the answer to good credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoginResponse {
    /// The JWT, to be sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The user's role.
    pub role: Role,
}

pub(super) struct User {
    /// An argon2 PHC string.
    pub(super) hash: String,
    pub(super) role: Role,
}

pub(super) fn user_list(users: &BTreeMap<String, User>) -> Vec<(String, Role)> {
    users
        .iter()
        .map(|(name, user)| (name.clone(), user.role))
        .collect()
}

impl Auth {
    /// The users who can log in, with their roles (no hashes).
    pub fn users(&self) -> Vec<(String, Role)> {
        user_list(&self.inner.users)
    }

    /// `POST /login`: checks the password against the user's argon2 hash and answers with a
    /// JWT. An unknown user costs the same hash work as a known one, so answers do not tell
    /// which names exist; either way, and without any users, the answer is 401
    /// `invalid_credentials`.
    ///
    /// Hashing takes tens of milliseconds of CPU: call this from a blocking task
    /// (`tokio::task::spawn_blocking`).
    pub fn login(&self, request: &LoginRequest) -> Result<LoginResponse, ApiError> {
        let users = &self.inner.users;
        let (hash, role) = match users.get(&request.username) {
            Some(user) => (user.hash.as_str(), Some(user.role)),
            // Unknown name: verify against some user's hash anyway (same work), and refuse.
            None => match users.values().next() {
                Some(user) => (user.hash.as_str(), None),
                None => return Err(bad_login()),
            },
        };
        let matches = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(request.password.as_bytes(), &parsed)
                .is_ok()
        });
        match role {
            Some(role) if matches => {
                let token = self.issue_jwt(&request.username, role)?;
                Ok(LoginResponse {
                    token,
                    token_type: "Bearer".into(),
                    expires_in: self.inner.ttl.as_secs(),
                    role,
                })
            }
            _ => Err(bad_login()),
        }
    }
}
