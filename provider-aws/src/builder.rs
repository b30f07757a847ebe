//! [`EcrBuilder`]: the configuration of an [`Ecr`] registry, from code or the environment.
//!
//! Typed setters and string keys ([`EcrConfigKey`], [`EcrBuilder::with_config`]) go through
//! the same fields; [`EcrBuilder::from_env`] reads the `MIRROR_ECR_*` variables through
//! [`EcrBuilder::with_config`]. Invalid values are reported by [`EcrBuilder::build`], which
//! validates everything before the first AWS call. The keys marked *shared* are the kit's
//! ([`mirror_core::provider::CommonKey`]) and mean the same for every provider.
//!
//! | variable | key | meaning | default |
//! |---|---|---|---|
//! | `MIRROR_ECR_REGION` | `region` | AWS region of the registry | the SDK chain: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile |
//! | `MIRROR_ECR_ACCOUNT` | `account` | account id (12 digits) owning the registry | the caller's account, from `GetAuthorizationToken` |
//! | `MIRROR_ECR_PREFIX` | `prefix` | repository path prefix (`mirror`, `team/mirror`) | none |
//! | `MIRROR_ECR_ENDPOINT` | `endpoint` | *shared*: control-plane endpoint URL override (VPC endpoint, FIPS, an emulator) | the SDK's regional endpoint |
//! | `MIRROR_ECR_REGISTRY_HOST` | `registry_host` | data-plane host override (`host[:port]`); an ECR host also gives account and region | `<account>.dkr.ecr.<region>.amazonaws.com` |
//! | `MIRROR_ECR_PLAIN_HTTP` | `plain_http` | *shared*: speak plain HTTP to the data plane | only for loopback hosts |
//! | `MIRROR_ECR_REQUEST_TIMEOUT` | `request_timeout` | *shared*: timeout of one API call attempt and of one data-plane request without a streaming body (`60s`) | 60 s |
//! | `MIRROR_ECR_CONNECT_TIMEOUT` | `connect_timeout` | *shared*: TCP connect timeout, both planes | 10 s (API), 15 s (data plane) |
//! | `MIRROR_ECR_MAX_ATTEMPTS` | `max_attempts` | *shared*: attempts per retried request, both planes (the SDK's standard retry mode for API calls) | 5 on the data plane, the SDK's 3 for API calls |
//! | `MIRROR_ECR_TAG_MUTABILITY` | `tag_mutability` | `MUTABLE` or `IMMUTABLE` for new repositories | `MUTABLE` |
//! | `MIRROR_ECR_SCAN_ON_PUSH` | `scan_on_push` | basic scanning on push for new repositories | `false` |
//! | `MIRROR_ECR_LIFECYCLE_POLICY` | `lifecycle_policy` | enforce Cluster-mode retention with a lifecycle policy (with the anchor rule first, see [`crate::lifecycle`]) | `true` |
//! | `MIRROR_ECR_RETENTION_AGE` | `retention_age` | what the lifecycle policy's retention counts from: `pushed` (`sinceImagePushed`) or `pulled` (`sinceImagePulled`) | `pushed` |
//! | `MIRROR_ECR_PROFILE` | `profile` | AWS profile for credentials and region | the SDK chain (`AWS_PROFILE`) |
//!
//! AWS credentials come from the SDK's default chain (environment, profile files, SSO, web
//! identity, ECS and EC2 instance roles) unless an [`SdkConfig`] is given with
//! [`EcrBuilder::sdk_config`].

use std::str::FromStr;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::types::ImageTagMutability;
use mirror_core::provider::config::{
    config_error, parse_bool, CommonKey, CommonSettings, ConfigKey,
};
use mirror_core::provider::Origin;
use mirror_core::store::http::UploadMode;

use crate::client::EcrApi;
use crate::credential;
use crate::naming;
use crate::{Ecr, Inner, PROVIDER};

/// Tag mutability of the repositories this crate creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagMutability {
    /// Tags may be moved (the default). Needed for re-mirroring a re-pushed source tag in
    /// Service mode.
    #[default]
    Mutable,
    /// Tags never move: a re-pushed source tag cannot be mirrored again under the same tag.
    Immutable,
}

