//! [`ScalewayBuilder`]: the configuration of a [`Scaleway`] registry, from code or the
//! environment.
//!
//! Typed setters and string keys ([`ScalewayConfigKey`], [`ScalewayBuilder::with_config`]) go
//! through the same fields; [`ScalewayBuilder::from_env`] reads the variables below through
//! [`ScalewayBuilder::with_config`] — the Scaleway SDKs' and CLI's usual `SCW_*` variables
//! for credentials, project, region and API URL, and `MIRROR_SCW_*` for this crate's own
//! settings. Invalid values are reported by [`ScalewayBuilder::build`], which validates
//! everything and makes no network call.
//!
//! | variable | key | meaning | default |
//! |---|---|---|---|
//! | `SCW_SECRET_KEY` | `secret_key` | secret key of an API key (sent as `X-Auth-Token`; the data-plane password of user `nologin`) | required |
//! | `SCW_DEFAULT_PROJECT_ID` | `project_id` | project the namespaces are created in (and the discriminator of their names) | required |
//! | `SCW_DEFAULT_REGION` | `region` | region of the registry: `fr-par`, `nl-ams`, `pl-waw` | `fr-par` |
//! | `SCW_API_URL` | `api_url` | *shared* (the kit's `endpoint`): control-plane API URL (an emulator in tests) | `https://api.scaleway.com` |
//! | `MIRROR_SCW_REGISTRY_HOST` | `registry_host` | data-plane host (`host[:port]`) | `rg.<region>.scw.cloud` |
//! | `MIRROR_SCW_PLAIN_HTTP` | `plain_http` | *shared*: speak plain HTTP to the data plane | only for loopback hosts |
//! | `MIRROR_SCW_REQUEST_TIMEOUT` | `request_timeout` | *shared*: timeout of one request without a streaming body (API calls; data plane) | 30 s (API), 60 s (data plane) |
//! | `MIRROR_SCW_CONNECT_TIMEOUT` | `connect_timeout` | *shared*: TCP connect timeout, both planes | 10 s (API), 15 s (data plane) |
//! | `MIRROR_SCW_MAX_ATTEMPTS` | `max_attempts` | *shared*: attempts per retried request, both planes | 5 |
//! | `MIRROR_SCW_PREFIX` | `prefix` | namespace name prefix (1–16 characters, `[a-z0-9-]`, starting with a letter) | `mirror` |
//! | `MIRROR_SCW_PUBLIC` | `public` | make the namespaces public (anyone may pull) | `false` |
//! | `MIRROR_SCW_NAMESPACE_TIMEOUT` | `namespace_timeout` | how long to wait for a new namespace to become ready (`90`, `90s`, `2m`) | `60s` |
//!
//! The access key (`SCW_ACCESS_KEY`) is not needed: the registry API and the data plane only
//! take the secret key. The Scaleway CLI's configuration file (`~/.config/scw/config.yaml`)
//! is not read; export its values or set them in code.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirror_core::provider::config::{
    config_error, parse_bool, parse_duration, CommonKey, CommonSettings, ConfigKey,
};
use mirror_core::provider::Origin;
use mirror_core::retry::RetryConfig;
use mirror_core::store::http::credentials::{Credentials, Secret};
use mirror_core::store::http::UploadMode;

use crate::client::{ScalewayApi, DEFAULT_API_URL, MAX_PAGE_SIZE, REQUEST_TIMEOUT};
use crate::naming;
use crate::{Inner, Scaleway, ScalewayPlane, DATA_PLANE_USER, PROVIDER};

