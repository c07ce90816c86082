//! The HS256 JWTs a login yields.

use std::time::Duration;

use axum::http::StatusCode;
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};

use super::*;
use crate::http::error::ApiError;

/// Seconds of clock skew a JWT's `exp` is granted.
pub(super) const JWT_LEEWAY_SECS: u64 = 5;

/// Default lifetime of a JWT.
pub(super) const DEFAULT_JWT_TTL: Duration = Duration::from_secs(3600);

#[derive(Serialize, Deserialize)]
pub(super) struct Claims {
    pub(super) sub: String,
    pub(super) role: Role,
    #[serde(default)]
    pub(super) iat: u64,
    pub(super) exp: u64,
}

impl Auth {
    /// Issues a JWT (HS256, `sub`, `role`, `iat`, `exp` = now + the configured lifetime).
    pub fn issue_jwt(&self, subject: &str, role: Role) -> Result<String, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_string(),
            role,
            iat: now,
            exp: now.saturating_add(self.inner.ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.inner.encoding).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "jwt_error",
                format!("could not sign a token: {e}"),
            )
        })
    }
}
