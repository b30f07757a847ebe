//! Registry credentials: given in code, or read from a docker `config.json` (its `auths`,
//! `credHelpers` and `credsStore`, the last two by running `docker-credential-<name> get`).
//!
//! Secrets are wrapped in [`Secret`], whose `Debug` and `Display` never show the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::reference::DOCKER_HUB;

/// A secret string (password, token). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret value. Call only where it is sent to its registry.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

/// How to authenticate to one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials: anonymous bearer tokens where the registry hands them out.
    #[default]
    Anonymous,
    /// A user name and password (or access token used as a password): sent as HTTP basic auth
    /// to registries that ask for it, and to the token realm of registries that use bearer
    /// tokens.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (docker `identitytoken`), exchanged at the token realm.
    IdentityToken(Secret),
    /// A bearer token sent as is to the registry (no token exchange).
    Bearer(Secret),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"***")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Credentials {
    /// Basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// True for [`Credentials::Anonymous`].
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }
}

/// Credentials with an optional expiry, as a [`CredentialProvider`] hands them out.
#[derive(Debug, Clone)]
pub struct ExpiringCredentials {
    /// The credentials.
    pub credentials: Credentials,
    /// When they stop working; `None` for credentials that do not expire.
    pub expires_at: Option<std::time::SystemTime>,
}

/// A source of credentials for a registry, asked again when credentials expire or are refused.
///
/// # Contract
///
/// - `credentials` may be called concurrently and often; implementations cache.
/// - `invalidate` is called after the registry refused the last credentials (HTTP 401 after a
///   fresh authentication); the next `credentials` call must fetch anew.
/// - Errors are returned as [`Error::Credentials`] naming the registry, never the secret.
#[async_trait]
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// The credentials to use now.
    async fn credentials(&self) -> Result<ExpiringCredentials>;
    /// Forget cached credentials.
    fn invalidate(&self) {}
}

/// A provider that always returns the same credentials.
#[derive(Debug, Clone)]
pub(crate) struct StaticCredentials(pub Credentials);

#[async_trait]
impl CredentialProvider for StaticCredentials {
    async fn credentials(&self) -> Result<ExpiringCredentials> {
        Ok(ExpiringCredentials {
            credentials: self.0.clone(),
            expires_at: None,
        })
    }
}

/// Wraps credentials in a shared static provider.
pub fn static_provider(c: Credentials) -> Arc<dyn CredentialProvider> {
    Arc::new(StaticCredentials(c))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
    #[serde(default, rename = "registrytoken")]
    registry_token: Option<String>,
}

/// A parsed docker `config.json` (or podman/skopeo `auth.json`, which has the same shape).
#[derive(Debug)]
pub struct DockerConfig {
    path: PathBuf,
    file: DockerConfigFile,
}

impl DockerConfig {
    /// The default location: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
    }

    /// Loads the default config; a missing file is an empty config.
    pub fn load_default() -> Result<Self> {
        match Self::default_path() {
            Some(p) if p.exists() => Self::load(&p),
            other => Ok(DockerConfig {
                path: other.unwrap_or_default(),
                file: DockerConfigFile::default(),
            }),
        }
    }

    /// Loads a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Parses config text (`path` is only used in messages).
    pub fn parse(path: &Path, text: &[u8]) -> Result<Self> {
        let bad = |why: String| Error::Credentials {
            registry: "*".into(),
            reason: format!("cannot parse {}: {why}", path.display()),
        };
        // Only a JSON object is a config (serde would also read an array positionally).
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if !value.is_object() {
            return Err(bad("the top level is not a JSON object".into()));
        }
        let file: DockerConfigFile =
            serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        Ok(DockerConfig {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The credentials for `registry` (a host such as `ghcr.io` or `docker.io`):
    /// `credHelpers` first, then `auths`, then `credsStore`; anonymous when none applies.
    pub fn credentials_for(&self, registry: &str) -> Result<Credentials> {
        let keys = lookup_keys(registry);
        for k in &keys {
            if let Some(helper) = self.file.cred_helpers.get(k) {
                return run_helper(helper, &server_url(registry), registry);
            }
        }
        // Lookup keys in priority order; for each, the exact spelling of the key wins over
        // other spellings (`https://host`), which are tried in sorted order: the answer never
        // depends on hash order.
        for k in &keys {
            let exact = self.file.auths.get(k.as_str()).into_iter();
            let others = self
                .file
                .auths
                .iter()
                .filter(|(key, _)| key.as_str() != k && normalise_key(key) == *k)
                .map(|(_, e)| e);
            for entry in exact.chain(others) {
                if let Some(c) = self.decode(registry, entry)? {
                    return Ok(c);
                }
            }
        }
        if let Some(store) = &self.file.creds_store {
            return run_helper(store, &server_url(registry), registry);
        }
        Ok(Credentials::Anonymous)
    }

    fn decode(&self, registry: &str, e: &AuthEntry) -> Result<Option<Credentials>> {
        if let Some(t) = e.identity_token.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::IdentityToken(Secret::new(t))));
        }
        if let Some(t) = e.registry_token.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::Bearer(Secret::new(t))));
        }
        if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = |why: &str| Error::Credentials {
                registry: registry.to_string(),
                reason: format!("the \"auth\" entry in {} {why}", self.path.display()),
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("is not base64"))?;
            let text = String::from_utf8(raw).map_err(|_| bad("is not UTF-8"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| bad("is not user:password"))?;
            return Ok(Some(Credentials::basic(user, pass)));
        }
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Ok(Some(Credentials::basic(u.as_str(), p.as_str())));
        }
        Ok(None)
    }
}

