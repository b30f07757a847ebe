//! [`ArtifactRegistryBuilder`]: the configuration of an [`ArtifactRegistry`], from code or the
//! environment.
//!
//! Typed setters and string keys ([`GarConfigKey`], [`ArtifactRegistryBuilder::with_config`])
//! go through the same fields; [`ArtifactRegistryBuilder::from_env`] reads the `MIRROR_GAR_*`
//! variables through [`ArtifactRegistryBuilder::with_config`]. Invalid values are reported by
//! [`ArtifactRegistryBuilder::build`], which validates everything before the first call.
//!
//! | variable | key | meaning | default |
//! |---|---|---|---|
//! | `MIRROR_GAR_PROJECT` | `project` | project id owning the repositories (`my-project`, `example.com:my-project`) | the credentials' project (key file, metadata server) |
//! | `MIRROR_GAR_LOCATION` | `location` | region or multi-region of the repositories (`europe-west1`, `us`) | the location of `docker_host` when it is a `*-docker.pkg.dev` host; else required |
//! | `MIRROR_GAR_PREFIX` | `prefix` | start of every repository id (letters, digits, `-`; ≤ 20) | `mirror` |
//! | `MIRROR_GAR_ENDPOINT` | `endpoint` | *shared*: REST endpoint URL (Private Service Connect, a fake) | `https://artifactregistry.googleapis.com` |
//! | `MIRROR_GAR_DOCKER_HOST` | `docker_host` | data-plane host (`host[:port]`) | `<location>-docker.pkg.dev` |
//! | `MIRROR_GAR_PLAIN_HTTP` | `plain_http` | *shared*: speak plain HTTP to the data plane | only for loopback hosts |
//! | `MIRROR_GAR_REQUEST_TIMEOUT` | `request_timeout` | *shared*: timeout of one request without a streaming body, both planes | 60 s |
//! | `MIRROR_GAR_CONNECT_TIMEOUT` | `connect_timeout` | *shared*: TCP connect timeout, both planes | 15 s |
//! | `MIRROR_GAR_MAX_ATTEMPTS` | `max_attempts` | *shared*: attempts per retried request, both planes | 5 |
//! | `MIRROR_GAR_CREDENTIALS_FILE` | `credentials_file` | service-account key file (JSON) | `GOOGLE_APPLICATION_CREDENTIALS` when it is a service-account key, else the default chain |
//! | `MIRROR_GAR_TOKEN_URI` | `token_uri` | OAuth token endpoint used with the key file (overrides the key's `token_uri`) | the key's `token_uri` |
//! | `MIRROR_GAR_CLEANUP_POLICIES` | `cleanup_policies` | enforce retention and keep counts with cleanup policies | `true` |
//! | `MIRROR_GAR_CLEANUP_DRY_RUN` | `cleanup_dry_run` | cleanup policies only report (`cleanupPolicyDryRun`) | `false` |
//! | `MIRROR_GAR_OPERATION_TIMEOUT` | `operation_timeout` | how long a long-running operation is waited for (`90s`, `5m`) | `2m` |
//!
//! The keys marked *shared* are the kit's ([`mirror_core::provider::CommonKey`]) and mean the
//! same for every provider.
//!
//! Credentials, in order: a [`GcpTokenSource`] given with [`ArtifactRegistryBuilder::token_source`];
//! the key file of `credentials_file`; `GOOGLE_APPLICATION_CREDENTIALS` when it names a
//! service-account key; otherwise `gcp_auth`'s default chain (gcloud application-default
//! credentials, the GCE/GKE metadata server, the `gcloud` CLI).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mirror_core::provider::config::{
    config_error, parse_bool, CommonKey, CommonSettings, ConfigKey,
};
use mirror_core::provider::{Kind, Origin};
use mirror_core::retry::RetryConfig;
use mirror_core::store::http::UploadMode;
use url::Url;

use crate::client::{ArApi, DEFAULT_ENDPOINT, DEFAULT_OPERATION_TIMEOUT};
use crate::credential::{self, DefaultChain, GcpTokenSource, ServiceAccountKey};
use crate::naming;
use crate::{ArtifactRegistry, Inner, PROVIDER};

