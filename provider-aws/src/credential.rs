//! Data-plane credentials: ECR `GetAuthorizationToken` tokens (base64 `AWS:<password>`,
//! valid 12 hours) as basic auth. This module is only the token ([`AuthToken`]; the ECR API is
//! its source); the kit's [`TokenCache`] caches it with [`POLICY`]: replaced
//! [`REFRESH_AHEAD`] before expiry, kept at least [`MIN_CACHE`] (moto, and skewed clocks,
//! hand out tokens already expired), one fetch per [`INVALIDATION_GRACE`] however many
//! requests a registry refuses, one fetch for a burst of callers.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use mirror_core::kit::provider::{
    AsCredentials, Expiring, Origin, TokenCache, TokenPolicy, TokenSource,
};
use mirror_core::kit::store::http::credentials::{Credentials, Secret};

use crate::error::Result;

/// How long before its expiry a token is replaced.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(15 * 60);
/// The shortest time a fetched token is used before another is fetched, whatever its expiry.
pub const MIN_CACHE: Duration = Duration::from_secs(60);
/// Refusals reported this soon after a fetch are about the previous token: no new fetch.
pub const INVALIDATION_GRACE: Duration = Duration::from_secs(2);

/// When ECR tokens are replaced (see the module docs).
pub const POLICY: TokenPolicy = TokenPolicy {
    refresh_ahead: REFRESH_AHEAD,
    half_life: false,
    min_cache: MIN_CACHE,
    invalidation_grace: INVALIDATION_GRACE,
};

/// A decoded ECR authorization token. `Debug` hides the password.
#[derive(Clone, Debug)]
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

impl AuthToken {
    /// Decodes ECR's `authorizationToken` (base64 of `user:password`); errors name `origin`
    /// and never contain the token.
    pub fn decode(
        origin: &Origin,
        token: &str,
        expires_at: SystemTime,
        proxy_endpoint: Option<String>,
    ) -> Result<Self> {
        let bad = |why: &str| {
            origin.protocol(
                "GetAuthorizationToken",
                "*",
                format!("the authorization token {why}"),
            )
        };
        let raw = base64::engine::general_purpose::STANDARD.decode(token.trim());
        let text = String::from_utf8(raw.map_err(|_| bad("is not base64"))?)
            .map_err(|_| bad("is not UTF-8"))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| bad("is not user:password"))?;
        if user.is_empty() || password.is_empty() {
            return Err(bad("has an empty user or password"));
        }
        let (username, password) = (user.to_string(), Secret::new(password));
        Ok(AuthToken {
            username,
            password,
            expires_at,
            proxy_endpoint,
        })
    }
}

impl Expiring for AuthToken {
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl AsCredentials for AuthToken {
    fn as_credentials(&self) -> Credentials {
        Credentials::basic(&self.username, self.password.clone())
    }
}

/// The data-plane credentials of an ECR registry: the kit's cache over any source of ECR
/// tokens (the ECR API, or a fake in tests).
pub type EcrCredentials = TokenCache<dyn TokenSource<Token = AuthToken>>;

/// The cache for `source`, with [`POLICY`], naming `registry` (`aws:<host>`) in logs.
pub fn credentials(
    registry: impl Into<String>,
    source: std::sync::Arc<dyn TokenSource<Token = AuthToken>>,
) -> EcrCredentials {
    TokenCache::new(registry, source, POLICY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_decode_without_leaking() {
        let o = Origin::new("aws", "h");
        let t = AuthToken::decode(
            &o,
            "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu",
            SystemTime::UNIX_EPOCH,
            None,
        )
        .unwrap();
        assert_eq!(t.username, "AWS");
        assert_eq!(t.password.expose(), "123456789012-auth-token");
        assert!(!format!("{t:?}").contains("auth-token"));
        let err = AuthToken::decode(&o, "bm9jb2xvbg==", SystemTime::UNIX_EPOCH, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user:password") && !err.contains("nocolon"),
            "{err}"
        );
        assert!(AuthToken::decode(&o, "%%%", SystemTime::UNIX_EPOCH, None).is_err());
    }

    #[test]
    fn tokens_refresh_a_quarter_hour_ahead_and_live_a_minute_at_least() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            POLICY.refresh_time(t0, t0 + Duration::from_secs(12 * 3600)),
            t0 + Duration::from_secs(12 * 3600) - REFRESH_AHEAD
        );
        assert_eq!(
            POLICY.refresh_time(t0, t0 - Duration::from_secs(3600)),
            t0 + MIN_CACHE,
            "an expired token is kept for the minimum period"
        );
    }
}
