//! Registry authentication: `WWW-Authenticate` challenges, bearer token exchange, token cache.
//!
//! The flow of the distribution spec: a request without credentials gets `401` with a
//! challenge; `Basic` means send basic credentials; `Bearer realm=…,service=…` means ask the
//! realm for a token carrying the scopes the operation needs (`repository:NAME:pull,push`), with
//! basic credentials when we have some, and retry with `Authorization: Bearer`. Tokens are
//! cached per scope set until shortly before they expire; a 401 drops the cached token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::credentials::{Credentials, Secret};

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        /// Where to ask for tokens.
        realm: String,
        /// The `service` parameter to pass back.
        service: Option<String>,
        /// The scope the registry said it wants (informational).
        scope: Option<String>,
        /// `error="insufficient_scope"` and the like.
        error: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value. Returns `None` for schemes we do not speak.
///
/// Handles quoted strings with backslash escapes, unquoted tokens, spaces around `=` and `,`,
/// and a scheme name in any case.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], &header[i..]),
        None => (header, ""),
    };
    let params = parse_params(rest)?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm").filter(|r| !r.is_empty())?,
            service: get("service"),
            scope: get("scope"),
            error: get("error"),
        })
    } else {
        None
    }
}

fn parse_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            return Some(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s.get(start..i)?.to_string();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut closed = false;
            let mut chars = s.get(i..)?.char_indices();
            while let Some((off, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        i += off + 1;
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return None;
            }
        } else {
            let vstart = i;
            while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            value = s.get(vstart..i)?.to_string();
        }
        out.push((key, value));
    }
}

/// A token server's answer.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The longest a token is kept, whatever its server says: a day. A server may claim
/// `expires_in: 18446744073709551615`; no clock can add that.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

impl TokenResponse {
    /// The token and how long it lives (60 s when unspecified, per the spec; at least 1 s,
    /// at most [`MAX_TOKEN_LIFETIME`]).
    pub(crate) fn into_token(self) -> Option<(Secret, Duration)> {
        let t = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let secs = self
            .expires_in
            .unwrap_or(60)
            .clamp(1, MAX_TOKEN_LIFETIME.as_secs());
        Some((Secret::new(t), Duration::from_secs(secs)))
    }
}

/// Reads a token server's answer (`token` or `access_token`, `expires_in`): the token and
/// how long it may be used (see [`MAX_TOKEN_LIFETIME`]); `None` for an answer without a
/// token or that is not such a JSON object. Never panics, whatever the numbers.
pub fn token_answer(body: &[u8]) -> Option<(Secret, Duration)> {
    serde_json::from_slice::<TokenResponse>(body)
        .ok()?
        .into_token()
}

/// A cached bearer token.
#[derive(Debug, Clone)]
pub(crate) struct CachedToken {
    pub(crate) token: Secret,
    pub(crate) refresh_at: Instant,
}

/// What the client currently knows about a registry's auth.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// The registry's challenge, once seen.
    pub(crate) challenge: Option<Challenge>,
    /// Tokens by scope key.
    pub(crate) tokens: HashMap<String, CachedToken>,
    /// Credentials currently in use (from the provider).
    pub(crate) credentials: Option<(Credentials, Option<std::time::SystemTime>)>,
}

/// When to refresh a token that lives `ttl`: at 90 % of its life, and at least 5 s early
/// (never past [`MAX_TOKEN_LIFETIME`], whatever `ttl` says).
pub(crate) fn refresh_deadline(now: Instant, ttl: Duration) -> Instant {
    let ttl = ttl.min(MAX_TOKEN_LIFETIME);
    let early = (ttl / 10).max(Duration::from_secs(5));
    now.checked_add(ttl.saturating_sub(early)).unwrap_or(now)
}

/// The cache key of a scope set (order-insensitive).
pub(crate) fn scope_key(scopes: &[String]) -> String {
    let mut s: Vec<&str> = scopes.iter().map(String::as_str).collect();
    s.sort_unstable();
    s.dedup();
    s.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
                error: None,
            }
        );
    }

    #[test]
    fn parses_insufficient_scope_and_odd_spacing() {
        let c = parse_challenge(
            r#"bearer  realm = "http://127.0.0.1:1/token" , service="a\"b",error="insufficient_scope""#,
        )
        .unwrap();
        match c {
            Challenge::Bearer { service, error, .. } => {
                assert_eq!(service.as_deref(), Some("a\"b"));
                assert_eq!(error.as_deref(), Some("insufficient_scope"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
    }

    #[test]
    fn rejects_broken_challenges() {
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn scope_key_ignores_order() {
        assert_eq!(
            scope_key(&["b".into(), "a".into()]),
            scope_key(&["a".into(), "b".into(), "a".into()])
        );
    }

    proptest::proptest! {
        #[test]
        fn challenge_parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse_challenge(&s);
        }
    }
}