/// The string configuration keys of [`ArtifactRegistryBuilder::with_config`]. Each parses from
/// its key (`project`) and its environment variable (`MIRROR_GAR_PROJECT`), case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GarConfigKey {
    /// Project id.
    Project,
    /// Location.
    Location,
    /// Repository id prefix.
    Prefix,
    /// REST endpoint URL.
    Endpoint,
    /// Data-plane host.
    DockerHost,
    /// Plain HTTP to the data plane.
    PlainHttp,
    /// Request timeout (shared).
    RequestTimeout,
    /// Connect timeout (shared).
    ConnectTimeout,
    /// Attempts per retried request (shared).
    MaxAttempts,
    /// Service-account key file.
    CredentialsFile,
    /// OAuth token endpoint for the key file.
    TokenUri,
    /// Cleanup policies on or off.
    CleanupPolicies,
    /// Cleanup policies in dry-run mode.
    CleanupDryRun,
    /// Operation timeout.
    OperationTimeout,
}

/// Prefix of the environment variables [`ArtifactRegistryBuilder::from_env`] reads.
pub const ENV_PREFIX: &str = "MIRROR_GAR_";

impl ConfigKey for GarConfigKey {
    const ALL: &'static [GarConfigKey] = &[
        GarConfigKey::Project,
        GarConfigKey::Location,
        GarConfigKey::Prefix,
        GarConfigKey::Endpoint,
        GarConfigKey::DockerHost,
        GarConfigKey::PlainHttp,
        GarConfigKey::RequestTimeout,
        GarConfigKey::ConnectTimeout,
        GarConfigKey::MaxAttempts,
        GarConfigKey::CredentialsFile,
        GarConfigKey::TokenUri,
        GarConfigKey::CleanupPolicies,
        GarConfigKey::CleanupDryRun,
        GarConfigKey::OperationTimeout,
    ];
    const NAME: &'static str = "Artifact Registry";
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn as_str(self) -> &'static str {
        match self {
            GarConfigKey::Project => "project",
            GarConfigKey::Location => "location",
            GarConfigKey::Prefix => "prefix",
            GarConfigKey::Endpoint => "endpoint",
            GarConfigKey::DockerHost => "docker_host",
            GarConfigKey::PlainHttp => "plain_http",
            GarConfigKey::RequestTimeout => "request_timeout",
            GarConfigKey::ConnectTimeout => "connect_timeout",
            GarConfigKey::MaxAttempts => "max_attempts",
            GarConfigKey::CredentialsFile => "credentials_file",
            GarConfigKey::TokenUri => "token_uri",
            GarConfigKey::CleanupPolicies => "cleanup_policies",
            GarConfigKey::CleanupDryRun => "cleanup_dry_run",
            GarConfigKey::OperationTimeout => "operation_timeout",
        }
    }

    fn common(self) -> Option<CommonKey> {
        match self {
            GarConfigKey::Endpoint => Some(CommonKey::Endpoint),
            GarConfigKey::PlainHttp => Some(CommonKey::PlainHttp),
            GarConfigKey::RequestTimeout => Some(CommonKey::RequestTimeout),
            GarConfigKey::ConnectTimeout => Some(CommonKey::ConnectTimeout),
            GarConfigKey::MaxAttempts => Some(CommonKey::MaxAttempts),
            _ => None,
        }
    }
}

impl GarConfigKey {
    /// Every key.
    pub const ALL: &'static [GarConfigKey] = <GarConfigKey as ConfigKey>::ALL;

    /// The key (`project`).
    pub fn as_str(self) -> &'static str {
        ConfigKey::as_str(self)
    }

    /// The environment variable (`MIRROR_GAR_PROJECT`).
    pub fn env_var(self) -> String {
        ConfigKey::env_var(self).into_owned()
    }
}

impl FromStr for GarConfigKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <GarConfigKey as ConfigKey>::parse(s)
    }
}

/// Configures and builds an [`ArtifactRegistry`].
#[derive(Debug, Clone, Default)]
pub struct ArtifactRegistryBuilder {
    project: Option<String>,
    location: Option<String>,
    prefix: Option<String>,
    docker_host: Option<String>,
    credentials_file: Option<PathBuf>,
    token_uri: Option<String>,
    cleanup_policies: Option<bool>,
    cleanup_dry_run: Option<bool>,
    operation_timeout: Option<Duration>,
    token_source: Option<Arc<dyn GcpTokenSource>>,
    common: CommonSettings,
}

impl ArtifactRegistryBuilder {
    /// A builder with every default (nothing read from the environment).
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder configured from the `MIRROR_GAR_*` variables (see the module docs).
    pub fn from_env() -> Self {
        mirror_core::provider::from_env::<GarConfigKey>()
            .into_iter()
            .fold(Self::new(), |b, (k, v)| b.with_config(k, v))
    }

