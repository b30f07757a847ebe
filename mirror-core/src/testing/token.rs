//! An in-process Docker token server (the `auth.token` protocol of the distribution registry).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::server::BackgroundServer;

/// The default token lifetime (`expires_in`), as Docker Hub's.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(300);

/// How a token request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenOutcome {
    /// Valid basic credentials: every requested action was granted.
    Authenticated,
    /// No credentials: only `pull` actions were granted.
    Anonymous,
    /// Wrong or malformed credentials: answered 401, no token.
    Rejected,
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The user name of the basic credentials, if any were sent (never the password).
    pub username: Option<String>,
    /// The `service` query parameter.
    pub service: Option<String>,
    /// The requested scopes, one per entry (`repository:NAME:pull,push`).
    pub scopes: Vec<String>,
    /// The granted scopes, in the same form (empty when rejected).
    pub granted: Vec<String>,
    /// How it ended.
    pub outcome: TokenOutcome,
}

/// Counters of token requests, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenStats {
    /// Tokens issued (authenticated + anonymous).
    pub issued: u64,
    /// Tokens issued to valid credentials.
    pub authenticated: u64,
    /// Tokens issued to anonymous requests.
    pub anonymous: u64,
    /// Requests refused with 401 (wrong credentials).
    pub rejected: u64,
}

struct TokenState {
    service: String,
    issuer: String,
    username: String,
    password: String,
    key: EncodingKey,
    key_id: String,
    expires_in_secs: AtomicU64,
    authenticated: AtomicU64,
    anonymous: AtomicU64,
    rejected: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
}

/// A token server on `127.0.0.1` (own thread and runtime) implementing the Docker token
/// protocol for one user.
///
/// `GET /token?service=S&scope=repository:NAME:pull,push&scope=…` with optional basic auth
/// answers `{"token", "access_token", "expires_in", "issued_at"}`. Policy: valid credentials get
/// every requested action; anonymous requests get only `pull`; wrong credentials get 401.
///
/// Tokens are ES256 JWTs signed with a P-256 key generated at start. The registry trusts them
/// through [`TokenServer::root_cert_pem`] (a self-signed certificate of that key, the
/// registry's `auth.token.rootcertbundle`): the JWT header's `kid` is the libtrust key ID of
/// the public key, which distribution 2.8 looks up among the keys of the root bundle.
///
/// Dropping the server stops it.
pub struct TokenServer {
    state: Arc<TokenState>,
    cert_pem: String,
    server: BackgroundServer,
}

impl fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.server.addr())
            .field("service", &self.state.service)
            .field("issuer", &self.state.issuer)
            .field("username", &self.state.username)
            .field("key_id", &self.state.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// Starts a token server for `service` (the registry's `auth.token.service`, the tokens'
    /// audience) that knows one user.
    ///
    /// # Panics
    ///
    /// If the key, certificate or listening socket cannot be created.
    pub fn start(service: &str, username: &str, password: &str) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap_or_else(|e| panic!("token server: cannot generate a P-256 key: {e}"));
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap_or_else(|e| panic!("token server: invalid certificate parameters: {e}"));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mirror-core test token signer");
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("token server: cannot self-sign the certificate: {e}"));
        let key_id = libtrust_key_id(&key.public_key_der());
        let state = Arc::new(TokenState {
            service: service.to_string(),
            issuer: "mirror-core-test-token-server".to_string(),
            username: username.to_string(),
            password: password.to_string(),
            key: EncodingKey::from_ec_der(key.serialized_der()),
            key_id,
            expires_in_secs: AtomicU64::new(DEFAULT_EXPIRES_IN.as_secs()),
            authenticated: AtomicU64::new(0),
            anonymous: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/token", get(token_handler))
            .with_state(state.clone());
        let server = BackgroundServer::spawn("token-server", router);
        TokenServer {
            state,
            cert_pem: cert.pem(),
            server,
        }
    }

    /// The address it listens on (`127.0.0.1:PORT`).
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// The token endpoint, the registry's `auth.token.realm`: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }

    /// The service name (the tokens' `aud`).
    pub fn service(&self) -> &str {
        &self.state.service
    }

    /// The issuer (the tokens' `iss`, the registry's `auth.token.issuer`).
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The self-signed certificate (PEM) of the signing key, for `auth.token.rootcertbundle`.
    pub fn root_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The libtrust key ID of the signing key, sent as the JWT `kid` header.
    pub fn key_id(&self) -> &str {
        &self.state.key_id
    }

    /// The lifetime of tokens issued from now on (`expires_in`, 300 s unless changed).
    pub fn expires_in(&self) -> Duration {
        Duration::from_secs(self.state.expires_in_secs.load(Ordering::SeqCst))
    }

    /// Sets the lifetime of tokens issued from now on (whole seconds; at least 1 s).
    pub fn set_expires_in(&self, lifetime: Duration) {
        self.state
            .expires_in_secs
            .store(lifetime.as_secs().max(1), Ordering::SeqCst);
    }

    /// Counters of requests so far.
    pub fn stats(&self) -> TokenStats {
        let authenticated = self.state.authenticated.load(Ordering::SeqCst);
        let anonymous = self.state.anonymous.load(Ordering::SeqCst);
        TokenStats {
            issued: authenticated + anonymous,
            authenticated,
            anonymous,
            rejected: self.state.rejected.load(Ordering::SeqCst),
        }
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Resets the counters and the request log.
    pub fn reset_stats(&self) {
        self.state.authenticated.store(0, Ordering::SeqCst);
        self.state.anonymous.store(0, Ordering::SeqCst);
        self.state.rejected.store(0, Ordering::SeqCst);
        if let Ok(mut l) = self.state.log.lock() {
            l.clear();
        }
    }
}

/// The libtrust key ID of a public key given as DER SubjectPublicKeyInfo: base32 (no padding)
/// of the first 30 bytes of its SHA-256, in 12 groups of 4 characters joined by `:`.
pub(crate) fn libtrust_key_id(spki_der: &[u8]) -> String {
    let hash = Sha256::digest(spki_der);
    let encoded = base32_nopad(&hash[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32 (standard alphabet) without padding.
fn base32_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for &b in data {
        buffer = (buffer << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[derive(Serialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    access_token: String,
    expires_in: u64,
    issued_at: String,
}

/// A parsed scope `type:name:actions`; the name may contain `:` (a registry host with port).
fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    Some((kind.to_string(), name.to_string(), actions))
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "code": code, "message": message }],
        "details": message,
    });
    (status, Json(body)).into_response()
}

enum Credentials {
    None,
    Valid(String),
    Invalid(Option<String>),
}

fn check_credentials(state: &TokenState, headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Some(encoded) = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
    }) else {
        return Credentials::Invalid(None);
    };
    let Some(decoded) = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
    else {
        return Credentials::Invalid(None);
    };
    match decoded.split_once(':') {
        Some((u, p)) if u == state.username && p == state.password => {
            Credentials::Valid(u.to_string())
        }
        Some((u, _)) => Credentials::Invalid(Some(u.to_string())),
        None => Credentials::Invalid(None),
    }
}

