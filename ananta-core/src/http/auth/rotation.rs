//! The system token (`AGENT_TOKEN`) and its rotation.

use super::*;

/// The subject of the system token.
pub(super) const TOKEN_SUBJECT: &str = "agent-token";

#[derive(Default)]
pub(super) struct Tokens {
    pub(super) current: Option<String>,
    pub(super) pending: Option<String>,
}

impl Auth {
    pub(super) fn tokens(&self) -> std::sync::RwLockReadGuard<'_, Tokens> {
        self.inner.tokens.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn tokens_mut(&self) -> std::sync::RwLockWriteGuard<'_, Tokens> {
        self.inner.tokens.write().unwrap_or_else(|p| p.into_inner())
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
}
