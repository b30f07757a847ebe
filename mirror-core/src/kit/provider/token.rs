//! The one token cache of the providers: [`TokenCache`] over a [`TokenSource`].
//!
//! Cloud registries hand out short-lived tokens (ECR's `GetAuthorizationToken`: 12 h; Google
//! OAuth access tokens: about 1 h). A provider writes only the source (one call that fetches
//! a token with its expiry); the cache decides when to call it:
//!
//! - a token is replaced [`TokenPolicy::refresh_ahead`] before it expires (or half-way through
//!   its life, with [`TokenPolicy::half_life`], for short-lived tokens), so a request never
//!   starts with a token about to expire;
//! - it is kept at least [`TokenPolicy::min_cache`] after it was fetched, whatever its
//!   expiry: a source handing out tokens that are already expired (moto does; a skewed clock
//!   does too) would otherwise be asked on every request. The first such token is logged
//!   once as a warning;
//! - concurrent callers share one fetch (an async mutex is held across it), so a burst of
//!   requests on a cold or stale cache costs one call;
//! - [`TokenCache::invalidate`] (a registry or API refused the token) makes the next caller
//!   fetch again, but refusals arriving within [`TokenPolicy::invalidation_grace`] of a fetch
//!   are taken to be about the previous token (requests already in flight with it), so a
//!   registry refusing every token costs at most one fetch per grace period;
//! - the clock is injectable ([`crate::retry::Clock`]) so all of this is tested without
//!   waiting.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::provider::error::{ControlPlaneError, Kind};
use crate::retry::{system_clock, Clock};
use crate::store::http::credentials::{CredentialProvider, Credentials, ExpiringCredentials};

/// A token with an expiry.
pub trait Expiring: Clone + Send + Sync + 'static {
    /// When the token stops working.
    fn expires_at(&self) -> SystemTime;
}

/// A token the data plane can use as registry credentials.
pub trait AsCredentials {
    /// The credentials the token stands for (basic auth with a fixed user, usually).
    fn as_credentials(&self) -> Credentials;
}

/// Where a provider's tokens come from.
///
/// # Contract
///
/// `fetch` returns a new token (sources with a cache of their own may return a cached one)
/// with its expiry, or an error that never contains a secret. It may be called concurrently;
/// the [`TokenCache`] in front of it calls it only when its policy says so.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// The token type.
    type Token: Expiring;

    /// Fetches a token.
    async fn fetch(&self) -> Result<Self::Token, ControlPlaneError>;
}

/// When tokens are replaced (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// A token is replaced this long before it expires.
    pub refresh_ahead: Duration,
    /// Also replace it half-way through its life when that is later (for short-lived
    /// tokens, where `refresh_ahead` would be most of their life).
    pub half_life: bool,
    /// A token is used at least this long after it was fetched.
    pub min_cache: Duration,
    /// Refusals reported this soon after a fetch do not fetch again.
    pub invalidation_grace: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            refresh_ahead: Duration::from_secs(5 * 60),
            half_life: true,
            min_cache: Duration::from_secs(1),
            invalidation_grace: Duration::from_secs(2),
        }
    }
}

impl TokenPolicy {
    /// When a token fetched at `fetched_at` and expiring at `expires_at` is replaced:
    /// `refresh_ahead` before it expires, or half-way through its life if that is later (with
    /// `half_life`), and never before `min_cache`.
    pub fn refresh_time(&self, fetched_at: SystemTime, expires_at: SystemTime) -> SystemTime {
        let ahead = expires_at
            .checked_sub(self.refresh_ahead)
            .unwrap_or(expires_at);
        let half = if self.half_life {
            fetched_at
                + expires_at
                    .duration_since(fetched_at)
                    .map(|d| d / 2)
                    .unwrap_or_default()
        } else {
            fetched_at
        };
        ahead.max(half).max(fetched_at + self.min_cache)
    }
}

struct Cached<T> {
    token: T,
    refresh_at: SystemTime,
    fetched_at: SystemTime,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Caches the tokens of a [`TokenSource`] (see the module docs). With a token type that is
/// [`AsCredentials`], it is the data plane's [`CredentialProvider`] too.
pub struct TokenCache<S: TokenSource + ?Sized> {
    source: Arc<S>,
    registry: String,
    policy: TokenPolicy,
    clock: Arc<dyn Clock>,
    cache: Mutex<Option<Cached<S::Token>>>,
    /// When `invalidate` was last called (milliseconds since the epoch; 0: never).
    invalidated_at: AtomicU64,
    fetches: AtomicU64,
    warned_short: AtomicBool,
}

impl<S: TokenSource + ?Sized> fmt::Debug for TokenCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("registry", &self.registry)
            .field("source", &self.source)
            .field("policy", &self.policy)
            .field("fetches", &self.fetches())
            .finish()
    }
}