impl TagMutability {
    pub(crate) fn to_sdk(self) -> ImageTagMutability {
        match self {
            TagMutability::Mutable => ImageTagMutability::Mutable,
            TagMutability::Immutable => ImageTagMutability::Immutable,
        }
    }
}

impl FromStr for TagMutability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "MUTABLE" => Ok(TagMutability::Mutable),
            "IMMUTABLE" => Ok(TagMutability::Immutable),
            _ => Err(format!(
                "tag mutability {s:?}: expected MUTABLE or IMMUTABLE"
            )),
        }
    }
}

/// The string configuration keys of [`EcrBuilder::with_config`]. Each parses from its key
/// (`region`) and its environment variable (`MIRROR_ECR_REGION`), case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EcrConfigKey {
    /// AWS region.
    Region,
    /// Account id owning the registry.
    Account,
    /// Repository path prefix.
    Prefix,
    /// Control-plane endpoint URL (shared).
    Endpoint,
    /// Data-plane host.
    RegistryHost,
    /// Plain HTTP to the data plane (shared).
    PlainHttp,
    /// Request timeout (shared).
    RequestTimeout,
    /// Connect timeout (shared).
    ConnectTimeout,
    /// Attempts per retried request (shared).
    MaxAttempts,
    /// `MUTABLE` / `IMMUTABLE`.
    TagMutability,
    /// Scan on push.
    ScanOnPush,
    /// Lifecycle policy for Cluster-mode retention.
    LifecyclePolicy,
    /// What the retention counts from (`pushed` / `pulled`).
    RetentionAge,
    /// AWS profile.
    Profile,
}

impl ConfigKey for EcrConfigKey {
    const ALL: &'static [EcrConfigKey] = &[
        EcrConfigKey::Region,
        EcrConfigKey::Account,
        EcrConfigKey::Prefix,
        EcrConfigKey::Endpoint,
        EcrConfigKey::RegistryHost,
        EcrConfigKey::PlainHttp,
        EcrConfigKey::RequestTimeout,
        EcrConfigKey::ConnectTimeout,
        EcrConfigKey::MaxAttempts,
        EcrConfigKey::TagMutability,
        EcrConfigKey::ScanOnPush,
        EcrConfigKey::LifecyclePolicy,
        EcrConfigKey::RetentionAge,
        EcrConfigKey::Profile,
    ];
    const NAME: &'static str = "ECR";
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn as_str(self) -> &'static str {
        match self {
            EcrConfigKey::Region => "region",
            EcrConfigKey::Account => "account",
            EcrConfigKey::Prefix => "prefix",
            EcrConfigKey::Endpoint => "endpoint",
            EcrConfigKey::RegistryHost => "registry_host",
            EcrConfigKey::PlainHttp => "plain_http",
            EcrConfigKey::RequestTimeout => "request_timeout",
            EcrConfigKey::ConnectTimeout => "connect_timeout",
            EcrConfigKey::MaxAttempts => "max_attempts",
            EcrConfigKey::TagMutability => "tag_mutability",
            EcrConfigKey::ScanOnPush => "scan_on_push",
            EcrConfigKey::LifecyclePolicy => "lifecycle_policy",
            EcrConfigKey::RetentionAge => "retention_age",
            EcrConfigKey::Profile => "profile",
        }
    }

    fn common(self) -> Option<CommonKey> {
        match self {
            EcrConfigKey::Endpoint => Some(CommonKey::Endpoint),
            EcrConfigKey::PlainHttp => Some(CommonKey::PlainHttp),
            EcrConfigKey::RequestTimeout => Some(CommonKey::RequestTimeout),
            EcrConfigKey::ConnectTimeout => Some(CommonKey::ConnectTimeout),
            EcrConfigKey::MaxAttempts => Some(CommonKey::MaxAttempts),
            _ => None,
        }
    }
}

impl EcrConfigKey {
    /// Every key.
    pub const ALL: &'static [EcrConfigKey] = <EcrConfigKey as ConfigKey>::ALL;

    /// The key (`region`).
    pub fn as_str(self) -> &'static str {
        ConfigKey::as_str(self)
    }

    /// The environment variable (`MIRROR_ECR_REGION`).
    pub fn env_var(self) -> String {
        ConfigKey::env_var(self).into_owned()
    }
}

