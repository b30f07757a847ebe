//! [`EcrBuilder`]: an [`Ecr`] registry from code, string keys ([`EcrConfigKey`], each with its
//! `MIRROR_ECR_*` variable and default) or the environment; [`EcrFactory`] for
//! `mirror_core::registry::open`: `ecr://<ECR host>[/PREFIX]`, `ecr://[/PREFIX]` (the caller's
//! account, the SDK chain's region) or `ecr://HOST[:PORT][/PREFIX]` (a data-plane override),
//! options being the keys. AWS credentials come from the SDK's default chain unless an
//! [`SdkConfig`] is given ([`EcrBuilder::sdk_config`]).

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use mirror_core::kit::provider::cloud::CloudRegistry;
use mirror_core::kit::provider::config::Value;
use mirror_core::kit::provider::TokenSource;
use mirror_core::kit::provider::{CommonKey, CommonSettings, Origin, Provider, ProviderFactory};
use mirror_core::kit::store::http::UploadMode;
use mirror_core::Registry;

use crate::client::EcrApi;
use crate::{credential, lifecycle, naming, Ecr, EcrPlane, PROVIDER};

mirror_core::setting_choice! {
    /// Tag mutability of the repositories this crate creates.
    pub enum TagMutability {
        /// Tags may be moved (the default; needed to mirror a re-pushed source tag again).
        Mutable = ["MUTABLE"],
        /// Tags never move.
        Immutable = ["IMMUTABLE"],
    }
}

/// An account id (see [`naming::is_account`]).
fn account(a: &str) -> Result<String, String> {
    let valid = naming::is_account(a).then(|| a.to_string());
    valid.ok_or_else(|| "an AWS account id is 12 digits".into())
}

/// A region (see [`naming::is_region`]).
fn region(r: &str) -> Result<String, String> {
    let valid = naming::is_region(r).then(|| r.to_string());
    valid.ok_or_else(|| "not an AWS region".into())
}

mirror_core::config_keys! {
    /// The string configuration keys of [`EcrBuilder::with_config`], each parsed from its
    /// name or its variable in any case; *shared* keys mean the same for every provider.
    pub enum EcrConfigKey: "ECR", "MIRROR_ECR_" {
        /// `MIRROR_ECR_REGION`: the AWS region (default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile).
        Region = "region" => Value::Checked(region);
        /// `MIRROR_ECR_ACCOUNT`: the 12-digit account owning the registry (default: the caller's).
        Account = "account" => Value::Checked(account);
        /// `MIRROR_ECR_PREFIX`: repository path prefix (`mirror`, `team/mirror`; default none).
        Prefix = "prefix" => Value::Text;
        /// `MIRROR_ECR_ENDPOINT`: *shared*, the API endpoint (a VPC endpoint, FIPS, an emulator).
        Endpoint = "endpoint" => Value::Common(CommonKey::Endpoint);
        /// `MIRROR_ECR_REGISTRY_HOST`: data-plane `host[:port]`; an ECR host names account and region.
        RegistryHost = "registry_host" => Value::Text;
        /// `MIRROR_ECR_PLAIN_HTTP`: *shared*, plain HTTP to the data plane (default: loopback only).
        PlainHttp = "plain_http" => Value::Common(CommonKey::PlainHttp);
        /// `MIRROR_ECR_REQUEST_TIMEOUT`: *shared*, one API call attempt or data-plane request (60 s).
        RequestTimeout = "request_timeout" => Value::Common(CommonKey::RequestTimeout);
        /// `MIRROR_ECR_CONNECT_TIMEOUT`: *shared* (default 10 s on the API, 15 s on the data plane).
        ConnectTimeout = "connect_timeout" => Value::Common(CommonKey::ConnectTimeout);
        /// `MIRROR_ECR_MAX_ATTEMPTS`: *shared* (default 5 on the data plane, the SDK's 3 for API calls).
        MaxAttempts = "max_attempts" => Value::Common(CommonKey::MaxAttempts);
        /// `MIRROR_ECR_TAG_MUTABILITY`: `MUTABLE` (default) or `IMMUTABLE` for new repositories.
        TagMutability = "tag_mutability" => Value::OneOf(TagMutability::WORDS), default "MUTABLE";
        /// `MIRROR_ECR_SCAN_ON_PUSH`: basic scanning on push for new repositories (default `false`).
        ScanOnPush = "scan_on_push" => Value::Flag, default "false";
        /// `MIRROR_ECR_LIFECYCLE_POLICY`: Cluster-mode retention by a lifecycle policy (default `true`).
        LifecyclePolicy = "lifecycle_policy" => Value::Flag, default "true";
        /// `MIRROR_ECR_RETENTION_AGE`: the policy counts from the push (`pushed`, default) or last `pulled`.
        RetentionAge = "retention_age" => Value::OneOf(lifecycle::Age::WORDS), default "pushed";
        /// `MIRROR_ECR_PROFILE`: the AWS profile for credentials and region (default `AWS_PROFILE`).
        Profile = "profile" => Value::Text;
    }
}

