//! Per-client-IP rate limits of `POST /login` and `POST /register` (governor).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::*;
use crate::http::error::ApiError;

/// Default per-minute limits.
pub(super) const DEFAULT_LOGIN_PER_MINUTE: u32 = 10;
pub(super) const DEFAULT_REGISTER_PER_MINUTE: u32 = 60;

/// Every this many rate checks, limiter state of idle clients is dropped.
pub(super) const RATE_CLEANUP_EVERY: u64 = 1024;

pub(super) struct Limiter {
    pub(super) limiter: DefaultKeyedRateLimiter<IpAddr>,
    pub(super) checks: AtomicU64,
}

pub(super) fn limiter(per_minute: u32) -> Option<Limiter> {
    NonZeroU32::new(per_minute).map(|n| Limiter {
        limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n).allow_burst(n)),
        checks: AtomicU64::new(0),
    })
}

/// The rate-limit key of a client: IPv4 (also when mapped into IPv6) as is, IPv6 by its /64
/// prefix, which one client usually owns whole.
pub(super) fn rate_key(ip: IpAddr) -> IpAddr {
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

impl Auth {
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
