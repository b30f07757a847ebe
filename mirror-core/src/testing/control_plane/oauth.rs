//! [`OAuthTokens`] and [`test_rsa_key`]: an OAuth 2.0 token endpoint for JWT-bearer grants.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::response::Response;
use serde_json::json;

use super::*;

/// An RSA key pair for test service accounts (PKCS#8 private key, SPKI public key).
#[derive(Debug)]
pub struct TestKey {
    /// `-----BEGIN PRIVATE KEY-----`.
    pub private_pem: String,
    /// `-----BEGIN PUBLIC KEY-----`.
    pub public_pem: String,
}

/// The test RSA key, made once per process with the `openssl` CLI (0.1–0.5 s; an RSA keygen
/// in a debug build takes far longer). Panics with the install command when `openssl` is
/// missing.
pub fn test_rsa_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let openssl = crate::testing::require_tool("openssl", "apt-get install -y openssl");
        let args = [
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ];
        let out = Command::new(&openssl)
            .args(args)
            .output()
            .expect("run openssl genpkey");
        assert!(
            out.status.success(),
            "openssl genpkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let private_pem = String::from_utf8(out.stdout).expect("PEM is text");
        let mut child = Command::new(&openssl)
            .args(["pkey", "-pubout"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run openssl pkey");
        let mut stdin = child.stdin.take().expect("openssl stdin");
        stdin
            .write_all(private_pem.as_bytes())
            .expect("write the key to openssl");
        drop(stdin);
        let out = child.wait_with_output().expect("openssl pkey");
        assert!(out.status.success(), "openssl pkey -pubout failed");
        let public_pem = String::from_utf8(out.stdout).expect("PEM is text");
        TestKey {
            private_pem,
            public_pem,
        }
    })
}

/// An OAuth 2.0 token endpoint taking the JWT-bearer grant (RFC 7523) and the access tokens
/// it issued: a client that does not renew its tokens in time is refused.
#[derive(Debug, Default)]
pub struct OAuthTokens {
    issued: Mutex<HashMap<String, SystemTime>>,
    lifetime: Mutex<Option<Duration>>,
    fail_next: AtomicUsize,
    hits: AtomicUsize,
    counter: AtomicU64,
    rejected: Mutex<Vec<String>>,
}

impl OAuthTokens {
    /// Answers a token request (its form `body`): the assertion's RS256 signature is checked
    /// against [`test_rsa_key`], its issuer, audience (`token_uri`) and `scope`.
    pub fn grant(&self, body: &[u8], token_uri: &str, issuer: &str, scope: &str) -> Response {
        #[derive(serde::Deserialize)]
        struct Claims {
            scope: String,
        }
        self.hits.fetch_add(1, Ordering::SeqCst);
        let refuse = |e: &str, d: &str| json(400, &json!({"error": e, "error_description": d}));
        if self.fail_next.load(Ordering::SeqCst) > 0 {
            self.fail_next.fetch_sub(1, Ordering::SeqCst);
            return refuse("invalid_grant", "injected failure");
        }
        let form = query_map(&String::from_utf8_lossy(body));
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return refuse("unsupported_grant_type", "");
        }
        let Some(assertion) = form.get("assertion") else {
            return refuse("invalid_request", "no assertion");
        };
        let alg = jsonwebtoken::Algorithm::RS256;
        let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(test_rsa_key().public_pem.as_bytes())
        else {
            return refuse("server_error", "test key");
        };
        // Some clients pad the JWT segments with `=`, which Google accepts and the JWT
        // library does not: the signature is checked over the segments as sent.
        let parts: Vec<&str> = assertion.split('.').collect();
        let message = format!("{}.{}", parts[0], parts.get(1).unwrap_or(&""));
        let sig = parts.get(2).map(|s| s.trim_end_matches('='));
        let signed = sig.is_some_and(|sig| {
            jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, alg).unwrap_or(false)
        });
        if !signed {
            return refuse("invalid_grant", "Invalid JWT Signature.");
        }
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_audience(&[token_uri]);
        validation.set_issuer(&[issuer]);
        validation.insecure_disable_signature_validation();
        let claims = jsonwebtoken::decode::<Claims>(&assertion.replace('=', ""), &key, &validation);
        match claims {
            Ok(c) if c.claims.scope.split(' ').any(|s| s == scope) => {}
            Ok(_) => return refuse("invalid_scope", ""),
            Err(e) => return refuse("invalid_grant", &format!("bad assertion: {e}")),
        }
        let (token, lifetime) = self.issue("ya29.fake");
        json(
            200,
            &json!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}),
        )
    }

    /// Issues a token (`<prefix>-N`) valid for the lifetime (default an hour).
    pub fn issue(&self, prefix: &str) -> (String, Duration) {
        let lifetime = lock(&self.lifetime).unwrap_or(Duration::from_secs(3600));
        (
            self.issue_until(prefix, SystemTime::now() + lifetime),
            lifetime,
        )
    }

    /// Issues a token (`<prefix>-N`) valid until `expires`.
    pub fn issue_until(&self, prefix: &str, expires: SystemTime) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("{prefix}-{n}");
        lock(&self.issued).insert(token.clone(), expires);
        token
    }

    /// The token endpoint of a registry's bearer-token auth: `access` is the token presented
    /// (a password), valid when `issuer` issued it; the registry token lives as long as it,
    /// `max` at most.
    pub fn exchange(&self, access: Option<&str>, issuer: &OAuthTokens, max: Duration) -> Response {
        let valid = access.filter(|a| issuer.valid(a));
        let Some(expiry) = valid.and_then(|a| issuer.expiry(a)) else {
            return registry_error(401, "UNAUTHORIZED", "invalid credentials");
        };
        let expires = expiry.min(SystemTime::now() + max);
        let token = self.issue_until("registry", expires);
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let body = json!({"token": token, "access_token": token, "expires_in": left.as_secs()});
        json(200, &body)
    }

    /// Whether `token` was issued and has not expired.
    pub fn valid(&self, token: &str) -> bool {
        self.expiry(token).is_some_and(|e| SystemTime::now() < e)
    }

    /// When `token` stops working, if it was issued.
    pub fn expiry(&self, token: &str) -> Option<SystemTime> {
        lock(&self.issued).get(token).copied()
    }

    /// Whether `token` was issued and has not expired; a refused token is recorded as
    /// `where: <token prefix>`.
    pub fn check(&self, token: &str, place: &str) -> bool {
        let valid = self.valid(token);
        if !valid {
            let shown: String = token.chars().take(14).collect();
            lock(&self.rejected).push(format!("{place}: {shown}"));
        }
        valid
    }

    /// The lifetime of the tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        *lock(&self.lifetime) = Some(lifetime);
    }

    /// The next `n` token requests are refused (`400 invalid_grant`).
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Token requests so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The refused tokens, as `where: token prefix`.
    pub fn rejected(&self) -> Vec<String> {
        lock(&self.rejected).clone()
    }
}