mirror_core::provider_builder! {
    /// Configures and builds an [`Ecr`] registry (see the module docs).
    pub struct EcrBuilder(EcrConfigKey, Option<SdkConfig>) {
        /// The AWS region (`eu-west-1`).
        fn region => Region;
        /// The account id owning the registry (12 digits).
        fn account => Account;
        /// Puts every repository under `prefix`.
        fn repository_prefix => Prefix;
        /// The control-plane endpoint URL (the SDK's `endpoint_url`).
        fn endpoint => Endpoint;
        /// The data-plane host (`host[:port]`); an ECR host also sets account and region.
        fn registry_host => RegistryHost;
        /// Tag mutability of new repositories.
        fn tag_mutability => TagMutability;
        /// Basic scanning on push for new repositories.
        fn scan_on_push => ScanOnPush;
        /// Cluster-mode retention by an ECR lifecycle policy (default true); with `false`,
        /// retention is left to `Mirror::sweep`, which never deletes images in use.
        fn lifecycle_policy => LifecyclePolicy;
        /// What the lifecycle policy's retention counts from (see [`crate::lifecycle`]).
        fn retention_age => RetentionAge;
        /// The AWS profile to load credentials and region from.
        fn profile => Profile;
    }
}

/// Default TCP connect timeout of the ECR API (the data plane's is the kit's, 15 s).
pub const API_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl EcrBuilder {
    /// Uses this SDK configuration (credentials, region, retries, HTTP client) instead of
    /// loading the default chain; the builder's region and endpoint still apply.
    pub fn sdk_config(mut self, config: SdkConfig) -> Self {
        self.extra = Some(config);
        self
    }

    /// Validates the settings, loads the AWS configuration and builds the registry. Makes no
    /// AWS call when the data-plane host is known (account and region, or a registry host);
    /// otherwise one `GetAuthorizationToken` tells the registry of the caller's account.
    pub async fn build(self) -> mirror_core::Result<Ecr> {
        use EcrConfigKey as K;
        let s = &self.settings;
        s.validate()?;
        let prefix = s.text(K::Prefix).map(str::to_string);
        prefix.as_deref().map_or(Ok(()), naming::check_prefix)?;
        let mut account = s.text(K::Account).map(str::to_string);
        let mut region = s.text(K::Region).map(str::to_string);
        if let Some((a, r)) = s
            .text(K::RegistryHost)
            .and_then(naming::parse_registry_host)
        {
            account.get_or_insert(a);
            region.get_or_insert(r);
        }
        let common = s.common();
        let sdk = match self.extra.clone() {
            Some(c) => c,
            None => load_sdk(region.as_deref(), s.text(K::Profile), Some(common)).await,
        };
        let hint = format!(
            "not set: set {}, AWS_REGION, or a region in the AWS profile",
            K::Region.env_var()
        );
        let region = region.or_else(|| sdk.region().map(|r| r.to_string()));
        let region = region.ok_or_else(|| s.error(K::Region, hint))?;
        let client = sdk_client(&sdk, &region, common.endpoint.as_deref());
        let origin = Origin::new(PROVIDER, &format!("ecr.{region}"));
        let mut api = EcrApi::new(client, account.clone(), origin);
        let host = match (s.host(K::RegistryHost)?, &account) {
            (Some(h), _) => h,
            (None, Some(a)) => naming::registry_host(a, &region),
            (None, None) => {
                let none = "GetAuthorizationToken named no registry; set the account";
                let named = api.fetch().await?.registry;
                let named = named.ok_or_else(|| s.error(K::Account, none))?;
                named
                    .trim_start_matches("https://")
                    .trim_end_matches('/')
                    .to_string()
            }
        };
        let origin = Origin::new(PROVIDER, &host);
        api.set_origin(origin.clone());
        // The token cache and the data plane: one streaming PUT per blob (see the crate docs).
        let credentials = credential::credentials(origin.registry, Arc::new(api.clone()));
        let credentials = Arc::new(credentials);
        let data = common.data_plane(&host, credentials.clone(), UploadMode::Monolithic)?;
        let age = s.text_or_default(K::RetentionAge).unwrap_or_default();
        Ok(CloudRegistry::new(EcrPlane {
            api,
            data,
            region,
            prefix,
            tag_mutability: s
                .text_or_default(K::TagMutability)
                .unwrap_or_default()
                .into(),
            scan_on_push: s.flag(K::ScanOnPush),
            lifecycle_policy: s.flag(K::LifecyclePolicy),
            retention_age: age.parse().unwrap_or_default(),
            credentials,
        }))
    }
}