/// The names a registry may be filed under in `auths` / `credHelpers`.
fn lookup_keys(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        vec![
            "index.docker.io/v1".into(),
            "docker.io".into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![registry.to_string()]
    }
}

/// `https://host/v1/` → `host/v1`, `http://host` → `host`.
fn normalise_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    if k == "index.docker.io/v1" {
        return k.to_string();
    }
    k.strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k)
        .to_string()
}

fn server_url(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<name> get` with the server URL on stdin.
fn run_helper(name: &str, server: &str, registry: &str) -> Result<Credentials> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{name}");
    let fail = |reason: String| Error::Credentials {
        registry: registry.to_string(),
        reason,
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(fail(format!("invalid credential helper name {name:?}")));
    }
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("cannot write to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("{program} failed: {e}")))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The helper protocol's answer for "no entry".
        if stdout.contains("credentials not found") {
            return Ok(Credentials::Anonymous);
        }
        return Err(fail(format!("{program} get exited with {}", out.status)));
    }
    let parsed: HelperOutput = serde_json::from_slice(&out.stdout).map_err(|e| {
        fail(format!(
            "{program} printed something that is not its JSON answer: {e}"
        ))
    })?;
    if parsed.username == "<token>" {
        return Ok(Credentials::IdentityToken(Secret::new(parsed.secret)));
    }
    Ok(Credentials::basic(parsed.username, parsed.secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> DockerConfig {
        DockerConfig::parse(Path::new("config.json"), json.as_bytes()).unwrap()
    }

    #[test]
    fn auths_are_decoded_for_hub_and_other_hosts() {
        let c = cfg(r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
            "localhost:5000":{"username":"a","password":"b"},
            "https://ghcr.io":{"identitytoken":"tok"}}}"#);
        assert_eq!(
            c.credentials_for("docker.io").unwrap(),
            Credentials::basic("user", "pass")
        );
        assert_eq!(
            c.credentials_for("localhost:5000").unwrap(),
            Credentials::basic("a", "b")
        );
        assert_eq!(
            c.credentials_for("ghcr.io").unwrap(),
            Credentials::IdentityToken(Secret::new("tok"))
        );
        assert_eq!(
            c.credentials_for("quay.io").unwrap(),
            Credentials::Anonymous
        );
    }

    #[test]
    fn malformed_auth_is_a_clear_error_without_the_secret() {
        let c = cfg(r#"{"auths":{"h.io":{"auth":"bm9jb2xvbg=="}}}"#);
        let err = c.credentials_for("h.io").unwrap_err().to_string();
        assert!(err.contains("user:password"), "{err}");
        assert!(!err.contains("nocolon"));
    }

    #[test]
    fn missing_helper_is_an_error_naming_it() {
        let c = cfg(r#"{"credHelpers":{"h.io":"definitely-not-installed"}}"#);
        let err = c.credentials_for("h.io").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-definitely-not-installed"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::basic("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Bearer("hunter2".into())).contains("hunter2"));
    }
}
