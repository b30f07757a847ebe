//! Expiring basic-auth tokens: what a registry's token API hands out when it answers with a
//! user, a password and an expiry (ECR's `GetAuthorizationToken`, base64 of
//! `user:password`; other clouds' temporary registry passwords). A [`BasicToken`] is
//! [`Expiring`] and [`AsCredentials`], so a [`TokenCache`](super::TokenCache) of them is the
//! data plane's credential provider.

use std::time::SystemTime;

use base64::Engine as _;

use crate::provider::token::{AsCredentials, Expiring};
use crate::store::http::credentials::{Credentials, Secret};

/// A basic-auth token with its expiry. `Debug` hides the password.
#[derive(Clone, Debug)]
pub struct BasicToken {
    /// The basic-auth user.
    pub username: String,
    /// The basic-auth password.
    pub password: Secret,
    /// When the token stops working.
    pub expires_at: SystemTime,
    /// The registry the token is for, when the answer names it.
    pub registry: Option<String>,
}

impl BasicToken {
    /// Decodes `encoded`, base64 of `user:password` (both non-empty); the error says what is
    /// wrong, never the token.
    pub fn decode(encoded: &str, expires_at: SystemTime) -> Result<Self, &'static str> {
        let raw = base64::engine::general_purpose::STANDARD.decode(encoded.trim());
        let text = String::from_utf8(raw.map_err(|_| "is not base64")?);
        let text = text.map_err(|_| "is not UTF-8")?;
        let (user, password) = text.split_once(':').ok_or("is not user:password")?;
        if user.is_empty() || password.is_empty() {
            return Err("has an empty user or password");
        }
        Ok(BasicToken {
            username: user.to_string(),
            password: Secret::new(password),
            expires_at,
            registry: None,
        })
    }
}

impl Expiring for BasicToken {
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl AsCredentials for BasicToken {
    fn as_credentials(&self) -> Credentials {
        Credentials::basic(&self.username, self.password.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_decode_without_leaking() {
        let t = BasicToken::decode(
            "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu",
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(t.username, "AWS");
        assert_eq!(t.password.expose(), "123456789012-auth-token");
        assert!(!format!("{t:?}").contains("auth-token"));
        assert_eq!(t.expires_at(), SystemTime::UNIX_EPOCH);
        assert!(matches!(t.as_credentials(), Credentials::Basic { .. }));
        let decode = |s| BasicToken::decode(s, SystemTime::UNIX_EPOCH).unwrap_err();
        assert_eq!(decode("bm9jb2xvbg=="), "is not user:password");
        assert_eq!(decode("%%%"), "is not base64");
        assert_eq!(decode("OnBhc3M="), "has an empty user or password");
    }
}