/// The AWS configuration of the SDK's default chain (credentials, region, profile) on this
/// crate's HTTPS client, with `region` and `profile` when given, and with `common`'s
/// timeouts and attempts (else the SDK's).
pub async fn load_sdk(
    region: Option<&str>,
    profile: Option<&str>,
    common: Option<&CommonSettings>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
    if let Some(common) = common {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(common.connect_timeout.unwrap_or(API_CONNECT_TIMEOUT))
            .operation_attempt_timeout(common.request_timeout());
        loader = loader.timeout_config(timeouts.build());
    }
    if let Some(r) = common.and_then(|c| c.retry.as_ref()) {
        let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(r.max_attempts);
        loader = loader.retry_config(retry);
    }
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

/// The SDK's HTTPS client on rustls with ring (no aws-lc, so no cmake or nasm to build).
pub fn https_client() -> aws_sdk_ecr::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An ECR client of `region` from `sdk`, at `endpoint` when given.
pub fn sdk_client(sdk: &SdkConfig, region: &str, endpoint: Option<&str>) -> aws_sdk_ecr::Client {
    let mut conf = aws_sdk_ecr::config::Builder::from(sdk).region(Region::new(region.to_string()));
    if let Some(e) = endpoint {
        conf = conf.endpoint_url(e);
    }
    if sdk.http_client().is_none() {
        conf = conf.http_client(https_client());
    }
    aws_sdk_ecr::Client::from_conf(conf.build())
}

/// Opens ECR registries for `mirror_core::registry::open` (see the module docs).
pub type EcrFactory = ProviderFactory<EcrPlane>;

/// The factory, to pass to `mirror_core::registry::open`.
pub fn factory() -> EcrFactory {
    EcrFactory::new()
}

#[async_trait]
impl Provider for EcrPlane {
    type Key = EcrConfigKey;
    type Builder = EcrBuilder;
    const ID: &'static str = PROVIDER;
    const SCHEMES: &'static [&'static str] = &["ecr"];
    const PREFIX: EcrConfigKey = EcrConfigKey::Prefix;
    const CREDENTIALS_HINT: &'static str =
        "its data-plane credentials come from GetAuthorizationToken";

    fn recognises(host: &str) -> bool {
        naming::parse_registry_host(host).is_some()
    }

    fn locate<'a>(
        b: EcrBuilder,
        host: Option<&str>,
        path: Option<&'a str>,
    ) -> (EcrBuilder, Option<&'a str>) {
        match host {
            Some(h) => (b.registry_host(h), path),
            None => (b, path),
        }
    }

    async fn open(builder: EcrBuilder) -> mirror_core::Result<Arc<dyn Registry>> {
        Ok(Arc::new(builder.build().await?))
    }
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
        // The missing-identity error names this variable (error.rs).
        assert_eq!(EcrConfigKey::Profile.env_var(), "MIRROR_ECR_PROFILE");
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
                    mirror_core::Error::Setting { .. } | mirror_core::Error::InvalidName { .. }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn locations_and_options_reach_the_builder() {
        use mirror_core::registry::{OpenOptions, RegistryFactory};
        let f = factory();
        assert!(f.recognises("123456789012.dkr.ecr.eu-west-1.amazonaws.com"));
        assert!(!f.recognises("registry.example.com"));
        let b = f
            .builder(
                Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
                Some("team/mirror"),
                &OpenOptions::new()
                    .without_env()
                    .with("lifecycle_policy", "false"),
            )
            .unwrap();
        assert_eq!(
            b.get_config(EcrConfigKey::RegistryHost).as_deref(),
            Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::Prefix).as_deref(),
            Some("team/mirror")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::LifecyclePolicy).as_deref(),
            Some("false")
        );
        let e = f
            .builder(
                None,
                None,
                &OpenOptions::new().without_env().with("project", "x"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"project\""), "{e}");
    }
}