impl<S: TokenSource + ?Sized> TokenCache<S> {
    /// Tokens from `source` for `registry` (the label errors and logs name), replaced as
    /// `policy` says, on the real clock.
    pub fn new(registry: impl Into<String>, source: Arc<S>, policy: TokenPolicy) -> Self {
        TokenCache {
            source,
            registry: registry.into(),
            policy,
            clock: system_clock(),
            cache: Mutex::new(None),
            invalidated_at: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            warned_short: AtomicBool::new(false),
        }
    }

    /// The same cache on another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The source.
    pub fn source(&self) -> &Arc<S> {
        &self.source
    }

    /// The policy.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// How many tokens were fetched from the source so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current token: cached, or fetched when the cache is empty, due for refresh or
    /// invalidated. A credentials error of the source is given this cache's registry label.
    pub async fn token(&self) -> Result<S::Token, ControlPlaneError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        let invalidated_at = self.invalidated_at.load(Ordering::Acquire);
        if let Some(c) = cache.as_ref() {
            let refused = invalidated_at >= millis(c.fetched_at + self.policy.invalidation_grace);
            if now < c.refresh_at && !refused {
                return Ok(c.token.clone());
            }
        }
        let token = self.source.fetch().await.map_err(|mut e| {
            if e.kind == Kind::Credentials || e.registry.is_empty() {
                e.registry = self.registry.clone();
            }
            e
        })?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched_at = self.clock.now();
        let expires_at = token.expires_at();
        // A token that expires before the cache would ask again (already expired, or a
        // skewed clock) is worth one warning; one merely within `refresh_ahead` of its expiry
        // (a default chain handing back its cached token) is not.
        if expires_at <= fetched_at + self.policy.min_cache
            && !self.warned_short.swap(true, Ordering::Relaxed)
        {
            let secs = expires_at
                .duration_since(fetched_at)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_else(|e| -(e.duration().as_secs() as i64));
            tracing::warn!(
                registry = %self.registry,
                expires_in_secs = secs,
                "the credentials handed out a token that expires within {}s (or already has); \
                 reusing it for {}s before asking again",
                self.policy.min_cache.as_secs(),
                self.policy.min_cache.as_secs()
            );
        }
        *cache = Some(Cached {
            refresh_at: self.policy.refresh_time(fetched_at, expires_at),
            token: token.clone(),
            fetched_at,
        });
        Ok(token)
    }

    /// The token was refused: the next caller fetches again (see the module docs).
    pub fn invalidate(&self) {
        // Timed, not cleared: many requests refused at once cause one fetch, and refusals of
        // requests sent with the previous token cause none.
        self.invalidated_at
            .fetch_max(millis(self.clock.now()), Ordering::AcqRel);
    }
}

#[async_trait]
impl<S> CredentialProvider for TokenCache<S>
where
    S: TokenSource + ?Sized,
    S::Token: AsCredentials,
{
    async fn credentials(&self) -> crate::Result<ExpiringCredentials> {
        let token = self.token().await?;
        Ok(ExpiringCredentials {
            credentials: token.as_credentials(),
            expires_at: Some(token.expires_at()),
        })
    }

    fn invalidate(&self) {
        TokenCache::invalidate(self);
    }
}

/// Declares an access token type: a [`Secret`](crate::kit::store::http::credentials::Secret)
/// with its expiry, sent by [`BearerAuth`](super::BearerAuth) as a bearer token to the
/// control plane and to the data plane as the password of a fixed user (OAuth access tokens
/// of cloud APIs). `Debug` hides the token.
///
/// ```
/// use std::time::SystemTime;
/// use mirror_core::kit::provider::{AsCredentials, BearerToken};
/// mirror_core::access_token! {
///     /// A demo token.
///     pub struct DemoToken, user "oauth2accesstoken";
/// }
/// let t = DemoToken { token: "ya29.x".into(), expires_at: SystemTime::UNIX_EPOCH };
/// assert_eq!(t.bearer(), "ya29.x");
/// assert!(!format!("{:?}", t.as_credentials()).contains("ya29"));
/// ```
#[macro_export]
macro_rules! access_token {
    ($(#[$meta:meta])* $vis:vis struct $name:ident, user $user:expr;) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        $vis struct $name {
            /// The token.
            pub token: $crate::kit::store::http::credentials::Secret,
            /// When it stops working.
            pub expires_at: ::std::time::SystemTime,
        }

        impl $crate::kit::provider::Expiring for $name {
            fn expires_at(&self) -> ::std::time::SystemTime {
                self.expires_at
            }
        }

        impl $crate::kit::provider::AsCredentials for $name {
            fn as_credentials(&self) -> $crate::kit::store::http::credentials::Credentials {
                $crate::kit::store::http::credentials::Credentials::basic($user, self.token.clone())
            }
        }

        impl $crate::kit::provider::BearerToken for $name {
            fn bearer(&self) -> &str {
                self.token.expose()
            }
        }
    };
}

