//! [`AuthBuilder`]: the settings of an [`Auth`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};

use super::*;

/// Builds an [`Auth`]; see [`Auth::builder`].
pub struct AuthBuilder {
    pub(super) token: Option<String>,
    pub(super) jwt_secret: Option<String>,
    pub(super) ttl: Duration,
    pub(super) users: BTreeMap<String, User>,
    pub(super) registration_secret: Option<String>,
    pub(super) login_per_minute: u32,
    pub(super) register_per_minute: u32,
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
