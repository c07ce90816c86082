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
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::{HeaderMap, StatusCode, header};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::error::ApiError;

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
    fn anonymous(role: Role) -> Self {
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

/// Seconds of clock skew a JWT's `exp` is granted.
const JWT_LEEWAY_SECS: u64 = 5;
/// Default lifetime of a JWT.
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(3600);
/// Default per-minute limits.
const DEFAULT_LOGIN_PER_MINUTE: u32 = 10;
const DEFAULT_REGISTER_PER_MINUTE: u32 = 60;
/// Every this many rate checks, limiter state of idle clients is dropped.
const RATE_CLEANUP_EVERY: u64 = 1024;
/// The subject of the system token.
const TOKEN_SUBJECT: &str = "agent-token";

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    #[serde(default)]
    iat: u64,
    exp: u64,
}

struct User {
    /// An argon2 PHC string.
    hash: String,
    role: Role,
}

#[derive(Default)]
struct Tokens {
    current: Option<String>,
    pending: Option<String>,
}

struct Limiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
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

/// Builds an [`Auth`]; see [`Auth::builder`].
pub struct AuthBuilder {
    token: Option<String>,
    jwt_secret: Option<String>,
    ttl: Duration,
    users: BTreeMap<String, User>,
    registration_secret: Option<String>,
    login_per_minute: u32,
    register_per_minute: u32,
}

impl fmt::Debug for AuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthBuilder")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("jwt_ttl", &self.ttl)
            .field("users", &user_list(&self.users))
            .field(
                "registration_secret",
                &self.registration_secret.as_ref().map(|_| "<set>"),
            )
            .field("login_per_minute", &self.login_per_minute)
            .field("register_per_minute", &self.register_per_minute)
            .finish()
    }
}

fn user_list(users: &BTreeMap<String, User>) -> Vec<(String, Role)> {
    users
        .iter()
        .map(|(name, user)| (name.clone(), user.role))
        .collect()
}

/// `len` random bytes from the operating system, hex-encoded.
fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
fn secret_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A setting that is `None` when empty (after trimming).
fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn limiter(per_minute: u32) -> Option<Limiter> {
    NonZeroU32::new(per_minute).map(|n| Limiter {
        limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n).allow_burst(n)),
        checks: AtomicU64::new(0),
    })
}

/// The rate-limit key of a client: IPv4 (also when mapped into IPv6) as is, IPv6 by its /64
/// prefix, which one client usually owns whole.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Decodes a form-urlencoded component (`+` is a space, `%XX` a byte; malformed escapes stay
/// as they are).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The credential of a request: a bearer token in `Authorization`, else `?token=`.
fn credential(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty());
    if bearer.is_some() {
        return bearer;
    }
    query?
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == "token").then(|| percent_decode(value).trim().to_string())
        })
        .find(|v| !v.is_empty())
}

fn missing_credentials() -> ApiError {
    ApiError::unauthorized(
        "this endpoint needs credentials: send `Authorization: Bearer <token>` or `?token=<token>`",
    )
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("the credentials are invalid or expired")
}

fn bad_login() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "unknown user or wrong password",
    )
}

impl AuthBuilder {
    /// The system token (`AGENT_TOKEN`): full admin access. `None` is the insecure open mode.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The key JWTs are signed with (HS256; `SECRET_KEY`). Use at least 32 random bytes.
    pub fn jwt_secret(mut self, secret: impl Into<String>) -> Self {
        self.jwt_secret = Some(secret.into());
        self
    }