/// Default TCP connect timeout of the ECR API (the data plane's is the kit's, 15 s).
pub const API_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Prefix of the environment variables [`EcrBuilder::from_env`] reads.
pub const ENV_PREFIX: &str = "MIRROR_ECR_";

impl FromStr for EcrConfigKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <EcrConfigKey as ConfigKey>::parse(s)
    }
}

/// Configures and builds an [`Ecr`] registry.
#[derive(Debug, Default, Clone)]
pub struct EcrBuilder {
    region: Option<String>,
    account: Option<String>,
    prefix: Option<String>,
    registry_host: Option<String>,
    tag_mutability: TagMutability,
    scan_on_push: bool,
    lifecycle_policy: Option<bool>,
    retention_age: crate::lifecycle::Age,
    profile: Option<String>,
    sdk_config: Option<SdkConfig>,
    common: CommonSettings,
}

impl EcrBuilder {
    /// A builder with every default (nothing read from the environment but what the AWS SDK
    /// reads itself).
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder configured from the `MIRROR_ECR_*` variables (see the module docs).
    pub fn from_env() -> Self {
        mirror_core::provider::from_env::<EcrConfigKey>()
            .into_iter()
            .fold(Self::new(), |b, (k, v)| b.with_config(k, v))
    }

    /// Sets one setting from a string; invalid values are reported by [`EcrBuilder::build`].
    pub fn with_config(mut self, key: EcrConfigKey, value: impl Into<String>) -> Self {
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
            EcrConfigKey::Region => self.region = Some(value),
            EcrConfigKey::Account => self.account = Some(value),
            EcrConfigKey::Prefix => self.prefix = Some(value),
            EcrConfigKey::RegistryHost => self.registry_host = Some(value),
            EcrConfigKey::Profile => self.profile = Some(value),
            EcrConfigKey::ScanOnPush => {
                record(parse_bool(key.as_str(), &value).map(|b| self.scan_on_push = b))
            }
            EcrConfigKey::LifecyclePolicy => {
                record(parse_bool(key.as_str(), &value).map(|b| self.lifecycle_policy = Some(b)))
            }
            EcrConfigKey::TagMutability => record(value.parse().map(|m| self.tag_mutability = m)),
            EcrConfigKey::RetentionAge => record(value.parse().map(|a| self.retention_age = a)),
            _ => {}
        }
        self
    }

    /// The current value of a setting, as a string.
    pub fn get_config(&self, key: EcrConfigKey) -> Option<String> {
        if let Some(common) = key.common() {
            return self.common.get(common);
        }
        match key {
            EcrConfigKey::Region => self.region.clone(),
            EcrConfigKey::Account => self.account.clone(),
            EcrConfigKey::Prefix => self.prefix.clone(),
            EcrConfigKey::RegistryHost => self.registry_host.clone(),
            EcrConfigKey::Profile => self.profile.clone(),
            EcrConfigKey::ScanOnPush => Some(self.scan_on_push.to_string()),
            EcrConfigKey::LifecyclePolicy => {
                Some(self.lifecycle_policy.unwrap_or(true).to_string())
            }
            EcrConfigKey::RetentionAge => Some(
                match self.retention_age {
                    crate::lifecycle::Age::SincePulled => "pulled",
                    _ => "pushed",
                }
                .to_string(),
            ),
            EcrConfigKey::TagMutability => Some(
                match self.tag_mutability {
                    TagMutability::Mutable => "MUTABLE",
                    TagMutability::Immutable => "IMMUTABLE",
                }
                .to_string(),
            ),
            _ => None,
        }
    }

    /// The AWS region (`eu-west-1`).
    pub fn region(self, region: impl Into<String>) -> Self {
        self.with_config(EcrConfigKey::Region, region)
    }

    /// The account id owning the registry (12 digits).
    pub fn account(self, account: impl Into<String>) -> Self {
        self.with_config(EcrConfigKey::Account, account)
    }

    /// Puts every repository under `prefix`.
    pub fn repository_prefix(self, prefix: impl Into<String>) -> Self {
        self.with_config(EcrConfigKey::Prefix, prefix)
    }

    /// The control-plane endpoint URL (the SDK's `endpoint_url`).
    pub fn endpoint(self, url: impl Into<String>) -> Self {
        self.with_config(EcrConfigKey::Endpoint, url)
    }

    /// The data-plane host (`host[:port]`). An ECR host
    /// (`<account>.dkr.ecr.<region>.amazonaws.com`) also sets account and region when they
    /// are not set.
    pub fn registry_host(self, host: impl Into<String>) -> Self {
        self.with_config(EcrConfigKey::RegistryHost, host)
    }

    /// Plain HTTP (`true`) or HTTPS to the data plane (default: plain only for loopback).
    pub fn plain_http(mut self, plain: bool) -> Self {
        self.common.plain_http = Some(plain);
        self
    }

    /// The retry policy of the data plane (and its attempts for API calls).
    pub fn retry(mut self, retry: mirror_core::retry::RetryConfig) -> Self {
        self.common.retry = Some(retry);
        self
    }

    /// Tag mutability of new repositories.
    pub fn tag_mutability(mut self, m: TagMutability) -> Self {
        self.tag_mutability = m;
        self
    }

    /// Basic scanning on push for new repositories.
    pub fn scan_on_push(mut self, scan: bool) -> Self {
        self.scan_on_push = scan;
        self
    }

    /// Enforce Cluster-mode retention with an ECR lifecycle policy (default true). With
    /// `false`, retention is left to `Mirror::sweep`, which never deletes images in use.
    pub fn lifecycle_policy(mut self, enabled: bool) -> Self {
        self.lifecycle_policy = Some(enabled);
        self
    }

    /// What the lifecycle policy's retention counts from (default: the push). See
    /// [`crate::lifecycle`] for what `sinceImagePulled` can and cannot see.
    pub fn retention_age(mut self, age: crate::lifecycle::Age) -> Self {
        self.retention_age = age;
        self
    }

    /// The AWS profile to load credentials and region from.
    pub fn profile(self, profile: impl Into<String>) -> Self {
        self.with_config(EcrConfigKey::Profile, profile)
    }

    /// Uses this SDK configuration (credentials, region, retries, HTTP client) instead of
    /// loading the default chain. Region and endpoint settings of the builder still apply.
    pub fn sdk_config(mut self, config: SdkConfig) -> Self {
        self.sdk_config = Some(config);
        self
    }

    /// Checks every setting; no network.
    fn validate(&self) -> mirror_core::Result<()> {
        self.common
            .validate()
            .map_err(|e| config_error(PROVIDER, e))?;
        if let Some(a) = &self.account {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(config_error(
                    PROVIDER,
                    format!("account {a:?}: an AWS account id is 12 digits"),
                ));
            }
        }
        if let Some(r) = &self.region {
            if r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(config_error(
                    PROVIDER,
                    format!("region {r:?} is not an AWS region"),
                ));
            }
        }
        if let Some(p) = &self.prefix {
            naming::check_prefix(p)?;
        }
        Ok(())
    }

    /// Validates the settings, loads the AWS configuration and builds the registry.
    ///
    /// Makes no AWS call when the data-plane host is known (account and region, or a
    /// registry host); otherwise one `GetAuthorizationToken` tells the registry of the
    /// caller's account.
    pub async fn build(mut self) -> mirror_core::Result<Ecr> {
        // 1. Validate everything, before any network call.
        self.validate()?;
        if let Some((account, region)) = self
            .registry_host
            .as_deref()
            .and_then(naming::parse_registry_host)
        {
            self.account.get_or_insert(account);
            self.region.get_or_insert(region);
        }
        // 2. The control plane.
        let sdk = match self.sdk_config.take() {
            Some(c) => c,
            None => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(https_client())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(
                                self.common.connect_timeout.unwrap_or(API_CONNECT_TIMEOUT),
                            )
                            .operation_attempt_timeout(self.common.request_timeout())
                            .build(),
                    );
                if let Some(r) = &self.common.retry {
                    loader = loader.retry_config(
                        aws_config::retry::RetryConfig::standard()
                            .with_max_attempts(r.max_attempts),
                    );
                }
                if let Some(r) = &self.region {
                    loader = loader.region(Region::new(r.clone()));
                }
                if let Some(p) = &self.profile {
                    loader = loader.profile_name(p);
                }
                loader.load().await
            }
        };
        let region = match (&self.region, sdk.region()) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r.to_string(),
            (None, None) => {
                return Err(config_error(
                    PROVIDER,
                    format!(
                        "no AWS region: set {}, AWS_REGION, or a region in the AWS profile",
                        EcrConfigKey::Region.env_var()
                    ),
                ))
            }
        };
        let mut conf = aws_sdk_ecr::config::Builder::from(&sdk).region(Region::new(region.clone()));
        if let Some(e) = &self.common.endpoint {
            conf = conf.endpoint_url(e);
        }
        if sdk.http_client().is_none() {
            conf = conf.http_client(https_client());
        }
        let sdk_client = aws_sdk_ecr::Client::from_conf(conf.build());
        let mut api = EcrApi::new(
            sdk_client,
            self.account.clone(),
            Origin::new(PROVIDER, &format!("ecr.{region}")),
        );
        let host = match (&self.registry_host, &self.account) {
            (Some(h), _) => h
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            (None, Some(a)) => naming::registry_host(a, &region),
            (None, None) => {
                let token = api.authorization_token().await?;
                let endpoint = token.proxy_endpoint.clone().ok_or_else(|| {
                    config_error(
                        PROVIDER,
                        "GetAuthorizationToken named no registry; set the account",
                    )
                })?;
                endpoint
                    .trim_start_matches("https://")
                    .trim_end_matches('/')
                    .to_string()
            }
        };
        let origin = Origin::new(PROVIDER, &host);
        api.set_origin(origin.clone());
        // 3. The token cache and the data plane. ECR's chunked PATCH answers 201 and drops
        // every chunk after the first (aws/containers-roadmap#2831): one streaming PUT per
        // blob, never the chunked fallback.
        let credentials = Arc::new(credential::credentials(
            origin.registry.clone(),
            Arc::new(api.clone()),
        ));
        let data = self
            .common
            .data_plane(&host, credentials.clone(), UploadMode::Monolithic)?;
        Ok(Ecr {
            inner: Arc::new(Inner {
                api,
                data,
                host,
                region,
                account: self.account,
                prefix: self.prefix,
                tag_mutability: self.tag_mutability,
                scan_on_push: self.scan_on_push,
                lifecycle_policy: self.lifecycle_policy.unwrap_or(true),
                retention_age: self.retention_age,
                credentials,
            }),
        })
    }
}