/// Makes the token source of one key of a [`SourceCaches`] on first use.
pub type MakeSource<T> = Arc<
    dyn Fn(
            String,
        )
            -> futures::future::BoxFuture<'static, crate::Result<Arc<dyn TokenSource<Token = T>>>>
        + Send
        + Sync,
>;

/// Source credentials of a provider's registries: one [`TokenCache`] per key (an ECR region,
/// a registry host), made on the first pull that needs it (nothing is called before), its
/// source made then by `make`. The [`CredentialProvider`] handed out for a host is the cache
/// of its key; errors name the host that asked first.
pub struct SourceCaches<T: Expiring> {
    provider: &'static str,
    policy: TokenPolicy,
    make: MakeSource<T>,
    caches: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<LazyCache<T>>>>>,
}

impl<T: Expiring> Clone for SourceCaches<T> {
    fn clone(&self) -> Self {
        SourceCaches {
            provider: self.provider,
            policy: self.policy,
            make: self.make.clone(),
            caches: self.caches.clone(),
        }
    }
}

impl<T: Expiring> fmt::Debug for SourceCaches<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .caches
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("SourceCaches")
            .field("provider", &self.provider)
            .field("keys", &keys)
            .finish()
    }
}

impl<T: Expiring + AsCredentials> SourceCaches<T> {
    /// Caches of `provider`'s tokens with `policy`, each source made by `make` from its key.
    pub fn new<F, Fut>(provider: &'static str, policy: TokenPolicy, make: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = crate::Result<Arc<dyn TokenSource<Token = T>>>>
            + Send
            + 'static,
    {
        SourceCaches {
            provider,
            policy,
            make: Arc::new(move |key| Box::pin(make(key))),
            caches: Default::default(),
        }
    }

    /// Caches of `provider`'s tokens with `policy` whose one source, made by `make` on the
    /// first pull that needs it, serves every key (a token valid for every host).
    pub fn shared<F, Fut>(provider: &'static str, policy: TokenPolicy, make: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = crate::Result<Arc<dyn TokenSource<Token = T>>>>
            + Send
            + 'static,
    {
        let (once, make) = (Arc::new(tokio::sync::OnceCell::new()), Arc::new(make));
        Self::new(provider, policy, move |_key| {
            let (once, make) = (once.clone(), make.clone());
            async move { once.get_or_try_init(|| make()).await.cloned() }
        })
    }

    /// The credentials of `host`, from the cache of `key` (made now if it is the first).
    pub fn provider_for(&self, key: &str, host: &str) -> Option<Arc<dyn CredentialProvider>> {
        let mut caches = self.caches.lock().ok()?;
        let lazy = caches
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(LazyCache {
                    key: key.to_string(),
                    label: format!("{}:{host}", self.provider),
                    policy: self.policy,
                    make: self.make.clone(),
                    cache: tokio::sync::OnceCell::new(),
                })
            })
            .clone();
        Some(lazy)
    }
}

/// One key's cache of a [`SourceCaches`], made on first use.
struct LazyCache<T: Expiring> {
    key: String,
    label: String,
    policy: TokenPolicy,
    make: MakeSource<T>,
    cache: tokio::sync::OnceCell<TokenCache<dyn TokenSource<Token = T>>>,
}

impl<T: Expiring> fmt::Debug for LazyCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceTokens")
            .field("key", &self.key)
            .finish()
    }
}

#[async_trait]
impl<T: Expiring + AsCredentials> CredentialProvider for LazyCache<T> {
    async fn credentials(&self) -> crate::Result<ExpiringCredentials> {
        let cache = self
            .cache
            .get_or_try_init(|| async {
                let source = (self.make)(self.key.clone()).await?;
                Ok::<_, crate::Error>(TokenCache::new(self.label.clone(), source, self.policy))
            })
            .await?;
        cache.credentials().await
    }