    /// How long a JWT from [`Auth::login`] is valid (default one hour).
    pub fn jwt_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// A user who can log in; the password is hashed with argon2id (default parameters, random
    /// salt). A second user of the same name replaces the first.
    pub fn user(
        mut self,
        name: impl Into<String>,
        password: &str,
        role: Role,
    ) -> Result<Self, AuthError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(AuthError::InvalidConfig("a user name is empty".into()));
        }
        if password.is_empty() {
            return Err(AuthError::InvalidConfig(format!(
                "the password of user {name} is empty"
            )));
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AuthError::Hash(e.to_string()))?
            .to_string();
        self.users.insert(name, User { hash, role });
        Ok(self)
    }

    /// A user whose argon2 hash is stored already (a PHC string such as
    /// `$argon2id$v=19$m=19456,t=2,p=1$…$…`); it is validated here.
    pub fn user_hash(
        mut self,
        name: impl Into<String>,
        phc_hash: impl Into<String>,
        role: Role,
    ) -> Result<Self, AuthError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(AuthError::InvalidConfig("a user name is empty".into()));
        }
        let hash = phc_hash.into();
        {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| AuthError::Hash(format!("the hash of user {name}: {e}")))?;
            argon2::Algorithm::try_from(parsed.algorithm).map_err(|e| {
                AuthError::Hash(format!("the hash of user {name} is not argon2: {e}"))
            })?;
            argon2::Params::try_from(&parsed)
                .map_err(|e| AuthError::Hash(format!("the hash of user {name}: {e}")))?;
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err(AuthError::Hash(format!(
                    "the hash of user {name} has no salt or no hash value"
                )));
            }
        }
        self.users.insert(name, User { hash, role });
        Ok(self)
    }

    /// A secret workers may present to `POST /register` instead of admin or user credentials
    /// (`REGISTRATION_SECRET`).
    pub fn registration_secret(mut self, secret: Option<String>) -> Self {
        self.registration_secret = secret;
        self
    }

    /// Requests a minute per client IP (burst = `per_minute`; 0 = unlimited). Defaults:
    /// login 10, register 60.
    pub fn rate_limit(mut self, bucket: RateBucket, per_minute: u32) -> Self {
        match bucket {
            RateBucket::Login => self.login_per_minute = per_minute,
            RateBucket::Register => self.register_per_minute = per_minute,
        }
        self
    }

    /// Builds the [`Auth`]. Without a JWT secret a random one is made: logins then stay valid
    /// only for this process.
    pub fn build(self) -> Result<Auth, AuthError> {
        let token = match self.token {
            Some(t) if t.trim().is_empty() => {
                return Err(AuthError::InvalidConfig(
                    "the system token is empty; pass None for open mode".into(),
                ));
            }
            t => t.map(|t| t.trim().to_string()),
        };
        if self
            .registration_secret
            .as_ref()
            .is_some_and(|s| s.is_empty())
        {
            return Err(AuthError::InvalidConfig(
                "the registration secret is empty; pass None for none".into(),
            ));
        }
        let (secret, ephemeral_secret) = match self.jwt_secret {
            Some(s) if s.is_empty() => {
                return Err(AuthError::InvalidConfig("the JWT secret is empty".into()));
            }
            Some(s) => {
                if s.len() < 32 {
                    tracing::warn!(
                        "SECRET_KEY is shorter than 32 bytes; use a long random key to sign JWTs"
                    );
                }
                (s, false)
            }
            None => {
                tracing::info!(
                    "SECRET_KEY is not set; user logins are signed with a random key and stay valid only for this process"
                );
                (random_hex(32), true)
            }
        };
        let mut inner = Inner::new(secret.as_bytes(), ephemeral_secret);
        inner.tokens = RwLock::new(Tokens {
            current: token,
            pending: None,
        });
        inner.ttl = self.ttl;
        inner.users = self.users;
        inner.registration_secret = self.registration_secret;
        inner.login_limit = limiter(self.login_per_minute);
        inner.register_limit = limiter(self.register_per_minute);
        Ok(Auth {
            inner: Arc::new(inner),
        })
    }
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

    fn tokens(&self) -> std::sync::RwLockReadGuard<'_, Tokens> {
        self.inner.tokens.read().unwrap_or_else(|p| p.into_inner())
    }

    fn tokens_mut(&self) -> std::sync::RwLockWriteGuard<'_, Tokens> {
        self.inner.tokens.write().unwrap_or_else(|p| p.into_inner())
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

    /// The users who can log in, with their roles (no hashes).
    pub fn users(&self) -> Vec<(String, Role)> {
        user_list(&self.inner.users)
    }

    /// Whether `credential` is the system token or the pending one of a rotation.
    fn is_system_token(&self, credential: &str) -> bool {
        let tokens = self.tokens();
        let current = tokens
            .current
            .as_deref()
            .is_some_and(|t| secret_eq(t, credential));
        let pending = tokens
            .pending
            .as_deref()
            .is_some_and(|t| secret_eq(t, credential));
        current | pending
    }

    /// The principal behind a request's credential, checked (no open-mode shortcut): `None`
    /// without a credential, 401 with an invalid one.
    fn verified(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Principal>, ApiError> {
        let Some(credential) = credential(headers, query) else {
            return Ok(None);
        };
        if self.is_system_token(&credential) {
            return Ok(Some(Principal {
                subject: TOKEN_SUBJECT.into(),
                role: Role::Admin,
            }));
        }
        let data = jsonwebtoken::decode::<Claims>(
            &credential,
            &self.inner.decoding,
            &self.inner.validation,
        )
        .map_err(|_| invalid_credentials())?;
        Ok(Some(Principal {
            subject: data.claims.sub,
            role: data.claims.role,
        }))
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

    /// The current system token, if any.
    pub fn token(&self) -> Option<String> {
        self.tokens().current.clone()
    }

    /// Token rotation, step 1: makes a new random token (32 random bytes, hex) that is
    /// accepted alongside the current one until [`Auth::finish_rotation`] or
    /// [`Auth::abort_rotation`], and returns it. A pending token of an earlier rotation is
    /// replaced.
    pub fn begin_rotation(&self) -> String {
        let token = random_hex(32);
        self.tokens_mut().pending = Some(token.clone());
        tracing::info!("system token rotation begun");
        token
    }

    /// Token rotation, step 2: the pending token becomes the only valid one. False when none
    /// was pending.
    pub fn finish_rotation(&self) -> bool {
        let mut tokens = self.tokens_mut();
        match tokens.pending.take() {
            Some(token) => {
                tokens.current = Some(token);
                tracing::info!("system token rotated");
                true
            }
            None => false,
        }
    }

    /// Drops a pending token (e.g. when telling the hub about it failed).
    pub fn abort_rotation(&self) {
        if self.tokens_mut().pending.take().is_some() {
            tracing::info!("system token rotation aborted");
        }
    }

    /// Replaces the system token outright and drops a pending one. `None` (or an empty token)
    /// is open mode.
    pub fn set_token(&self, token: Option<String>) {
        let token = non_empty(token);
        let open = token.is_none();
        {
            let mut tokens = self.tokens_mut();
            tokens.current = token;
            tokens.pending = None;
        }
        if open {
            tracing::warn!("the system token was removed; the server is in insecure open mode");
        }
    }

    /// Per-client-IP token-bucket rate limit of `bucket` (IPv6 clients by /64 prefix).
    /// Exceeded: 429 `rate_limited` with `Retry-After` (seconds until the next request is
    /// allowed, at least 1).
    pub fn check_rate(&self, bucket: RateBucket, ip: IpAddr) -> Result<(), ApiError> {
        let limit = match bucket {
            RateBucket::Login => &self.inner.login_limit,
            RateBucket::Register => &self.inner.register_limit,
        };
        let Some(limit) = limit else {
            return Ok(());
        };
        if limit.checks.fetch_add(1, Ordering::Relaxed) % RATE_CLEANUP_EVERY
            == RATE_CLEANUP_EVERY - 1
        {
            limit.limiter.retain_recent();
            limit.limiter.shrink_to_fit();
        }
        limit.limiter.check_key(&rate_key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(limit.limiter.clock().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address; try again later",
            )
            .retry_after(secs.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use axum::http::HeaderValue;

    use super::*;

    const TOKEN: &str = "system-token-0123456789";
    const SECRET: &str = "a-jwt-signing-secret-of-at-least-32-bytes";

    fn bearer(credential: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {credential}")).unwrap(),
        );
        headers
    }

    fn secured() -> Auth {
        Auth::builder()
            .token(Some(TOKEN.into()))
            .jwt_secret(SECRET)
            .build()
            .unwrap()
    }

    fn status(result: Result<Principal, ApiError>) -> u16 {
        match result {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    const ALL: [Access; 4] = [Access::Public, Access::Read, Access::Write, Access::Admin];

    #[test]
    fn open_mode_allows_everything() {
        let auth = Auth::open();
        assert!(auth.is_open());
        auth.warn_if_open("hub");
        for access in ALL {
            let who = auth.authorize(&HeaderMap::new(), None, access).unwrap();
            assert_eq!(who.subject, "anonymous");
            assert_eq!(who.role, Role::Admin);
            // Even garbage credentials are ignored.
            assert!(auth.authorize(&bearer("junk"), None, access).is_ok());
        }
        assert!(
            auth.check_registration(&HeaderMap::new(), None, None)
                .is_ok()
        );
        // A builder without a token is open too.
        assert!(Auth::builder().build().unwrap().is_open());
    }

    #[test]
    fn system_token_in_header_or_query() {
        let auth = secured();
        assert!(!auth.is_open());
        let who = auth.authorize(&bearer(TOKEN), None, Access::Admin).unwrap();
        assert_eq!(
            who,
            Principal {
                subject: "agent-token".into(),
                role: Role::Admin
            }
        );
        // Scheme case does not matter.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {TOKEN}")).unwrap(),
        );
        assert!(auth.authorize(&headers, None, Access::Admin).is_ok());

        let odd = Auth::builder()
            .token(Some("a b+c/d&e=f%".into()))
            .build()
            .unwrap();
        let query = "limit=5&token=a%20b%2Bc%2Fd%26e%3Df%25&x=1";
        let who = odd
            .authorize(&HeaderMap::new(), Some(query), Access::Write)
            .unwrap();
        assert_eq!(who.subject, "agent-token");
        // `+` is a space in a query, so the unencoded token is not this one.
        assert_eq!(
            status(odd.authorize(&HeaderMap::new(), Some("token=a+b+c/d"), Access::Read)),
            401
        );
        assert!(
            auth.authorize(
                &HeaderMap::new(),
                Some(&format!("token={TOKEN}")),
                Access::Admin
            )
            .is_ok()
        );
        // A header without the bearer scheme falls back to the query.
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Zm9vOmJhcg=="),
        );
        assert!(
            auth.authorize(&basic, Some(&format!("token={TOKEN}")), Access::Admin)
                .is_ok()
        );
        assert_eq!(status(auth.authorize(&basic, None, Access::Read)), 401);
    }

    #[test]
    fn wrong_or_missing_token_is_401_except_public() {
        let auth = secured();
        let wrong = bearer("system-token-0123456780");
        let prefix = bearer("system-token");
        for access in [Access::Read, Access::Write, Access::Admin] {
            for headers in [&HeaderMap::new(), &wrong, &prefix] {
                let e = auth.authorize(headers, None, access).unwrap_err();
                assert_eq!(e.status.as_u16(), 401, "{access:?}");
                assert_eq!(e.code(), "unauthorized");
                assert!(!e.body.error.message.contains("system-token"));
            }
            assert_eq!(
                status(auth.authorize(&HeaderMap::new(), Some("token=nope"), access)),
                401
            );
            assert_eq!(
                status(auth.authorize(&HeaderMap::new(), Some("token="), access)),
                401
            );
        }
        let who = auth.authorize(&wrong, None, Access::Public).unwrap();
        assert_eq!(who, Principal::anonymous(Role::Reader));
        let who = auth
            .authorize(&HeaderMap::new(), None, Access::Public)
            .unwrap();
        assert_eq!(who.role, Role::Reader);
        let who = auth
            .authorize(&bearer(TOKEN), None, Access::Public)
            .unwrap();
        assert_eq!(who.subject, "agent-token");
    }

    #[test]
    fn jwt_roles() {
        let auth = secured();
        let admin = bearer(&auth.issue_jwt("root", Role::Admin).unwrap());
        let user = bearer(&auth.issue_jwt("bob", Role::User).unwrap());
        let reader = bearer(&auth.issue_jwt("eve", Role::Reader).unwrap());
        let expected: [(&HeaderMap, [u16; 4]); 3] = [
            (&admin, [200, 200, 200, 200]),
            (&user, [200, 200, 200, 403]),
            (&reader, [200, 200, 403, 403]),
        ];
        for (headers, statuses) in expected {
            for (access, want) in ALL.into_iter().zip(statuses) {
                assert_eq!(
                    status(auth.authorize(headers, None, access)),
                    want,
                    "{access:?}"
                );
            }
        }
        let e = auth.authorize(&reader, None, Access::Write).unwrap_err();
        assert_eq!(e.code(), "forbidden");
        let who = auth.authorize(&user, None, Access::Write).unwrap();
        assert_eq!(
            who,
            Principal {
                subject: "bob".into(),
                role: Role::User
            }
        );
        // A JWT works as `?token=` as well.
        let jwt = auth.issue_jwt("bob", Role::User).unwrap();
        assert!(
            auth.authorize(
                &HeaderMap::new(),
                Some(&format!("token={jwt}")),
                Access::Write
            )
            .is_ok()
        );
    }

    fn forge(secret: &str, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn expired_foreign_or_malformed_jwts_are_401() {
        let auth = secured();
        let now = jsonwebtoken::get_current_timestamp();
        let good = forge(
            SECRET,
            &serde_json::json!({"sub": "bob", "role": "user", "exp": now + 60}),
        );
        assert!(auth.authorize(&bearer(&good), None, Access::Write).is_ok());
        let cases = [
            forge(
                SECRET,
                &serde_json::json!({"sub": "bob", "role": "user", "exp": now - 60}),
            ),
            forge(
                "another-secret-of-at-least-32-bytes!!",
                &serde_json::json!({"sub": "bob", "role": "admin", "exp": now + 60}),
            ),
            forge(
                SECRET,
                &serde_json::json!({"sub": "bob", "role": "superuser", "exp": now + 60}),
            ),
            forge(SECRET, &serde_json::json!({"sub": "bob", "role": "user"})),
            forge(
                SECRET,
                &serde_json::json!({"role": "admin", "exp": now + 60}),
            ),
            "not.a.jwt".to_string(),
        ];
        for jwt in cases {
            for access in [Access::Read, Access::Write, Access::Admin] {
                assert_eq!(
                    status(auth.authorize(&bearer(&jwt), None, access)),
                    401,
                    "{jwt}"
                );
            }
        }
        // A zero lifetime expires (once the leeway has passed).
        let short = Auth::builder()
            .token(Some(TOKEN.into()))
            .jwt_secret(SECRET)
            .jwt_ttl(Duration::ZERO)
            .build()
            .unwrap();
        let jwt = short.issue_jwt("bob", Role::User).unwrap();
        let claims: Claims =
            jsonwebtoken::decode(&jwt, &DecodingKey::from_secret(SECRET.as_bytes()), &{
                let mut v = Validation::new(Algorithm::HS256);
                v.validate_exp = false;
                v
            })
            .unwrap()
            .claims;
        assert_eq!(claims.exp, claims.iat);
        // Another process with another secret does not accept this one's tokens.
        let other = Auth::builder().token(Some(TOKEN.into())).build().unwrap();
        let jwt = auth.issue_jwt("root", Role::Admin).unwrap();
        assert_eq!(
            status(other.authorize(&bearer(&jwt), None, Access::Read)),
            401
        );
    }

    #[test]
    fn login() {
        let auth = Auth::builder()
            .token(Some(TOKEN.into()))
            .jwt_secret(SECRET)
            .jwt_ttl(Duration::from_secs(120))
            .user("alice", "correct horse", Role::User)
            .unwrap()
            .build()
            .unwrap();
        let answer = auth
            .login(&LoginRequest {
                username: "alice".into(),
                password: "correct horse".into(),
            })
            .unwrap();
        assert_eq!(answer.token_type, "Bearer");
        assert_eq!(answer.expires_in, 120);
        assert_eq!(answer.role, Role::User);
        let who = auth
            .authorize(&bearer(&answer.token), None, Access::Write)
            .unwrap();
        assert_eq!(who.subject, "alice");
        assert_eq!(
            status(auth.authorize(&bearer(&answer.token), None, Access::Admin)),
            403
        );

        for (username, password) in [
            ("alice", "wrong"),
            ("alice", ""),
            ("mallory", "correct horse"),
        ] {
            let e = auth
                .login(&LoginRequest {
                    username: username.into(),
                    password: password.into(),
                })
                .unwrap_err();
            assert_eq!(e.status.as_u16(), 401);
            assert_eq!(e.code(), "invalid_credentials");
        }
        let e = secured()
            .login(&LoginRequest {
                username: "admin".into(),
                password: "admin".into(),
            })
            .unwrap_err();
        assert_eq!(e.code(), "invalid_credentials");
    }

    #[test]
    fn stored_hashes() {
        let auth = Auth::builder()
            .user("alice", "pw-alice", Role::Reader)
            .unwrap()
            .build()
            .unwrap();
        let hash = auth.inner.users["alice"].hash.clone();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("pw-alice"));
        // A stored hash logs in like the password it came from.
        let copy = Auth::builder()
            .user_hash("alice2", hash.clone(), Role::Admin)
            .unwrap()
            .build()
            .unwrap();
        let answer = copy
            .login(&LoginRequest {
                username: "alice2".into(),
                password: "pw-alice".into(),
            })
            .unwrap();
        assert_eq!(answer.role, Role::Admin);
        assert_eq!(copy.users(), vec![("alice2".to_string(), Role::Admin)]);
        for bad in [
            "",
            "pw-alice",
            "$2b$12$abcdefghijklmnopqrstuu5Ff0n0jlG9FpJ1Wj1Ea/7eE1X8nF9mG",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1",
        ] {
            assert!(
                matches!(
                    Auth::builder().user_hash("x", bad, Role::User),
                    Err(AuthError::Hash(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Auth::builder().user("", "pw", Role::User),
            Err(AuthError::InvalidConfig(_))
        ));
        assert!(matches!(
            Auth::builder().user("x", "", Role::User),
            Err(AuthError::InvalidConfig(_))
        ));
    }

    #[test]
    fn rotation() {
        let auth = secured();
        assert!(!auth.finish_rotation());
        let new = auth.begin_rotation();
        assert_eq!(new.len(), 64);
        assert!(new.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(new, TOKEN);
        assert_eq!(auth.token().as_deref(), Some(TOKEN));
        assert!(auth.authorize(&bearer(TOKEN), None, Access::Admin).is_ok());
        assert!(auth.authorize(&bearer(&new), None, Access::Admin).is_ok());
        // A second begin replaces the pending token.
        let newer = auth.begin_rotation();
        assert_ne!(newer, new);
        assert_eq!(
            status(auth.authorize(&bearer(&new), None, Access::Read)),
            401
        );
        assert!(auth.finish_rotation());
        assert_eq!(auth.token(), Some(newer.clone()));
        assert_eq!(
            status(auth.authorize(&bearer(TOKEN), None, Access::Read)),
            401
        );
        assert!(auth.authorize(&bearer(&newer), None, Access::Admin).is_ok());
        assert!(!auth.finish_rotation());

        // Abort keeps the old token and drops the pending one.
        let dropped = auth.begin_rotation();
        auth.abort_rotation();
        assert_eq!(auth.token(), Some(newer.clone()));
        assert!(auth.authorize(&bearer(&newer), None, Access::Admin).is_ok());
        assert_eq!(
            status(auth.authorize(&bearer(&dropped), None, Access::Read)),
            401
        );
        assert!(!auth.finish_rotation());

        // Clones share the tokens.
        let clone = auth.clone();
        clone.set_token(Some("replaced".into()));
        assert_eq!(auth.token().as_deref(), Some("replaced"));
        assert!(
            auth.authorize(&bearer("replaced"), None, Access::Admin)
                .is_ok()
        );
        auth.set_token(Some("  ".into()));
        assert!(auth.is_open());
        auth.set_token(None);
        assert!(clone.is_open());
        assert!(
            clone
                .authorize(&HeaderMap::new(), None, Access::Admin)
                .is_ok()
        );
    }

    #[test]
    fn registration_secret_rules() {
        let none = HeaderMap::new();
        let code = |r: Result<(), ApiError>| r.map_or_else(|e| e.status.as_u16(), |()| 200);

        // Open mode without a secret: anyone.
        assert_eq!(
            code(Auth::open().check_registration(&none, None, None)),
            200
        );

        // Open mode with a secret: the secret or verified write credentials.
        let open = Auth::builder()
            .jwt_secret(SECRET)
            .registration_secret(Some("join-us".into()))
            .build()
            .unwrap();
        assert_eq!(
            code(open.check_registration(&none, None, Some("join-us"))),
            200
        );
        assert_eq!(code(open.check_registration(&none, None, None)), 401);
        assert_eq!(
            code(open.check_registration(&none, None, Some("join"))),
            401
        );
        let user = bearer(&open.issue_jwt("bob", Role::User).unwrap());
        let reader = bearer(&open.issue_jwt("eve", Role::Reader).unwrap());
        assert_eq!(code(open.check_registration(&user, None, None)), 200);
        assert_eq!(code(open.check_registration(&reader, None, None)), 403);
        assert_eq!(
            code(open.check_registration(&bearer("junk"), None, None)),
            401
        );

        // A token without a secret: write credentials.
        let auth = secured();
        assert_eq!(code(auth.check_registration(&none, None, None)), 401);
        assert_eq!(
            code(auth.check_registration(&none, None, Some("join-us"))),
            401
        );
        assert_eq!(
            code(auth.check_registration(&bearer(TOKEN), None, None)),
            200
        );
        let user = bearer(&auth.issue_jwt("bob", Role::User).unwrap());
        let reader = bearer(&auth.issue_jwt("eve", Role::Reader).unwrap());
        assert_eq!(code(auth.check_registration(&user, None, None)), 200);
        assert_eq!(code(auth.check_registration(&reader, None, None)), 403);

        // A token and a secret: either.
        let both = Auth::builder()
            .token(Some(TOKEN.into()))
            .registration_secret(Some("join-us".into()))
            .build()
            .unwrap();
        assert_eq!(
            code(both.check_registration(&none, None, Some("join-us"))),
            200
        );
        assert_eq!(
            code(both.check_registration(&none, None, Some("wrong"))),
            401
        );
        assert_eq!(code(both.check_registration(&none, None, None)), 401);
        assert_eq!(
            code(both.check_registration(&none, Some(&format!("token={TOKEN}")), Some("wrong"))),
            200
        );
    }

    #[test]
    fn rate_limits_per_client() {
        let auth = Auth::builder()
            .rate_limit(RateBucket::Login, 2)
            .rate_limit(RateBucket::Register, 0)
            .build()
            .unwrap();
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert!(auth.check_rate(RateBucket::Login, a).is_ok());
        assert!(auth.check_rate(RateBucket::Login, a).is_ok());
        let e = auth.check_rate(RateBucket::Login, a).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert_eq!(e.code(), "rate_limited");
        let wait = e.retry_after.unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(auth.check_rate(RateBucket::Login, b).is_ok());
        // The same client as IPv4 mapped into IPv6.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(
            auth.check_rate(RateBucket::Login, mapped)
                .unwrap_err()
                .status
                .as_u16(),
            429
        );
        // IPv6 clients count by /64.
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let v6c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(auth.check_rate(RateBucket::Login, v6a).is_ok());
        assert!(auth.check_rate(RateBucket::Login, v6b).is_ok());
        assert!(auth.check_rate(RateBucket::Login, v6a).is_err());
        assert!(auth.check_rate(RateBucket::Login, v6c).is_ok());
        assert_eq!(
            rate_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
        // Zero is unlimited; the buckets are separate.
        for _ in 0..100 {
            assert!(auth.check_rate(RateBucket::Register, a).is_ok());
        }
        // Defaults: 10 logins a minute.
        let default = Auth::open();
        for _ in 0..10 {
            assert!(default.check_rate(RateBucket::Login, a).is_ok());
        }
        assert!(default.check_rate(RateBucket::Login, a).is_err());
    }

    #[test]
    fn from_lookup_reads_the_environment() {
        let env = |vars: &[(&str, &str)]| {
            let vars: BTreeMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |name: &str| vars.get(name).cloned()
        };
        let auth = Auth::from_lookup(env(&[
            ("AGENT_TOKEN", " tok-from-env\n"),
            ("SECRET_KEY", SECRET),
            ("INITIAL_ADMIN_PASSWORD", "hunter2"),
            ("REGISTRATION_SECRET", "reg"),
            ("JWT_TTL_SECS", "90"),
        ]))
        .unwrap();
        assert_eq!(auth.token().as_deref(), Some("tok-from-env"));
        assert_eq!(auth.users(), vec![("admin".to_string(), Role::Admin)]);
        let answer = auth
            .login(&LoginRequest {
                username: "admin".into(),
                password: "hunter2".into(),
            })
            .unwrap();
        assert_eq!(answer.expires_in, 90);
        assert_eq!(answer.role, Role::Admin);
        // Signed with SECRET_KEY: another instance with the same key accepts it.
        let twin = Auth::builder()
            .token(Some("x".into()))
            .jwt_secret(SECRET)
            .build()
            .unwrap();
        assert!(
            twin.authorize(&bearer(&answer.token), None, Access::Admin)
                .is_ok()
        );
        assert!(
            auth.check_registration(&HeaderMap::new(), None, Some("reg"))
                .is_ok()
        );

        let renamed = Auth::from_lookup(env(&[
            ("INITIAL_ADMIN_PASSWORD", "hunter2"),
            ("INITIAL_ADMIN_USER", "root"),
        ]))
        .unwrap();
        assert_eq!(renamed.users(), vec![("root".to_string(), Role::Admin)]);
        assert!(renamed.is_open());

        // Empty values are unset.
        let empty = Auth::from_lookup(env(&[
            ("AGENT_TOKEN", ""),
            ("SECRET_KEY", ""),
            ("INITIAL_ADMIN_PASSWORD", " "),
            ("REGISTRATION_SECRET", ""),
            ("JWT_TTL_SECS", ""),
        ]))
        .unwrap();
        assert!(empty.is_open());
        assert!(empty.users().is_empty());
        assert!(empty.inner.registration_secret.is_none());
        assert!(empty.inner.ephemeral_secret);

        assert!(matches!(
            Auth::from_lookup(env(&[("JWT_TTL_SECS", "an hour")])),
            Err(AuthError::InvalidConfig(_))
        ));
    }

    #[test]
    fn builder_rejects_empty_secrets() {
        for builder in [
            Auth::builder().token(Some(" ".into())),
            Auth::builder().jwt_secret(""),
            Auth::builder().registration_secret(Some(String::new())),
        ] {
            assert!(matches!(builder.build(), Err(AuthError::InvalidConfig(_))));
        }
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let builder = Auth::builder()
            .token(Some(TOKEN.into()))
            .jwt_secret(SECRET)
            .registration_secret(Some("registration-secret".into()))
            .user("alice", "alice-password", Role::User)
            .unwrap();
        let hash = builder.users["alice"].hash.clone();
        let builder_debug = format!("{builder:?}");
        let auth = builder.build().unwrap();
        let pending = auth.begin_rotation();
        let debug = format!("{auth:?} {:?}", auth.clone());
        for text in [&debug, &builder_debug] {
            for secret in [
                TOKEN,
                SECRET,
                "registration-secret",
                "alice-password",
                &hash,
                &pending,
            ] {
                assert!(!text.contains(secret), "{text} shows {secret}");
            }
            assert!(text.contains("alice"));
        }
        assert!(debug.contains("rotation_pending: true"));
        let request = LoginRequest {
            username: "alice".into(),
            password: "alice-password".into(),
        };
        assert!(!format!("{request:?}").contains("alice-password"));
    }

    #[test]
    fn roles_and_access_serialize_lowercase() {
        assert_eq!(serde_json::to_value(Role::Reader).unwrap(), "reader");
        assert_eq!(serde_json::to_value(Access::Write).unwrap(), "write");
        assert_eq!(Role::Admin.to_string(), "admin");
        let response: LoginResponse = serde_json::from_value(serde_json::json!({
            "token": "t", "token_type": "Bearer", "expires_in": 3600, "role": "user"
        }))
        .unwrap();
        assert_eq!(response.role, Role::User);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2f%zz%4"), "a b c/%zz%4");
        assert_eq!(percent_decode("%C3%A4"), "ä");
        assert_eq!(credential(&HeaderMap::new(), Some("a=1&token")), None);
        assert_eq!(
            credential(&HeaderMap::new(), Some("token=&token=x")).as_deref(),
            Some("x")
        );
        assert_eq!(
            credential(&HeaderMap::new(), Some("to%6Ben=y")).as_deref(),
            Some("y")
        );
    }
}
