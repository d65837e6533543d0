//! Rate limits: token buckets per client IP (every `/api` request) and per write key
//! (posts), so that one noisy client or key cannot crowd out the others. governor's keyed
//! limiters; each key has its own bucket. Loopback peers are not limited by address (see
//! `client_ip`); behind a proxy, `trust_proxy` limits each real client.

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiError;

/// The headers of a rate-limited answer (with `Retry-After`), which pages may read.
pub const RATELIMIT_LIMIT: axum::http::HeaderName =
    axum::http::HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: axum::http::HeaderName =
    axum::http::HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: axum::http::HeaderName =
    axum::http::HeaderName::from_static("ratelimit-reset");
use crate::RateLimits;

/// The server's limiters. A limit of 0 turns it off.
pub struct Limiters {
    per_ip: Option<Limiter<IpAddr>>,
    per_write_key: Option<Limiter<String>>,
    trust_proxy: bool,
}

struct Limiter<K: Hash + Eq + Clone> {
    buckets: DefaultKeyedRateLimiter<K>,
    per_second: u32,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(per_second: u32, burst: u32) -> Option<Limiter<K>> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(Limiter {
            buckets: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            per_second,
        })
    }

    /// `Err(seconds to wait)` when `key` is over its limit.
    fn check(&self, key: &K) -> Result<(), u64> {
        self.buckets.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up and at least one: `Retry-After` takes no
            // fractions, and 0 would invite a retry loop.
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

impl Limiters {
    pub fn new(limits: &RateLimits) -> Limiters {
        Limiters {
            per_ip: Limiter::new(limits.per_ip_per_second, limits.per_ip_burst),
            per_write_key: Limiter::new(
                limits.per_write_key_per_second,
                limits.per_write_key_burst,
            ),
            trust_proxy: limits.trust_proxy,
        }
    }

    /// Forgets clients idle long enough for their buckets to be full again: the state
    /// stays bounded by the clients of the last moments.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.per_ip {
            limiter.buckets.retain_recent();
            limiter.buckets.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_write_key {
            limiter.buckets.retain_recent();
            limiter.buckets.shrink_to_fit();
        }
    }

    /// Checks a post made with `key`, a valid write or secret key.
    pub fn check_key(&self, key: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_write_key else {
            return Ok(());
        };
        limiter
            .check(&key.to_owned())
            .map_err(|wait_s| ApiError::rate_limited("this key", limiter.per_second, wait_s))
    }

    /// The address whose bucket a request counts against. None for a peer on loopback
    /// without `trust_proxy`: that is this machine (a local proxy, a test, a benchmark),
    /// whose clients would otherwise all share one bucket.
    fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        if self.trust_proxy {
            // The proxy appends the address it saw: the last entry is the one it vouches for.
            let forwarded = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return forwarded;
            }
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip())
            .filter(|ip| !ip.is_loopback())
    }
}

/// The per-IP limit on every `/api` request.
pub(super) async fn per_ip(
    State(limiters): State<Arc<Limiters>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(limiter) = &limiters.per_ip
        && request.uri().path().starts_with("/api/")
        && let Some(ip) = limiters.client_ip(&request)
        && let Err(wait_s) = limiter.check(&ip)
    {
        return ApiError::rate_limited("this client address", limiter.per_second, wait_s)
            .into_response();
    }
    next.run(request).await
}