/// The regions Scaleway Container Registry is known to run in.
pub const KNOWN_REGIONS: [&str; 3] = ["fr-par", "nl-ams", "pl-waw"];
/// The default region (the Scaleway SDKs' default).
pub const DEFAULT_REGION: &str = "fr-par";
/// The default namespace readiness timeout.
pub const DEFAULT_NAMESPACE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default first pause between two readiness checks (it doubles up to 2 s).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The string configuration keys of [`ScalewayBuilder::with_config`]. Each parses from its
/// key (`region`) and its environment variable (`SCW_DEFAULT_REGION`), case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScalewayConfigKey {
    /// Secret key of an API key.
    SecretKey,
    /// Project id.
    ProjectId,
    /// Region.
    Region,
    /// Control-plane API URL.
    ApiUrl,
    /// Data-plane host.
    RegistryHost,
    /// Plain HTTP to the data plane.
    PlainHttp,
    /// Request timeout (shared).
    RequestTimeout,
    /// Connect timeout (shared).
    ConnectTimeout,
    /// Attempts per retried request (shared).
    MaxAttempts,
    /// Namespace name prefix.
    Prefix,
    /// Public namespaces.
    Public,
    /// Namespace readiness timeout.
    NamespaceTimeout,
}

impl ConfigKey for ScalewayConfigKey {
    const ALL: &'static [ScalewayConfigKey] = &[
        ScalewayConfigKey::SecretKey,
        ScalewayConfigKey::ProjectId,
        ScalewayConfigKey::Region,
        ScalewayConfigKey::ApiUrl,
        ScalewayConfigKey::RegistryHost,
        ScalewayConfigKey::PlainHttp,
        ScalewayConfigKey::RequestTimeout,
        ScalewayConfigKey::ConnectTimeout,
        ScalewayConfigKey::MaxAttempts,
        ScalewayConfigKey::Prefix,
        ScalewayConfigKey::Public,
        ScalewayConfigKey::NamespaceTimeout,
    ];
    const NAME: &'static str = "Scaleway";
    const ENV_PREFIX: &'static str = "MIRROR_SCW_";

    fn as_str(self) -> &'static str {
        match self {
            ScalewayConfigKey::SecretKey => "secret_key",
            ScalewayConfigKey::ProjectId => "project_id",
            ScalewayConfigKey::Region => "region",
            ScalewayConfigKey::ApiUrl => "api_url",
            ScalewayConfigKey::RegistryHost => "registry_host",
            ScalewayConfigKey::PlainHttp => "plain_http",
            ScalewayConfigKey::RequestTimeout => "request_timeout",
            ScalewayConfigKey::ConnectTimeout => "connect_timeout",
            ScalewayConfigKey::MaxAttempts => "max_attempts",
            ScalewayConfigKey::Prefix => "prefix",
            ScalewayConfigKey::Public => "public",
            ScalewayConfigKey::NamespaceTimeout => "namespace_timeout",
        }
    }

    /// The Scaleway SDKs' variables for credentials, project, region and API URL;
    /// `MIRROR_SCW_*` for the rest.
    fn env_var(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            ScalewayConfigKey::SecretKey => "SCW_SECRET_KEY",
            ScalewayConfigKey::ProjectId => "SCW_DEFAULT_PROJECT_ID",
            ScalewayConfigKey::Region => "SCW_DEFAULT_REGION",
            ScalewayConfigKey::ApiUrl => "SCW_API_URL",
            ScalewayConfigKey::RegistryHost => "MIRROR_SCW_REGISTRY_HOST",
            ScalewayConfigKey::PlainHttp => "MIRROR_SCW_PLAIN_HTTP",
            ScalewayConfigKey::RequestTimeout => "MIRROR_SCW_REQUEST_TIMEOUT",
            ScalewayConfigKey::ConnectTimeout => "MIRROR_SCW_CONNECT_TIMEOUT",
            ScalewayConfigKey::MaxAttempts => "MIRROR_SCW_MAX_ATTEMPTS",
            ScalewayConfigKey::Prefix => "MIRROR_SCW_PREFIX",
            ScalewayConfigKey::Public => "MIRROR_SCW_PUBLIC",
            ScalewayConfigKey::NamespaceTimeout => "MIRROR_SCW_NAMESPACE_TIMEOUT",
        })
    }

    fn common(self) -> Option<CommonKey> {
        match self {
            ScalewayConfigKey::ApiUrl => Some(CommonKey::Endpoint),
            ScalewayConfigKey::PlainHttp => Some(CommonKey::PlainHttp),
            ScalewayConfigKey::RequestTimeout => Some(CommonKey::RequestTimeout),
            ScalewayConfigKey::ConnectTimeout => Some(CommonKey::ConnectTimeout),
            ScalewayConfigKey::MaxAttempts => Some(CommonKey::MaxAttempts),
            _ => None,
        }
    }
}

