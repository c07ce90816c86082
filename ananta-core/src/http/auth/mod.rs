//! Authentication and roles of the HTTP API: the system token (`AGENT_TOKEN`, full admin
//! access, rotatable), user logins with argon2-hashed passwords that yield HS256 JWTs carrying a
//! [`Role`], the registration secret of `POST /register`, and per-client-IP rate limits.
//!
//! Routers ask [`Auth::authorize`] with the [`Access`] a route needs; the answer is either the
//! [`Principal`] who made the request or an [`ApiError`] (401 without valid credentials, 403
//! with a role that is too low). Without a system token the server runs in the original Ananta's insecure
//! mode: every route is open ([`Auth::is_open`], [`Auth::warn_if_open`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};

use crate::http::error::ApiError;

mod builder;
mod credentials;
mod jwt;
mod rate;
mod roles;
mod rotation;
#[cfg(test)]
mod tests;
mod users;

use credentials::{bad_login, missing_credentials, non_empty, random_hex, secret_eq};
use jwt::{Claims, DEFAULT_JWT_TTL, JWT_LEEWAY_SECS};
use rate::{DEFAULT_LOGIN_PER_MINUTE, DEFAULT_REGISTER_PER_MINUTE, Limiter, limiter};
use rotation::{TOKEN_SUBJECT, Tokens};
use users::{User, user_list};

pub use builder::AuthBuilder;
pub use roles::{Access, Principal, RateBucket, Role};
pub use users::{LoginRequest, LoginResponse};

/// Why an [`Auth`] could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A setting is missing, empty or malformed.
    #[error("invalid auth configuration: {0}")]
    InvalidConfig(String),
    /// A password could not be hashed, or a stored hash is not a valid argon2 PHC string.
    #[error("password hash: {0}")]
    Hash(String),
}

struct Inner {
    tokens: RwLock<Tokens>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ephemeral_secret: bool,
    ttl: Duration,
    users: BTreeMap<String, User>,
    registration_secret: Option<String>,
    login_limit: Option<Limiter>,
    register_limit: Option<Limiter>,
}

impl Inner {
    /// Open mode with this JWT secret, no users and default rate limits.
    fn new(secret: &[u8], ephemeral_secret: bool) -> Inner {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = JWT_LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Inner {
            tokens: RwLock::new(Tokens::default()),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ephemeral_secret,
            ttl: DEFAULT_JWT_TTL,
            users: BTreeMap::new(),
            registration_secret: None,
            login_limit: limiter(DEFAULT_LOGIN_PER_MINUTE),
            register_limit: limiter(DEFAULT_REGISTER_PER_MINUTE),
        }
    }
}