    /// Sets one setting from a string; invalid values are reported by
    /// [`ArtifactRegistryBuilder::build`].
    pub fn with_config(mut self, key: GarConfigKey, value: impl Into<String>) -> Self {
        let value = value.into();
        if let Some(common) = key.common() {
            self.common.set(common, key.as_str(), &value);
            return self;
        }
        let mut record = |r: Result<(), String>| {
            if let Err(e) = r {
                self.common.record_error(e);
            }
        };
        match key {
            GarConfigKey::Project => self.project = Some(value),
            GarConfigKey::Location => self.location = Some(value),
            GarConfigKey::Prefix => self.prefix = Some(value),
            GarConfigKey::DockerHost => self.docker_host = Some(value),
            GarConfigKey::CredentialsFile => self.credentials_file = Some(PathBuf::from(value)),
            GarConfigKey::TokenUri => self.token_uri = Some(value),
            GarConfigKey::CleanupPolicies => {
                record(parse_bool(key.as_str(), &value).map(|b| self.cleanup_policies = Some(b)))
            }
            GarConfigKey::CleanupDryRun => {
                record(parse_bool(key.as_str(), &value).map(|b| self.cleanup_dry_run = Some(b)))
            }
            GarConfigKey::OperationTimeout => {
                record(match humantime::parse_duration(value.trim()) {
                    Ok(d) if !d.is_zero() => {
                        self.operation_timeout = Some(d);
                        Ok(())
                    }
                    Ok(_) => Err("operation_timeout: must be more than zero".into()),
                    Err(e) => Err(format!(
                        "operation_timeout: {value:?} is not a duration ({e})"
                    )),
                })
            }
            _ => {}
        }
        self
    }

    /// The current value of a setting, as a string.
    pub fn get_config(&self, key: GarConfigKey) -> Option<String> {
        if key == GarConfigKey::Endpoint {
            return Some(
                self.common
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            );
        }
        if let Some(common) = key.common() {
            return self.common.get(common);
        }
        match key {
            GarConfigKey::Project => self.project.clone(),
            GarConfigKey::Location => self.location.clone(),
            GarConfigKey::Prefix => Some(
                self.prefix
                    .clone()
                    .unwrap_or_else(|| naming::DEFAULT_PREFIX.into()),
            ),
            GarConfigKey::DockerHost => self.docker_host.clone(),
            GarConfigKey::CredentialsFile => self
                .credentials_file
                .as_ref()
                .map(|p| p.display().to_string()),
            GarConfigKey::TokenUri => self.token_uri.clone(),
            GarConfigKey::CleanupPolicies => {
                Some(self.cleanup_policies.unwrap_or(true).to_string())
            }
            GarConfigKey::CleanupDryRun => Some(self.cleanup_dry_run.unwrap_or(false).to_string()),
            GarConfigKey::OperationTimeout => Some(
                humantime::format_duration(
                    self.operation_timeout.unwrap_or(DEFAULT_OPERATION_TIMEOUT),
                )
                .to_string(),
            ),
            _ => None,
        }
    }

    /// The project id (`my-project`; `example.com:my-project` for domain-scoped projects).
    pub fn project(self, project: impl Into<String>) -> Self {
        self.with_config(GarConfigKey::Project, project)
    }

    /// The location (`europe-west1`, `us`).
    pub fn location(self, location: impl Into<String>) -> Self {
        self.with_config(GarConfigKey::Location, location)
    }

    /// Starts every repository id with `prefix` (default `mirror`).
    pub fn repository_prefix(self, prefix: impl Into<String>) -> Self {
        self.with_config(GarConfigKey::Prefix, prefix)
    }

    /// The REST endpoint URL.
    pub fn endpoint(self, url: impl Into<String>) -> Self {
        self.with_config(GarConfigKey::Endpoint, url)
    }

    /// The data-plane host (`host[:port]`). A `<location>-docker.pkg.dev` host also sets the
    /// location when it is not set.
    pub fn docker_host(self, host: impl Into<String>) -> Self {
        self.with_config(GarConfigKey::DockerHost, host)
    }

    /// Plain HTTP (`true`) or HTTPS to the data plane (default: plain only for loopback).
    pub fn plain_http(mut self, plain: bool) -> Self {
        self.common.plain_http = Some(plain);
        self
    }

    /// A service-account key file.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    /// The OAuth token endpoint used with the key file.
    pub fn token_uri(self, uri: impl Into<String>) -> Self {
        self.with_config(GarConfigKey::TokenUri, uri)
    }