/// The SDK's HTTPS client on rustls with ring (no aws-lc, so no cmake or nasm to build).
pub fn https_client() -> aws_sdk_ecr::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_names_and_variables() {
        for k in EcrConfigKey::ALL {
            assert_eq!(k.as_str().parse::<EcrConfigKey>().unwrap(), *k);
            assert_eq!(k.env_var().parse::<EcrConfigKey>().unwrap(), *k);
        }
        assert!("nope".parse::<EcrConfigKey>().is_err());
    }

    #[test]
    fn string_and_typed_settings_agree() {
        let b = EcrBuilder::new()
            .with_config(EcrConfigKey::TagMutability, "immutable")
            .with_config(EcrConfigKey::ScanOnPush, "yes")
            .region("eu-west-1");
        assert_eq!(
            b.get_config(EcrConfigKey::TagMutability).as_deref(),
            Some("IMMUTABLE")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::ScanOnPush).as_deref(),
            Some("true")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::Region).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::LifecyclePolicy).as_deref(),
            Some("true")
        );
    }

    #[test]
    fn shared_settings_parse_through_the_kit() {
        let b = EcrBuilder::new()
            .with_config(EcrConfigKey::RequestTimeout, "90s")
            .with_config(EcrConfigKey::MaxAttempts, "2")
            .plain_http(true);
        assert_eq!(
            b.get_config(EcrConfigKey::RequestTimeout).as_deref(),
            Some("90000ms")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::MaxAttempts).as_deref(),
            Some("2")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::PlainHttp).as_deref(),
            Some("true")
        );
    }

    #[tokio::test]
    async fn invalid_settings_fail_at_build_before_any_call() {
        for b in [
            EcrBuilder::new().with_config(EcrConfigKey::PlainHttp, "maybe"),
            EcrBuilder::new().account("12"),
            EcrBuilder::new().region("EU West"),
            EcrBuilder::new().endpoint("ftp://x"),
            EcrBuilder::new().with_config(EcrConfigKey::ConnectTimeout, "soon"),
            EcrBuilder::new()
                .region("eu-west-1")
                .repository_prefix("Bad//Prefix"),
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
}
