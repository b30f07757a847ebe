//! Data-plane credentials: ECR `GetAuthorizationToken` tokens as basic auth, cached.
//!
//! ECR hands out a base64 `AWS:<password>` token valid for 12 hours. [`EcrCredentials`] caches
//! it and fetches a new one [`REFRESH_AHEAD`] before it expires. Concurrent callers share one
//! fetch: the cache sits behind an async mutex held across the call, so a burst of requests
//! on a cold or stale cache costs one `GetAuthorizationToken`.
//!
//! A token that is already expired (or about to) when it is issued — moto does this, and a
//! skewed clock does it too — would otherwise be fetched again on every request. Every token
//! is therefore kept for at least [`MIN_CACHE`] after it was fetched, and the first such
//! token is logged once as a warning. Likewise a registry refusing tokens causes at most one
//! fetch per [`INVALIDATION_GRACE`], however many requests it refuses.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use mirror_core::store::http::credentials::{
    CredentialProvider, Credentials, ExpiringCredentials, Secret,
};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// How long before its expiry a token is replaced.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(15 * 60);
/// The shortest time a fetched token is used before another is fetched, whatever its expiry.
pub const MIN_CACHE: Duration = Duration::from_secs(60);
/// Refusals reported this soon after a fetch are taken to be about the previous token
/// (requests already in flight with it), so they do not fetch again.
pub const INVALIDATION_GRACE: Duration = Duration::from_secs(2);

/// A decoded ECR authorization token.
#[derive(Clone)]
pub struct AuthToken {
    /// The basic-auth user (`AWS`).
    pub username: String,
    /// The basic-auth password.
    pub password: Secret,
    /// When ECR says the token stops working.
    pub expires_at: SystemTime,
    /// The registry the token is for (`https://<account>.dkr.ecr.<region>.amazonaws.com`).
    pub proxy_endpoint: Option<String>,
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthToken")
            .field("username", &self.username)
            .field("password", &"***")
            .field("expires_at", &self.expires_at)
            .field("proxy_endpoint", &self.proxy_endpoint)
            .finish()
    }
}

impl AuthToken {
    /// Decodes ECR's `authorizationToken` (base64 of `user:password`). `registry` is only
    /// used in errors, which never contain the token.
    pub fn decode(
        registry: &str,
        token: &str,
        expires_at: SystemTime,
        proxy_endpoint: Option<String>,
    ) -> Result<Self> {
        let bad = |reason: &str| Error::Protocol {
            registry: registry.to_string(),
            operation: "GetAuthorizationToken",
            target: "*".into(),
            reason: format!("the authorization token {reason}"),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| bad("is not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("is not UTF-8"))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| bad("is not user:password"))?;
        if user.is_empty() || password.is_empty() {
            return Err(bad("has an empty user or password"));
        }
        Ok(AuthToken {
            username: user.to_string(),
            password: Secret::new(password),
            expires_at,
            proxy_endpoint,
        })
    }
}

/// Where tokens come from (the ECR API; a fake in unit tests).
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// Fetches a new token.
    async fn fetch(&self) -> Result<AuthToken>;
}

/// The clock the cache reads (injectable for tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

struct Cached {
    token: AuthToken,
    /// When the next call fetches again.
    refresh_at: SystemTime,
    /// When it was fetched.
    fetched_at: SystemTime,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A [`CredentialProvider`] for an ECR registry: `GetAuthorizationToken` as basic auth, cached
/// until [`REFRESH_AHEAD`] before expiry and at least [`MIN_CACHE`].
pub struct EcrCredentials {
    source: Arc<dyn TokenSource>,
    registry: String,
    clock: Clock,
    cache: Mutex<Option<Cached>>,
    /// When `invalidate` was last called (milliseconds since the epoch, 0: never).
    invalidated_at: AtomicU64,
    fetches: AtomicU64,
    warned_expired: AtomicBool,
}

impl fmt::Debug for EcrCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrCredentials")
            .field("registry", &self.registry)
            .field("source", &self.source)
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish()
    }
}

impl EcrCredentials {
    /// Credentials from `source`, for `registry` (used in logs and errors).
    pub fn new(registry: impl Into<String>, source: Arc<dyn TokenSource>) -> Self {
        Self::with_clock(registry, source, Arc::new(SystemTime::now))
    }

    /// Like [`EcrCredentials::new`] with an injected clock.
    pub fn with_clock(
        registry: impl Into<String>,
        source: Arc<dyn TokenSource>,
        clock: Clock,
    ) -> Self {
        EcrCredentials {
            source,
            registry: registry.into(),
            clock,
            cache: Mutex::new(None),
            invalidated_at: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            warned_expired: AtomicBool::new(false),
        }
    }

    /// How many tokens were fetched so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current token, fetched if the cache is empty, stale or invalidated.
    pub async fn token(&self) -> Result<AuthToken> {
        let mut cache = self.cache.lock().await;
        let now = (self.clock)();
        let invalidated_at = self.invalidated_at.load(Ordering::Acquire);
        if let Some(c) = cache.as_ref() {
            let refused = invalidated_at >= millis(c.fetched_at + INVALIDATION_GRACE);
            if now < c.refresh_at && !refused {
                return Ok(c.token.clone());
            }
        }
        let token = self.source.fetch().await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched_at = (self.clock)();
        let ahead = token
            .expires_at
            .checked_sub(REFRESH_AHEAD)
            .unwrap_or(token.expires_at);
        let floor = fetched_at + MIN_CACHE;
        if ahead < floor && !self.warned_expired.swap(true, Ordering::Relaxed) {
            let secs = token
                .expires_at
                .duration_since(fetched_at)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_else(|e| -(e.duration().as_secs() as i64));
            tracing::warn!(
                registry = %self.registry,
                expires_in_secs = secs,
                "ECR issued an authorization token that expires within {}s (or already has); \
                 reusing it for {}s before asking again",
                REFRESH_AHEAD.as_secs(),
                MIN_CACHE.as_secs()
            );
        }
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: ahead.max(floor),
            fetched_at,
        });
        Ok(token)
    }
}

