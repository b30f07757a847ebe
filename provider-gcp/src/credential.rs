//! OAuth access tokens: where they come from ([`GcpTokenSource`]s) and the kit's cache that
//! hands them to both planes ([`GcpCredentials`], replaced as [`POLICY`] says). The control
//! plane sends a token as a bearer token; the data plane as the password of [`USERNAME`].
//!
//! Sources: [`ServiceAccountKey`] (a key file), [`DefaultChain`] (`gcp_auth`'s chain:
//! `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's application-default credentials, the metadata
//! server, the `gcloud` CLI) and [`StaticToken`] (a token given as is).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mirror_core::kit::provider::{TokenCache, TokenPolicy, TokenSource};
use mirror_core::kit::store::http::credentials::Secret;
use serde_json::Value;

use crate::error::{self, Result};

/// The OAuth scope requested: Artifact Registry accepts `cloud-platform`.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The data-plane user name that means "the password is an OAuth access token".
pub const USERNAME: &str = "oauth2accesstoken";
/// How long before its expiry a token is replaced.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// The shortest time a fetched token is used before another is fetched.
pub const MIN_CACHE: Duration = Duration::from_secs(1);
/// Refusals reported this soon after a fetch are about the previous token.
pub const INVALIDATION_GRACE: Duration = Duration::from_secs(2);

/// When access tokens are replaced: [`REFRESH_AHEAD`] before expiry or half-way through a
/// short life, one fetch per [`INVALIDATION_GRACE`] of refusals.
pub const POLICY: TokenPolicy = TokenPolicy {
    refresh_ahead: REFRESH_AHEAD,
    half_life: true,
    min_cache: MIN_CACHE,
    invalidation_grace: INVALIDATION_GRACE,
};

mirror_core::access_token! {
    /// An OAuth access token with its expiry. `Debug` hides the token.
    pub struct AccessToken, user USERNAME;
}

/// Where access tokens come from: a kit [`TokenSource`] that may also tell the project of
/// its credentials.
///
/// # Contract
///
/// `fetch` returns a token valid for the [`SCOPE`], as fresh as the source can give; errors
/// are of kind [`Credentials`](mirror_core::kit::provider::Kind::Credentials) and never contain a
/// secret. It may be called concurrently.
#[async_trait]
pub trait GcpTokenSource: TokenSource<Token = AccessToken> {
    /// The project the credentials belong to, when they tell.
    async fn project_id(&self) -> Option<String> {
        None
    }
}

/// The access-token cache shared by both planes.
pub type GcpCredentials = TokenCache<dyn GcpTokenSource>;

/// The cache for `source`, with [`POLICY`], naming `registry` (`gcp:<host>`) in errors.
pub fn credentials(registry: impl Into<String>, source: Arc<dyn GcpTokenSource>) -> GcpCredentials {
    TokenCache::new(registry, source, POLICY)
}

/// When a token fetched at `fetched_at` should be replaced (see [`POLICY`]).
pub fn refresh_time(fetched_at: SystemTime, expires_at: SystemTime) -> SystemTime {
    POLICY.refresh_time(fetched_at, expires_at)
}

fn from_gcp_token(token: &gcp_auth::Token) -> AccessToken {
    let expires_at = SystemTime::from(token.expires_at());
    AccessToken {
        token: Secret::new(token.as_str()),
        expires_at,
    }
}

/// A service-account key (the JSON file `gcloud iam service-accounts keys create` writes).
/// `Debug` shows the account and the token endpoint, never the key. Each fetch uses a fresh
/// `gcp_auth` account: `gcp_auth` caches tokens until 20 s before expiry and would hand back
/// the old one.
#[derive(Clone, Debug)]
pub struct ServiceAccountKey {
    json: Secret,
    client_email: String,
    project_id: Option<String>,
    token_uri: String,
    origin: String,
}

impl ServiceAccountKey {
    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let why = format!(
                "cannot read the service-account key {}: {e}",
                path.display()
            );
            error::config("credentials_file", why)
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses a key's JSON (`origin` names it in messages). The private key is checked now
    /// (by `gcp_auth`), so a broken key fails here rather than at the first request.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let bad = |why: String| {
            let message = format!("service-account key {origin}: {why}");
            error::config("credentials_file", message)
        };
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let text_of = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let kind = v.get("type").and_then(Value::as_str);
        if let Some(other) = kind.filter(|t| *t != "service_account") {
            let why = "is not a service-account key (use the default chain for it)";
            return Err(bad(format!("type {other:?} {why}")));
        }
        let field = |name: &str| text_of(name).ok_or_else(|| bad(format!("no {name:?}")));
        let (client_email, _, token_uri) = (
            field("client_email")?.to_string(),
            field("private_key")?,
            field("token_uri")?.to_string(),
        );
        let key = ServiceAccountKey {
            json: Secret::new(text),
            client_email,
            project_id: v
                .get("project_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            token_uri,
            origin: origin.to_string(),
        };
        key.account()?;
        Ok(key)
    }

    /// Sends the token requests to `uri` instead of the key's `token_uri` (a private
    /// endpoint, or a test's fake).
    pub fn with_token_uri(mut self, uri: &str) -> Result<Self> {
        let mut v: Value = serde_json::from_str(self.json.expose()).map_err(|e| {
            error::config(
                "token_uri",
                format!("service-account key {}: {e}", self.origin),
            )
        })?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("token_uri".into(), Value::String(uri.to_string()));
        }
        (self.json, self.token_uri) = (Secret::new(v.to_string()), uri.to_string());
        Ok(self)
    }

    /// The service account's e-mail.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The key's project.
    pub fn project(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// Where tokens are requested.
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    fn account(&self) -> Result<gcp_auth::CustomServiceAccount> {
        let account = gcp_auth::CustomServiceAccount::from_json(self.json.expose());
        account.map_err(|e| {
            let why = format!(
                "service-account key {} ({}): {e}",
                self.origin, self.client_email
            );
            error::config("credentials_file", why)
        })
    }
}