    /// Enforce retention (Cluster mode) and keep counts (Service mode) with cleanup policies
    /// (default true). With `false`, retention is left to `Mirror::sweep`, which never deletes
    /// images in use.
    pub fn cleanup_policies(mut self, enabled: bool) -> Self {
        self.cleanup_policies = Some(enabled);
        self
    }

    /// Create and keep repositories with `cleanupPolicyDryRun` (policies only report what they
    /// would delete).
    pub fn cleanup_dry_run(mut self, dry_run: bool) -> Self {
        self.cleanup_dry_run = Some(dry_run);
        self
    }

    /// How long long-running operations are waited for (default 2 minutes).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Access tokens from this source instead of a key file or the default chain.
    pub fn token_source(mut self, source: Arc<dyn GcpTokenSource>) -> Self {
        self.token_source = Some(source);
        self
    }

    /// The retry policy of API calls and of the data plane.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.common.retry = Some(retry);
        self
    }

    /// Checks every setting; no network.
    fn validate(&self) -> mirror_core::Result<()> {
        let bad = |m: String| config_error(PROVIDER, m);
        self.common.validate().map_err(bad)?;
        if let Some(e) = &self.common.endpoint {
            if Url::parse(e).map(|u| u.cannot_be_a_base()).unwrap_or(true) {
                return Err(bad(format!("endpoint {e:?}: expected an http(s) URL")));
            }
        }
        if let Some(h) = &self.docker_host {
            if h.is_empty() || (h.contains('/') && !h.starts_with("https://")) {
                return Err(bad(format!("docker_host {h:?}: expected host[:port]")));
            }
        }
        if let Some(u) = &self.token_uri {
            let url = Url::parse(u).map_err(|err| bad(format!("token_uri {u:?}: {err}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad(format!("token_uri {u:?}: expected an http(s) URL")));
            }
        }
        if let Some(p) = &self.prefix {
            naming::check_prefix(p)?;
        }
        Ok(())
    }

    /// Validates the settings, finds the credentials and builds the registry. Makes no API
    /// call and requests no token (the default chain may probe the metadata server).
    pub async fn build(self) -> mirror_core::Result<ArtifactRegistry> {
        // 1. Validate everything, before any network call.
        self.validate()?;
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| naming::DEFAULT_PREFIX.to_string());
        let docker_host = self.docker_host.as_deref().map(|h| {
            h.trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string()
        });
        let location = match (&self.location, docker_host.as_deref()) {
            (Some(l), _) => l.clone(),
            (None, Some(h)) => naming::location_of_host(h).ok_or_else(|| {
                config_error(
                    PROVIDER,
                    format!(
                        "no location: set {} (the docker host {h} does not name one)",
                        GarConfigKey::Location.env_var()
                    ),
                )
            })?,
            (None, None) => {
                return Err(config_error(
                    PROVIDER,
                    format!(
                        "no location: set {} (for example europe-west1 or us)",
                        GarConfigKey::Location.env_var()
                    ),
                ))
            }
        };
        naming::validate_location(&location)?;
        let host = docker_host.unwrap_or_else(|| naming::docker_host(&location));
        let origin = Origin::new(PROVIDER, &host);

        // 2. The token source and its cache.
        let source: Arc<dyn GcpTokenSource> = match (&self.token_source, &self.credentials_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => Arc::new(self.key(ServiceAccountKey::from_file(path)?)?),
            (None, None) => match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
                .map(PathBuf::from)
                .filter(|p| is_service_account_key(p))
            {
                Some(path) => Arc::new(self.key(ServiceAccountKey::from_file(&path)?)?),
                None => Arc::new(DefaultChain::discover().await.map_err(|mut e| {
                    if e.kind() == Kind::Credentials {
                        e.registry = origin.registry.clone();
                    }
                    e
                })?),
            },
        };
        let project = match &self.project {
            Some(p) => p.clone(),
            None => source.project_id().await.ok_or_else(|| {
                config_error(
                    PROVIDER,
                    format!(
                        "no project: set {} (the credentials name none)",
                        GarConfigKey::Project.env_var()
                    ),
                )
            })?,
        };
        naming::validate_project(&project)?;
        let credentials = Arc::new(credential::credentials(origin.registry.clone(), source));

        // 3. The control plane and the data plane. Artifact Registry does not accept chunked
        // uploads: one streaming PUT per blob, never the chunked fallback.
        let endpoint = self
            .common
            .endpoint_or(DEFAULT_ENDPOINT)
            .map_err(|e| config_error(PROVIDER, e))?;
        let api = ArApi::new(
            endpoint,
            project.clone(),
            location.clone(),
            credentials.clone(),
            origin,
        )?
        .with_retry(self.common.retry())
        .with_request_timeout(self.common.request_timeout())
        .with_connect_timeout(self.common.connect_timeout())?
        .with_operation_timeout(self.operation_timeout.unwrap_or(DEFAULT_OPERATION_TIMEOUT));
        let data = self
            .common
            .data_plane(&host, credentials.clone(), UploadMode::Monolithic)?;
        Ok(ArtifactRegistry {
            inner: Arc::new(Inner {
                api,
                data,
                host,
                project,
                location,
                prefix,
                cleanup_policies: self.cleanup_policies.unwrap_or(true),
                cleanup_dry_run: self.cleanup_dry_run.unwrap_or(false),
                credentials,
            }),
        })
    }

    fn key(&self, key: ServiceAccountKey) -> mirror_core::Result<ServiceAccountKey> {
        match &self.token_uri {
            Some(uri) => Ok(key.with_token_uri(uri)?),
            None => Ok(key),
        }
    }
}