#[async_trait]
impl CredentialProvider for EcrCredentials {
    async fn credentials(&self) -> mirror_core::Result<ExpiringCredentials> {
        let token = self.token().await.map_err(mirror_core::Error::from)?;
        Ok(ExpiringCredentials {
            credentials: Credentials::Basic {
                username: token.username,
                password: token.password,
            },
            expires_at: Some(token.expires_at),
        })
    }

    fn invalidate(&self) {
        // Timed, not cleared: many requests refused at once cause one fetch, and refusals of
        // requests sent with the previous token (within INVALIDATION_GRACE of the fetch) cause
        // none, so a registry refusing every token costs at most one fetch per grace period.
        self.invalidated_at
            .fetch_max(millis((self.clock)()), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    #[derive(Debug)]
    struct Fake {
        lifetime: i64,
        clock: Arc<StdMutex<SystemTime>>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl TokenSource for Fake {
        async fn fetch(&self) -> Result<AuthToken> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let now = *self.clock.lock().unwrap();
            let expires_at = if self.lifetime >= 0 {
                now + Duration::from_secs(self.lifetime as u64)
            } else {
                now - Duration::from_secs((-self.lifetime) as u64)
            };
            // Slow enough that concurrent callers pile up behind the mutex.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(AuthToken {
                username: "AWS".into(),
                password: Secret::new(format!("token-{n}")),
                expires_at,
                proxy_endpoint: None,
            })
        }
    }

    fn setup(lifetime: i64) -> (Arc<Fake>, Arc<StdMutex<SystemTime>>, EcrCredentials) {
        let now = Arc::new(StdMutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ));
        let fake = Arc::new(Fake {
            lifetime,
            clock: now.clone(),
            calls: AtomicU64::new(0),
        });
        let c = now.clone();
        let creds = EcrCredentials::with_clock(
            "aws:test",
            fake.clone(),
            Arc::new(move || *c.lock().unwrap()),
        );
        (fake, now, creds)
    }

    fn advance(clock: &StdMutex<SystemTime>, d: Duration) {
        let mut t = clock.lock().unwrap();
        *t += d;
    }

    #[tokio::test]
    async fn a_twelve_hour_token_is_reused_until_shortly_before_expiry() {
        let (fake, clock, creds) = setup(12 * 3600);
        for _ in 0..50 {
            creds.credentials().await.unwrap();
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        advance(
            &clock,
            Duration::from_secs(12 * 3600) - REFRESH_AHEAD - Duration::from_secs(1),
        );
        creds.credentials().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        advance(&clock, Duration::from_secs(2));
        creds.credentials().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_expired_token_is_kept_for_the_minimum_period_without_a_storm() {
        let (fake, clock, creds) = setup(-10 * 365 * 24 * 3600);
        let creds = Arc::new(creds);
        let all = futures::future::join_all((0..64).map(|_| {
            let c = creds.clone();
            async move { c.credentials().await }
        }))
        .await;
        assert!(all.iter().all(|r| r.is_ok()));
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "one fetch for 64 concurrent callers"
        );
        advance(&clock, MIN_CACHE - Duration::from_secs(1));
        creds.credentials().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        advance(&clock, Duration::from_secs(2));
        creds.credentials().await.unwrap();
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            2,
            "fetched again after the minimum period"
        );
    }

    #[tokio::test]
    async fn invalidation_fetches_once_for_many_refusals() {
        let (fake, clock, creds) = setup(12 * 3600);
        creds.credentials().await.unwrap();
        // Refusals of requests sent just before the fetch: no new fetch.
        creds.invalidate();
        creds.credentials().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        // Later, many refusals at once: one fetch.
        advance(&clock, INVALIDATION_GRACE + Duration::from_secs(1));
        for _ in 0..10 {
            creds.invalidate();
        }
        creds.credentials().await.unwrap();
        creds.credentials().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        // The new token refused at once again (a registry refusing everything): no storm.
        creds.invalidate();
        creds.credentials().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        advance(&clock, INVALIDATION_GRACE + Duration::from_secs(1));
        creds.invalidate();
        creds.credentials().await.unwrap();
        assert_eq!(creds.fetches(), 3);
    }

    #[test]
    fn tokens_decode_without_leaking() {
        let t = AuthToken::decode(
            "aws:h",
            "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu",
            SystemTime::UNIX_EPOCH,
            None,
        )
        .unwrap();
        assert_eq!(t.username, "AWS");
        assert_eq!(t.password.expose(), "123456789012-auth-token");
        assert!(!format!("{t:?}").contains("auth-token"));
        let err = AuthToken::decode("aws:h", "bm9jb2xvbg==", SystemTime::UNIX_EPOCH, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user:password") && !err.contains("nocolon"),
            "{err}"
        );
        assert!(AuthToken::decode("aws:h", "%%%", SystemTime::UNIX_EPOCH, None).is_err());
    }
}