impl ScalewayConfigKey {
    /// Every key.
    pub const ALL: &'static [ScalewayConfigKey] = <ScalewayConfigKey as ConfigKey>::ALL;

    /// The key (`region`).
    pub fn as_str(self) -> &'static str {
        ConfigKey::as_str(self)
    }

    /// The environment variable [`ScalewayBuilder::from_env`] reads (`SCW_DEFAULT_REGION`).
    pub fn env_var(self) -> &'static str {
        match ConfigKey::env_var(self) {
            Cow::Borrowed(s) => s,
            Cow::Owned(_) => "",
        }
    }
}

impl FromStr for ScalewayConfigKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <ScalewayConfigKey as ConfigKey>::parse(s)
    }
}

/// Configures and builds a [`Scaleway`] registry.
#[derive(Debug, Default, Clone)]
pub struct ScalewayBuilder {
    secret_key: Option<Secret>,
    project_id: Option<String>,
    region: Option<String>,
    registry_host: Option<String>,
    prefix: Option<String>,
    public: bool,
    namespace_timeout: Option<Duration>,
    poll_interval: Option<Duration>,
    page_size: Option<u32>,
    common: CommonSettings,
}

impl ScalewayBuilder {
    /// A builder with every default and nothing read from the environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder configured from the environment (see the module docs). Empty variables are
    /// ignored.
    pub fn from_env() -> Self {
        mirror_core::provider::from_env::<ScalewayConfigKey>()
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .fold(Self::new(), |b, (k, v)| b.with_config(k, v))
    }

    /// Sets one setting from a string; invalid values are reported by
    /// [`ScalewayBuilder::build`].
    pub fn with_config(mut self, key: ScalewayConfigKey, value: impl Into<String>) -> Self {
        let value = value.into();
        if let Some(common) = key.common() {
            self.common.set(common, key.as_str(), value.trim());
            return self;
        }
        let mut record = |r: Result<(), String>| {
            if let Err(e) = r {
                self.common.record_error(e);
            }
        };
        match key {
            ScalewayConfigKey::SecretKey => self.secret_key = Some(Secret::new(value.trim())),
            ScalewayConfigKey::ProjectId => self.project_id = Some(value.trim().to_string()),
            ScalewayConfigKey::Region => self.region = Some(value.trim().to_string()),
            ScalewayConfigKey::RegistryHost => self.registry_host = Some(value.trim().to_string()),
            ScalewayConfigKey::Prefix => self.prefix = Some(value.trim().to_string()),
            ScalewayConfigKey::Public => {
                record(parse_bool(key.as_str(), &value).map(|b| self.public = b))
            }
            ScalewayConfigKey::NamespaceTimeout => record(
                parse_duration(key.as_str(), &value).map(|d| self.namespace_timeout = Some(d)),
            ),
            _ => {}
        }
        self
    }

