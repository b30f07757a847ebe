//! Data-plane credentials: ECR `GetAuthorizationToken` tokens (base64 `AWS:<password>`,
//! valid 12 hours) as basic auth: the kit's [`BasicToken`] ([`AuthToken`]; the ECR API is its
//! source), cached by the kit's [`TokenCache`] with [`POLICY`]: replaced
//! [`REFRESH_AHEAD`] before expiry, kept at least [`MIN_CACHE`] (moto, and skewed clocks,
//! hand out tokens already expired), one fetch per [`INVALIDATION_GRACE`] however many
//! requests a registry refuses, one fetch for a burst of callers.

use std::time::{Duration, SystemTime};

use mirror_core::kit::provider::{BasicToken, Origin, TokenCache, TokenPolicy, TokenSource};

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

/// A decoded ECR authorization token (the kit's); its `registry` is the proxy endpoint ECR
/// names (`https://<account>.dkr.ecr.<region>.amazonaws.com`).
pub type AuthToken = BasicToken;

/// Decodes ECR's `authorizationToken` (base64 of `user:password`); errors name `origin` and
/// never contain the token.
pub fn decode(origin: &Origin, token: &str, expires_at: SystemTime) -> Result<AuthToken> {
    let bad = |why| format!("the authorization token {why}");
    BasicToken::decode(token, expires_at)
        .map_err(|why| origin.protocol("GetAuthorizationToken", "*", bad(why)))
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
        // The password and a `Debug` without it: the kit's test of `BasicToken`, same token.
        let o = Origin::new("aws", "h");
        let t = decode(
            &o,
            "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu",
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(t.unwrap().username, "AWS");
        let err = decode(&o, "bm9jb2xvbg==", SystemTime::UNIX_EPOCH)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user:password") && !err.contains("nocolon"),
            "{err}"
        );
        assert!(decode(&o, "%%%", SystemTime::UNIX_EPOCH).is_err());
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