    fn invalidate(&self) {
        if let Some(c) = self.cache.get() {
            c.invalidate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::error::Origin;
    use crate::retry::ManualClock;
    use crate::store::http::credentials::Secret;

    #[derive(Clone, Debug)]
    struct Tok(String, SystemTime);

    impl Expiring for Tok {
        fn expires_at(&self) -> SystemTime {
            self.1
        }
    }

    impl AsCredentials for Tok {
        fn as_credentials(&self) -> Credentials {
            Credentials::Basic {
                username: "u".into(),
                password: Secret::new(self.0.clone()),
            }
        }
    }

    #[derive(Debug)]
    struct Fake {
        lifetime: i64,
        clock: Arc<ManualClock>,
        calls: AtomicU64,
        fail: bool,
    }

    #[async_trait]
    impl TokenSource for Fake {
        type Token = Tok;
        async fn fetch(&self) -> Result<Tok, ControlPlaneError> {
            if self.fail {
                return Err(Origin::new("test", "").credentials("no key"));
            }
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.clock.now();
            let expires = if self.lifetime >= 0 {
                now + Duration::from_secs(self.lifetime as u64)
            } else {
                now - Duration::from_secs((-self.lifetime) as u64)
            };
            // Slow enough that concurrent callers pile up behind the mutex.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Tok(format!("token-{n}"), expires))
        }
    }

    const ECR: TokenPolicy = TokenPolicy {
        refresh_ahead: Duration::from_secs(15 * 60),
        half_life: false,
        min_cache: Duration::from_secs(60),
        invalidation_grace: Duration::from_secs(2),
    };

    fn setup(
        lifetime: i64,
        policy: TokenPolicy,
    ) -> (Arc<Fake>, Arc<ManualClock>, TokenCache<Fake>) {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let fake = Arc::new(Fake {
            lifetime,
            clock: clock.clone(),
            calls: AtomicU64::new(0),
            fail: false,
        });
        let cache = TokenCache::new("test:h", fake.clone(), policy).with_clock(clock.clone());
        (fake, clock, cache)
    }

    #[tokio::test]
    async fn a_long_token_is_reused_until_shortly_before_expiry() {
        let (fake, clock, cache) = setup(12 * 3600, ECR);
        for _ in 0..50 {
            cache.credentials().await.unwrap();
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(12 * 3600) - ECR.refresh_ahead - Duration::from_secs(1));
        cache.token().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(2));
        cache.token().await.unwrap();
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test]
    async fn an_expired_token_is_kept_for_the_minimum_period_without_a_storm() {
        let (fake, clock, cache) = setup(-10 * 365 * 24 * 3600, ECR);
        let cache = Arc::new(cache);
        let all = futures::future::join_all((0..64).map(|_| {
            let c = cache.clone();
            async move { c.credentials().await }
        }))
        .await;
        assert!(all.iter().all(|r| r.is_ok()));
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "one fetch for 64 callers"
        );
        clock.advance(ECR.min_cache - Duration::from_secs(1));
        cache.token().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(2));
        cache.token().await.unwrap();
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            2,
            "again after the minimum period"
        );
    }

    #[tokio::test]
    async fn invalidation_fetches_once_for_many_refusals() {
        let (fake, clock, cache) = setup(12 * 3600, ECR);
        cache.token().await.unwrap();
        // Refusals of requests sent just before the fetch: no new fetch.
        CredentialProvider::invalidate(&cache);
        cache.token().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(ECR.invalidation_grace + Duration::from_secs(1));
        for _ in 0..10 {
            cache.invalidate();
        }
        cache.token().await.unwrap();
        cache.token().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        // The new token refused at once again: no storm.
        cache.invalidate();
        cache.token().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        clock.advance(ECR.invalidation_grace + Duration::from_secs(1));
        cache.invalidate();
        cache.token().await.unwrap();
        assert_eq!(cache.fetches(), 3);
    }

    #[test]
    fn short_tokens_refresh_half_way_and_long_ones_ahead() {
        let p = TokenPolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // One hour: five minutes ahead.
        assert_eq!(
            p.refresh_time(t0, t0 + Duration::from_secs(3600)),
            t0 + Duration::from_secs(3300)
        );
        // Four minutes: half-way.
        assert_eq!(
            p.refresh_time(t0, t0 + Duration::from_secs(240)),
            t0 + Duration::from_secs(120)
        );
        // Already expired: the minimum.
        assert_eq!(
            p.refresh_time(t0, t0 - Duration::from_secs(10)),
            t0 + p.min_cache
        );
    }

    #[tokio::test]
    async fn source_errors_name_the_cache_registry_and_never_cache() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let fake = Arc::new(Fake {
            lifetime: 10,
            clock: clock.clone(),
            calls: AtomicU64::new(0),
            fail: true,
        });
        let cache = TokenCache::new("gcp:h", fake, TokenPolicy::default()).with_clock(clock);
        let e = cache.token().await.unwrap_err();
        assert_eq!(e.registry, "gcp:h");
        let core = cache.credentials().await.unwrap_err();
        assert!(
            matches!(&core, crate::Error::Credentials { registry, .. } if registry == "gcp:h"),
            "{core:?}"
        );
        assert_eq!(cache.fetches(), 0);
    }
}