    /// The current value of a setting, as a string (the secret key shows as `***`).
    pub fn get_config(&self, key: ScalewayConfigKey) -> Option<String> {
        if key == ScalewayConfigKey::ApiUrl {
            return Some(
                self.common
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| DEFAULT_API_URL.into()),
            );
        }
        if let Some(common) = key.common() {
            return self.common.get(common);
        }
        match key {
            ScalewayConfigKey::SecretKey => self.secret_key.as_ref().map(|s| s.to_string()),
            ScalewayConfigKey::ProjectId => self.project_id.clone(),
            ScalewayConfigKey::Region => {
                Some(self.region.clone().unwrap_or_else(|| DEFAULT_REGION.into()))
            }
            ScalewayConfigKey::RegistryHost => self.registry_host.clone(),
            ScalewayConfigKey::Prefix => Some(
                self.prefix
                    .clone()
                    .unwrap_or_else(|| naming::DEFAULT_PREFIX.into()),
            ),
            ScalewayConfigKey::Public => Some(self.public.to_string()),
            ScalewayConfigKey::NamespaceTimeout => Some(format!(
                "{}s",
                self.namespace_timeout
                    .unwrap_or(DEFAULT_NAMESPACE_TIMEOUT)
                    .as_secs()
            )),
            _ => None,
        }
    }

    /// The secret key of an API key (a UUID). Sent only as the `X-Auth-Token` header and as
    /// the data-plane password; never shown by `Debug`.
    pub fn secret_key(mut self, key: impl Into<String>) -> Self {
        self.secret_key = Some(Secret::new(key.into().trim()));
        self
    }

    /// The project the namespaces live in (a UUID).
    pub fn project_id(self, id: impl Into<String>) -> Self {
        self.with_config(ScalewayConfigKey::ProjectId, id)
    }

    /// The region (`fr-par`, `nl-ams`, `pl-waw`).
    pub fn region(self, region: impl Into<String>) -> Self {
        self.with_config(ScalewayConfigKey::Region, region)
    }

    /// The control-plane API URL (`https://api.scaleway.com`, or an emulator).
    pub fn api_url(self, url: impl Into<String>) -> Self {
        self.with_config(ScalewayConfigKey::ApiUrl, url)
    }

    /// The data-plane host (`host[:port]`) instead of `rg.<region>.scw.cloud`.
    pub fn registry_host(self, host: impl Into<String>) -> Self {
        self.with_config(ScalewayConfigKey::RegistryHost, host)
    }

    /// Plain HTTP (`true`) or HTTPS to the data plane (default: plain only for loopback).
    pub fn plain_http(mut self, plain: bool) -> Self {
        self.common.plain_http = Some(plain);
        self
    }

    /// The namespace name prefix (default `mirror`).
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        self.with_config(ScalewayConfigKey::Prefix, prefix)
    }

    /// Namespaces anyone may pull from without credentials (default `false`: private).
    /// Applied to existing namespaces too when they differ.
    pub fn public(mut self, public: bool) -> Self {
        self.public = public;
        self
    }

    /// How long `ensure_repository` waits for a new namespace to become ready.
    pub fn namespace_timeout(mut self, timeout: Duration) -> Self {
        self.namespace_timeout = Some(timeout);
        self
    }

    /// The first pause between two readiness checks of a namespace (doubling up to 2 s).
    pub fn namespace_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// Items asked per page of the list calls (1 to 100, default 100).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// The retry policy of API calls and of the data plane (default: the core default).
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.common.retry = Some(retry);
        self
    }

    fn validate(&self) -> mirror_core::Result<(Secret, String, String)> {
        let bad = |m: String| config_error(PROVIDER, m);
        self.common.validate().map_err(bad)?;
        if let Some(u) = &self.common.endpoint {
            if url::Url::parse(u)
                .map(|u| u.cannot_be_a_base())
                .unwrap_or(true)
            {
                return Err(bad(format!(
                    "API URL {u:?}: expected http(s)://host[:port][/path]"
                )));
            }
        }
        let secret = self.secret_key.clone().ok_or_else(|| {
            bad(format!(
                "no secret key: set {} (the secret key of an API key with Container Registry permissions)",
                ScalewayConfigKey::SecretKey.env_var()
            ))
        })?;
        let s = secret.expose();
        if s.is_empty() || s.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad(
                "secret key: empty or holding spaces or control characters".into(),
            ));
        }
        let project = self.project_id.clone().ok_or_else(|| {
            bad(format!(
                "no project id: set {} (the project the namespaces are created in)",
                ScalewayConfigKey::ProjectId.env_var()
            ))
        })?;
        let project = project.to_ascii_lowercase();
        let uuid_like = project.len() == 36
            && project.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
        if !uuid_like {
            return Err(bad(format!(
                "project id {project:?}: a Scaleway project id is a UUID"
            )));
        }
        let region = self
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let shaped = region.len() >= 5
            && region.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_lowercase())
                    && b.bytes().all(|c| c.is_ascii_lowercase())
            });
        if !shaped {
            return Err(bad(format!(
                "region {region:?} is not a Scaleway region ({})",
                KNOWN_REGIONS.join(", ")
            )));
        }
        if !KNOWN_REGIONS.contains(&region.as_str()) {
            tracing::warn!(
                region,
                "not a region Scaleway Container Registry is known to run in"
            );
        }
        if let Some(size) = self.page_size {
            if size == 0 || size > MAX_PAGE_SIZE {
                return Err(bad(format!("page size {size}: 1 to {MAX_PAGE_SIZE}")));
            }
        }
        Ok((secret, project, region))
    }

    /// Validates the settings and builds the registry. Makes no network call.
    pub fn build(self) -> mirror_core::Result<Scaleway> {
        // 1. Validate everything; no network call.
        let (secret, project_id, region) = self.validate()?;
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| naming::DEFAULT_PREFIX.to_string());
        naming::check_prefix(&prefix)?;
        let host = match &self.registry_host {
            Some(h) => h
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            None => naming::registry_host(&region),
        };
        if host.is_empty() || host.contains('/') {
            return Err(config_error(
                PROVIDER,
                format!("registry host {host:?}: expected host[:port]"),
            ));
        }
        // 2. The control plane (the secret key is the only credential: no token cache).
        let origin = Origin::new(PROVIDER, &host);
        let mut api = ScalewayApi::new(
            self.common.endpoint.as_deref().unwrap_or(DEFAULT_API_URL),
            &region,
            &project_id,
            secret.clone(),
            origin,
            self.common.retry(),
        )?
        .with_request_timeout(self.common.request_timeout.unwrap_or(REQUEST_TIMEOUT))
        .with_connect_timeout(
            self.common
                .connect_timeout
                .unwrap_or(crate::client::API_CONNECT_TIMEOUT),
        )?;
        if let Some(size) = self.page_size {
            api = api.with_page_size(size);
        }
        // 3. The data plane: user `nologin`, the secret key as password.
        let data = self.common.data_plane(
            &host,
            mirror_core::store::http::credentials::static_provider(Credentials::basic(
                DATA_PLANE_USER,
                secret.clone(),
            )),
            UploadMode::Auto,
        )?;
        Ok(mirror_core::provider::cloud::CloudRegistry::new(
            ScalewayPlane {
                inner: Arc::new(Inner {
                    api,
                    data,
                    host,
                    region,
                    project_id,
                    prefix,
                    public: self.public,
                    secret,
                    namespace_timeout: self.namespace_timeout.unwrap_or(DEFAULT_NAMESPACE_TIMEOUT),
                    poll_interval: self.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL),
                    ready: Mutex::new(Default::default()),
                    flights: Default::default(),
                }),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = "4b0c6bd4-5a39-4d48-8c1e-6a2f2e4e1b11";
    const SECRET: &str = "0f0e0d0c-1111-2222-3333-444455556666";

    fn base() -> ScalewayBuilder {
        ScalewayBuilder::new()
            .secret_key(SECRET)
            .project_id(PROJECT)
    }

    #[test]
    fn keys_parse_from_names_and_variables() {
        for k in ScalewayConfigKey::ALL {
            assert_eq!(k.as_str().parse::<ScalewayConfigKey>().unwrap(), *k);
            assert_eq!(k.env_var().parse::<ScalewayConfigKey>().unwrap(), *k);
            assert_eq!(
                k.env_var()
                    .to_ascii_lowercase()
                    .parse::<ScalewayConfigKey>()
                    .unwrap(),
                *k
            );
        }
        assert!("nope".parse::<ScalewayConfigKey>().is_err());
    }

    #[test]
    fn string_and_typed_settings_agree() {
        let b = base()
            .with_config(ScalewayConfigKey::Public, "yes")
            .with_config(ScalewayConfigKey::NamespaceTimeout, "2m")
            .region("nl-ams");
        assert_eq!(
            b.get_config(ScalewayConfigKey::Public).as_deref(),
            Some("true")
        );
        assert_eq!(
            b.get_config(ScalewayConfigKey::NamespaceTimeout).as_deref(),
            Some("120s")
        );
        assert_eq!(
            b.get_config(ScalewayConfigKey::Region).as_deref(),
            Some("nl-ams")
        );
        assert_eq!(
            b.get_config(ScalewayConfigKey::Prefix).as_deref(),
            Some("mirror")
        );
        assert_eq!(
            b.get_config(ScalewayConfigKey::SecretKey).as_deref(),
            Some("***")
        );
        assert!(!format!("{b:?}").contains(SECRET));
        let reg = b.build().unwrap();
        assert_eq!(reg.host(), "rg.nl-ams.scw.cloud");
        assert_eq!(reg.region(), "nl-ams");
        assert!(!format!("{reg:?}").contains(SECRET), "{reg:?}");
    }

    #[test]
    fn durations_parse() {
        let k = ScalewayConfigKey::NamespaceTimeout;
        assert_eq!(
            parse_duration(k.as_str(), "90").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration(k.as_str(), "90s").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration(k.as_str(), "1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration(k.as_str(), "1h").unwrap(),
            Duration::from_secs(3600)
        );
        for bad in ["", "s", "5 d", "-1", "1.5s"] {
            assert!(parse_duration(k.as_str(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_settings_fail_at_build() {
        for b in [
            ScalewayBuilder::new().project_id(PROJECT),
            ScalewayBuilder::new().secret_key(SECRET),
            base().secret_key("has space"),
            base().project_id("not-a-uuid"),
            base().region("Paris"),
            base().region("frpar"),
            base().api_url("ftp://x"),
            base().with_config(ScalewayConfigKey::PlainHttp, "maybe"),
            base().with_config(ScalewayConfigKey::NamespaceTimeout, "soon"),
            base().prefix("Bad_Prefix"),
            base().prefix("waytoolongprefix-x"),
            base().registry_host("host/path"),
            base().page_size(0),
            base().page_size(101),
        ] {
            let err = b.clone().build().unwrap_err();
            assert!(
                matches!(
                    err,
                    mirror_core::Error::Config(_) | mirror_core::Error::InvalidName { .. }
                ),
                "{b:?}: {err:?}"
            );
            assert!(!err.to_string().contains(SECRET));
        }
        let err = ScalewayBuilder::new()
            .project_id(PROJECT)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("SCW_SECRET_KEY"), "{err}");
        let err = ScalewayBuilder::new()
            .secret_key(SECRET)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("SCW_DEFAULT_PROJECT_ID"), "{err}");
    }

    #[test]
    fn hosts_and_project_ids_are_normalised() {
        let reg = base()
            .project_id(PROJECT.to_uppercase())
            .registry_host("http://127.0.0.1:5000/")
            .build()
            .unwrap();
        assert_eq!(reg.host(), "127.0.0.1:5000");
        assert_eq!(reg.project_id(), PROJECT);
    }
}