/// True when `path` is a JSON file of `"type": "service_account"`.
fn is_service_account_key(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("type")
                .and_then(|t| t.as_str())
                .map(|t| t == "service_account")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{AccessToken, StaticToken};

    fn static_source() -> Arc<dyn GcpTokenSource> {
        Arc::new(StaticToken(AccessToken {
            token: "ya29.t".into(),
            expires_at: std::time::SystemTime::now() + Duration::from_secs(3600),
        }))
    }

    #[test]
    fn keys_parse_from_names_and_variables() {
        for k in GarConfigKey::ALL {
            assert_eq!(k.as_str().parse::<GarConfigKey>().unwrap(), *k);
            assert_eq!(k.env_var().parse::<GarConfigKey>().unwrap(), *k);
        }
        assert_eq!(GarConfigKey::DockerHost.env_var(), "MIRROR_GAR_DOCKER_HOST");
        assert!("nope".parse::<GarConfigKey>().is_err());
    }

    #[test]
    fn string_and_typed_settings_agree() {
        let b = ArtifactRegistryBuilder::new()
            .with_config(GarConfigKey::CleanupPolicies, "no")
            .with_config(GarConfigKey::OperationTimeout, "90s")
            .location("us");
        assert_eq!(
            b.get_config(GarConfigKey::CleanupPolicies).as_deref(),
            Some("false")
        );
        assert_eq!(
            b.get_config(GarConfigKey::OperationTimeout).as_deref(),
            Some("1m 30s")
        );
        assert_eq!(b.get_config(GarConfigKey::Location).as_deref(), Some("us"));
        assert_eq!(
            b.get_config(GarConfigKey::Prefix).as_deref(),
            Some("mirror")
        );
        assert_eq!(
            b.get_config(GarConfigKey::Endpoint).as_deref(),
            Some(DEFAULT_ENDPOINT)
        );
    }

    #[tokio::test]
    async fn invalid_settings_fail_at_build_before_any_call() {
        let base = || ArtifactRegistryBuilder::new().token_source(static_source());
        for b in [
            base().with_config(GarConfigKey::PlainHttp, "maybe"),
            base().with_config(GarConfigKey::OperationTimeout, "soon"),
            base().project("my-project"),
            base().location("us").project("Bad_Project"),
            base().location("US").project("my-project"),
            base()
                .location("us")
                .project("my-project")
                .endpoint("ftp://x"),
            base()
                .location("us")
                .project("my-project")
                .repository_prefix("1x"),
            base()
                .location("us")
                .project("my-project")
                .token_uri("nope"),
            base().docker_host("127.0.0.1:5000").project("my-project"),
        ] {
            let err = b.build().await.unwrap_err();
            assert!(
                matches!(
                    err,
                    mirror_core::Error::Config(_) | mirror_core::Error::InvalidName { .. }
                ),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_location_comes_from_a_docker_host() {
        let r = ArtifactRegistryBuilder::new()
            .token_source(static_source())
            .project("my-project")
            .docker_host("europe-west4-docker.pkg.dev")
            .build()
            .await
            .unwrap();
        assert_eq!(r.location_id(), "europe-west4");
        assert_eq!(
            mirror_core::Registry::location(&r),
            "europe-west4-docker.pkg.dev"
        );
        let r = ArtifactRegistryBuilder::new()
            .token_source(static_source())
            .project("my-project")
            .location("us")
            .build()
            .await
            .unwrap();
        assert_eq!(r.host(), "us-docker.pkg.dev");
    }
}