#[async_trait]
impl TokenSource for ServiceAccountKey {
    type Token = AccessToken;

    async fn fetch(&self) -> Result<AccessToken> {
        use gcp_auth::TokenProvider as _;
        let (email, uri) = (&self.client_email, &self.token_uri);
        let token = self.account()?.token(&[SCOPE]).await.map_err(|e| {
            error::credentials(format!("token request for {email} at {uri} failed: {e}"))
        })?;
        Ok(from_gcp_token(&token))
    }
}

#[async_trait]
impl GcpTokenSource for ServiceAccountKey {
    async fn project_id(&self) -> Option<String> {
        self.project_id.clone()
    }
}

/// `gcp_auth`'s default credential chain.
pub struct DefaultChain {
    provider: Arc<dyn gcp_auth::TokenProvider>,
}

impl fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DefaultChain")
    }
}

impl DefaultChain {
    /// Finds credentials the way `gcp_auth::provider()` does (see the module docs).
    pub async fn discover() -> Result<Self> {
        let provider = gcp_auth::provider().await.map_err(|e| {
            error::credentials(format!("no Google credentials found (GOOGLE_APPLICATION_CREDENTIALS, gcloud application-default credentials, metadata server, gcloud CLI): {e}"))
        })?;
        Ok(DefaultChain { provider })
    }

    /// Wraps a `gcp_auth` provider.
    pub fn new(provider: Arc<dyn gcp_auth::TokenProvider>) -> Self {
        DefaultChain { provider }
    }
}

#[async_trait]
impl TokenSource for DefaultChain {
    type Token = AccessToken;

    async fn fetch(&self) -> Result<AccessToken> {
        let token = self.provider.token(&[SCOPE]).await;
        let token = token.map_err(|e| error::credentials(format!("token request failed: {e}")))?;
        Ok(from_gcp_token(&token))
    }
}

#[async_trait]
impl GcpTokenSource for DefaultChain {
    async fn project_id(&self) -> Option<String> {
        self.provider.project_id().await.ok().map(|p| p.to_string())
    }
}

/// A token given as is.
#[derive(Debug, Clone)]
pub struct StaticToken(pub AccessToken);

#[async_trait]
impl TokenSource for StaticToken {
    type Token = AccessToken;

    async fn fetch(&self) -> Result<AccessToken> {
        Ok(self.0.clone())
    }
}

impl GcpTokenSource for StaticToken {}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_core::kit::retry::ManualClock;
    use mirror_core::kit::store::http::credentials::{CredentialProvider, Credentials};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug)]
    struct Fake {
        lifetime: Duration,
        clock: Arc<ManualClock>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl TokenSource for Fake {
        type Token = AccessToken;
        async fn fetch(&self) -> Result<AccessToken> {
            use mirror_core::kit::retry::Clock as _;
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.clock.now();
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(AccessToken {
                token: Secret::new(format!("ya29.token-{n}")),
                expires_at: now + self.lifetime,
            })
        }
    }

    impl GcpTokenSource for Fake {}

    fn setup(lifetime: Duration) -> (Arc<Fake>, Arc<ManualClock>, GcpCredentials) {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let fake = Arc::new(Fake {
            lifetime,
            clock: clock.clone(),
            calls: AtomicU64::new(0),
        });
        let creds = credentials("gcp:test", fake.clone() as Arc<dyn GcpTokenSource>)
            .with_clock(clock.clone());
        (fake, clock, creds)
    }

    #[tokio::test]
    async fn an_hour_token_is_reused_until_five_minutes_before_expiry() {
        let (fake, clock, creds) = setup(Duration::from_secs(3600));
        let all = futures::future::join_all((0..32).map(|_| creds.credentials())).await;
        assert!(all.iter().all(|r| r.is_ok()));
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "one fetch for 32 callers"
        );
        clock.advance(Duration::from_secs(3600) - REFRESH_AHEAD - Duration::from_secs(1));
        creds.credentials().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(2));
        let c = creds.credentials().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        match c.credentials {
            Credentials::Basic { username, password } => {
                assert_eq!(username, USERNAME);
                assert_eq!(password.expose(), "ya29.token-1");
            }
            other => panic!("{other:?}"),
        }
        assert!(c.expires_at.is_some());
    }

    #[tokio::test]
    async fn short_tokens_are_refreshed_half_way() {
        let (fake, clock, creds) = setup(Duration::from_secs(60));
        creds.token().await.unwrap();
        clock.advance(Duration::from_secs(29));
        creds.token().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(2));
        creds.token().await.unwrap();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        // An expired token is still kept for MIN_CACHE: no storm.
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(
            refresh_time(t0, t0 - Duration::from_secs(10)),
            t0 + MIN_CACHE
        );
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        let err = ServiceAccountKey::parse("{", "k.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("k.json"), "{err}");
        let err = ServiceAccountKey::parse(r#"{"type":"authorized_user"}"#, "k.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("authorized_user"), "{err}");
        let err = ServiceAccountKey::parse(
            r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","token_uri":"http://127.0.0.1:1/token"}"#,
            "k.json",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("a@b") && !err.contains("AAAA"), "{err}");
        let t = AccessToken {
            token: Secret::new("ya29.secret"),
            expires_at: SystemTime::UNIX_EPOCH,
        };
        assert!(!format!("{t:?}").contains("secret"));
    }
}