/// Authentication and roles for the HTTP routers; cheap to clone (shared state).
///
/// Credentials are `Authorization: Bearer <x>` or, failing that, a `?token=<x>` query
/// parameter, where `<x>` is the system token (`AGENT_TOKEN`, role admin) or a JWT from
/// [`Auth::login`]. [`Access`] says what a route needs: `Read` any role, `Write` user or admin,
/// `Admin` admin only.
///
/// ```
/// use ananta_core::http::{Access, Auth, Role};
/// use axum::http::{HeaderMap, HeaderValue, header};
///
/// let auth = Auth::builder()
///     .token(Some("s3cret-system-token".into()))
///     .jwt_secret("a long, random signing key from SECRET_KEY")
///     .build()?;
///
/// let mut headers = HeaderMap::new();
/// let denied = auth.authorize(&headers, None, Access::Write).unwrap_err();
/// assert_eq!(denied.status.as_u16(), 401);
///
/// headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret-system-token"));
/// let caller = auth.authorize(&headers, None, Access::Admin)?;
/// assert_eq!(caller.role, Role::Admin);
///
/// // A reader's JWT may read but not write.
/// let jwt = auth.issue_jwt("alice", Role::Reader)?;
/// let mut headers = HeaderMap::new();
/// headers.insert(header::AUTHORIZATION, format!("Bearer {jwt}").parse()?);
/// assert_eq!(auth.authorize(&headers, None, Access::Read)?.subject, "alice");
/// assert_eq!(auth.authorize(&headers, None, Access::Write).unwrap_err().status.as_u16(), 403);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (open, pending) = {
            let tokens = self.tokens();
            (tokens.current.is_none(), tokens.pending.is_some())
        };
        f.debug_struct("Auth")
            .field("open", &open)
            .field("rotation_pending", &pending)
            .field(
                "jwt_secret",
                &if self.inner.ephemeral_secret {
                    "<random>"
                } else {
                    "<set>"
                },
            )
            .field("jwt_ttl", &self.inner.ttl)
            .field("users", &self.users())
            .field(
                "registration_secret",
                &self.inner.registration_secret.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl Auth {
    /// A builder: no token (open mode), a random JWT secret, JWTs valid for an hour, no users,
    /// default rate limits.
    pub fn builder() -> AuthBuilder {
        AuthBuilder {
            token: None,
            jwt_secret: None,
            ttl: DEFAULT_JWT_TTL,
            users: BTreeMap::new(),
            registration_secret: None,
            login_per_minute: DEFAULT_LOGIN_PER_MINUTE,
            register_per_minute: DEFAULT_REGISTER_PER_MINUTE,
        }
    }

    /// Reads the settings from the environment: `AGENT_TOKEN`, `SECRET_KEY`,
    /// `INITIAL_ADMIN_PASSWORD` (creates user `admin` with role admin; `INITIAL_ADMIN_USER`
    /// overrides the name), `REGISTRATION_SECRET`, `JWT_TTL_SECS`. Empty values count as unset.
    pub fn from_env() -> Result<Auth, AuthError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Auth::from_env`] with the variables looked up through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Auth, AuthError> {
        let var = |name: &str| non_empty(get(name));
        let mut builder = Auth::builder()
            .token(var("AGENT_TOKEN"))
            .registration_secret(var("REGISTRATION_SECRET"));
        if let Some(secret) = var("SECRET_KEY") {
            builder = builder.jwt_secret(secret);
        }
        if let Some(ttl) = var("JWT_TTL_SECS") {
            let secs: u64 = ttl.parse().map_err(|_| {
                AuthError::InvalidConfig(format!(
                    "JWT_TTL_SECS must be a whole number of seconds, got {ttl:?}"
                ))
            })?;
            builder = builder.jwt_ttl(Duration::from_secs(secs));
        }
        let admin_user = var("INITIAL_ADMIN_USER");
        // A password is taken as it is (spaces included); only an empty one is unset.
        match get("INITIAL_ADMIN_PASSWORD").filter(|p| !p.trim().is_empty()) {
            Some(password) => {
                let name = admin_user.unwrap_or_else(|| "admin".into());
                builder = builder.user(name, &password, Role::Admin)?;
            }
            None if admin_user.is_some() => {
                tracing::warn!(
                    "INITIAL_ADMIN_USER is set without INITIAL_ADMIN_PASSWORD; no admin user is created"
                );
            }
            None => {}
        }
        builder.build()
    }

    /// No token, no users: the insecure open mode (for tests and embedding).
    pub fn open() -> Auth {
        Auth {
            inner: Arc::new(Inner::new(random_hex(32).as_bytes(), true)),
        }
    }

    /// True when no system token is configured: every route is allowed without credentials.
    pub fn is_open(&self) -> bool {
        self.tokens().current.is_none()
    }

    /// Logs a loud warning when running in open mode; `role` names the server (`hub`,
    /// `worker`).
    pub fn warn_if_open(&self, role: &str) {
        if self.is_open() {
            tracing::warn!(
                "INSECURE MODE: AGENT_TOKEN is not set; every endpoint of this {role} is open to anyone who can reach it"
            );
        }
    }

    /// Checks a request's credentials for `access`.
    ///
    /// Credentials are `Authorization: Bearer <x>`, else a `token` parameter of the raw query
    /// string `query` (percent-decoded). `<x>` is the system token (compared in constant
    /// time; principal `agent-token`, role admin) or a JWT signed with the secret whose claims
    /// carry `sub` and `role`.
    ///
    /// - open mode: everything is allowed (principal `anonymous`, role admin);
    /// - [`Access::Public`]: always allowed (an `anonymous` reader without valid credentials);
    /// - otherwise no, an invalid or an expired credential is 401 `unauthorized`, a valid one
    ///   with too low a role 403 `forbidden`.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        access: Access,
    ) -> Result<Principal, ApiError> {
        if self.is_open() {
            return Ok(Principal::anonymous(Role::Admin));
        }
        let verified = self.verified(headers, query);
        if access == Access::Public {
            return Ok(verified
                .ok()
                .flatten()
                .unwrap_or_else(|| Principal::anonymous(Role::Reader)));
        }
        let principal = verified?.ok_or_else(missing_credentials)?;
        if access.allows(principal.role) {
            Ok(principal)
        } else {
            let needed = match access {
                Access::Admin => "the admin role",
                _ => "the user or admin role",
            };
            Err(ApiError::forbidden(format!(
                "this endpoint needs {needed}; the caller has the {} role",
                principal.role
            )))
        }
    }

    /// For `POST /register`: allowed when `secret` matches the registration secret (constant
    /// time) or the caller has valid write credentials.
    ///
    /// Without a registration secret this is [`Auth::authorize`] with [`Access::Write`] (so
    /// open mode allows it). With one, a missing or wrong secret is 401 unless the caller has
    /// verified write credentials — also in open mode.
    pub fn check_registration(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        secret: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(expected) = self.inner.registration_secret.as_deref() else {
            return self.authorize(headers, query, Access::Write).map(|_| ());
        };
        if secret.is_some_and(|s| secret_eq(expected, s)) {
            return Ok(());
        }
        match self.verified(headers, query) {
            Ok(Some(principal)) if Access::Write.allows(principal.role) => Ok(()),
            Ok(Some(principal)) => Err(ApiError::forbidden(format!(
                "registering needs the registration secret or the user or admin role; the caller has the {} role",
                principal.role
            ))),
            _ => Err(ApiError::unauthorized(
                "registering needs the hub's registration secret or valid credentials",
            )),
        }
    }
}