fn log(state: &TokenState, request: TokenRequest) {
    if let Ok(mut l) = state.log.lock() {
        l.push(request);
    }
}

async fn token_handler(
    State(state): State<Arc<TokenState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "service" => service = Some(v.into_owned()),
            // One parameter may hold several space-separated scopes.
            "scope" => scopes.extend(v.split_whitespace().map(str::to_string)),
            _ => {}
        }
    }
    let credentials = check_credentials(&state, &headers);
    let (subject, outcome) = match credentials {
        Credentials::Valid(u) => (Some(u), TokenOutcome::Authenticated),
        Credentials::None => (None, TokenOutcome::Anonymous),
        Credentials::Invalid(u) => {
            state.rejected.fetch_add(1, Ordering::SeqCst);
            log(
                &state,
                TokenRequest {
                    username: u,
                    service,
                    scopes,
                    granted: Vec::new(),
                    outcome: TokenOutcome::Rejected,
                },
            );
            return error_response(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication failed: invalid username or password",
            );
        }
    };
    let mut access = Vec::new();
    let mut granted = Vec::new();
    for scope in &scopes {
        let Some((kind, name, actions)) = parse_scope(scope) else {
            continue;
        };
        let actions: Vec<String> = match outcome {
            TokenOutcome::Authenticated => actions,
            _ => actions.into_iter().filter(|a| a == "pull").collect(),
        };
        if actions.is_empty() {
            continue;
        }
        granted.push(format!("{kind}:{name}:{}", actions.join(",")));
        access.push(Access {
            kind,
            name,
            actions,
        });
    }
    let now_time = SystemTime::now();
    let now = now_time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires_in = state.expires_in_secs.load(Ordering::SeqCst);
    let claims = Claims {
        iss: &state.issuer,
        sub: subject.as_deref().unwrap_or(""),
        aud: &state.service,
        exp: now + expires_in,
        nbf: now.saturating_sub(1),
        iat: now,
        jti: format!("{:032x}", rand::random::<u128>()),
        access,
    };
    let mut jwt_header = Header::new(Algorithm::ES256);
    jwt_header.kid = Some(state.key_id.clone());
    let token = match jsonwebtoken::encode(&jwt_header, &claims, &state.key) {
        Ok(t) => t,
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                &format!("cannot sign the token: {e}"),
            )
        }
    };
    match outcome {
        TokenOutcome::Authenticated => state.authenticated.fetch_add(1, Ordering::SeqCst),
        _ => state.anonymous.fetch_add(1, Ordering::SeqCst),
    };
    log(
        &state,
        TokenRequest {
            username: subject,
            service,
            scopes,
            granted,
            outcome,
        },
    );
    Json(TokenResponse {
        access_token: token.clone(),
        token,
        expires_in,
        issued_at: rfc3339(now),
    })
    .into_response()
}

/// Formats seconds since the Unix epoch as RFC 3339 in UTC (`2024-01-31T12:00:00Z`).
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32_nopad(b""), "");
        assert_eq!(base32_nopad(b"f"), "MY");
        assert_eq!(base32_nopad(b"fo"), "MZXQ");
        assert_eq!(base32_nopad(b"foo"), "MZXW6");
        assert_eq!(base32_nopad(b"foob"), "MZXW6YQ");
        assert_eq!(base32_nopad(b"fooba"), "MZXW6YTB");
        assert_eq!(base32_nopad(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn key_id_has_twelve_groups_of_four() {
        let id = libtrust_key_id(b"anything");
        let groups: Vec<&str> = id.split(':').collect();
        assert_eq!(groups.len(), 12, "{id}");
        assert!(groups.iter().all(|g| g.len() == 4), "{id}");
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn scopes_parse_with_ports_in_names() {
        assert_eq!(
            parse_scope("repository:a/b:pull,push"),
            Some((
                "repository".into(),
                "a/b".into(),
                vec!["pull".into(), "push".into()]
            ))
        );
        assert_eq!(
            parse_scope("repository:localhost:5000/x:pull").map(|s| s.1),
            Some("localhost:5000/x".into())
        );
        assert_eq!(parse_scope("nonsense"), None);
    }
}
