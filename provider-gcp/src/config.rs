//! [`ArtifactRegistryBuilder`]: an [`ArtifactRegistry`] configured from code, string keys
//! ([`GarConfigKey`], each with its `MIRROR_GAR_*` variable) or the environment; [`GarFactory`]
//! for `mirror_core::registry::open`: `gar://<location>-docker.pkg.dev/<project>[/<prefix>]`
//! (also without `gar://`), `gar://[/<project>[/<prefix>]]` (location and project from the
//! options or the credentials), or `gar://HOST[:PORT]/<project>[/<prefix>]` (a data-plane
//! override).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use mirror_core::kit::provider::cloud::CloudRegistry;
use mirror_core::kit::provider::config::{Shown, Value};
use mirror_core::kit::provider::{
    BearerAuth, CommonKey, Kind, Origin, Provider, ProviderFactory, RestClient,
};
use mirror_core::kit::store::http::UploadMode;
use mirror_core::Registry;

use crate::client::{ArApi, DEFAULT_ENDPOINT, DEFAULT_OPERATION_TIMEOUT};
use crate::credential::{self, DefaultChain, GcpTokenSource, ServiceAccountKey};
use crate::error::DIALECT;
use crate::{naming, ArtifactRegistry, GarPlane, PROVIDER};

mirror_core::config_keys! {
    /// The string configuration keys of [`ArtifactRegistryBuilder::with_config`], each parsed
    /// from its name or its variable in any case; *shared* keys mean the same for every
    /// provider.
    pub enum GarConfigKey: "Artifact Registry", "MIRROR_GAR_" {
        /// `MIRROR_GAR_PROJECT`: the project (`my-project`, `example.com:p`; default: the credentials').
        Project = "project" => Value::Text;
        /// `MIRROR_GAR_LOCATION`: `europe-west1`, `us`… (default: the docker host's; else required).
        Location = "location" => Value::Text;
        /// `MIRROR_GAR_PREFIX`: start of every repository id (letters, digits, `-`; ≤ 20; default `mirror`).
        Prefix = "prefix" => Value::Text, default naming::DEFAULT_PREFIX;
        /// `MIRROR_GAR_ENDPOINT`: *shared*, the REST endpoint (Private Service Connect, a fake).
        Endpoint = "endpoint" => Value::Common(CommonKey::Endpoint), default DEFAULT_ENDPOINT;
        /// `MIRROR_GAR_DOCKER_HOST`: data-plane `host[:port]` (default `<location>-docker.pkg.dev`).
        DockerHost = "docker_host" => Value::Text;
        /// `MIRROR_GAR_PLAIN_HTTP`: *shared*, plain HTTP to the data plane (default: loopback only).
        PlainHttp = "plain_http" => Value::Common(CommonKey::PlainHttp);
        /// `MIRROR_GAR_REQUEST_TIMEOUT`: *shared*, one request without a streaming body (60 s).
        RequestTimeout = "request_timeout" => Value::Common(CommonKey::RequestTimeout);
        /// `MIRROR_GAR_CONNECT_TIMEOUT`: *shared*, TCP connect timeout (15 s).
        ConnectTimeout = "connect_timeout" => Value::Common(CommonKey::ConnectTimeout);
        /// `MIRROR_GAR_MAX_ATTEMPTS`: *shared*, attempts per retried request (5).
        MaxAttempts = "max_attempts" => Value::Common(CommonKey::MaxAttempts);
        /// `MIRROR_GAR_CREDENTIALS_FILE`: a service-account key file (JSON).
        CredentialsFile = "credentials_file" => Value::Text;
        /// `MIRROR_GAR_TOKEN_URI`: the OAuth token endpoint used with the key file.
        TokenUri = "token_uri" => Value::Text;
        /// `MIRROR_GAR_CLEANUP_POLICIES`: retention and keep counts by cleanup policies (default `true`).
        CleanupPolicies = "cleanup_policies" => Value::Flag, default "true";
        /// `MIRROR_GAR_CLEANUP_DRY_RUN`: the policies only report (`cleanupPolicyDryRun`; `false`).
        CleanupDryRun = "cleanup_dry_run" => Value::Flag, default "false";
        /// `MIRROR_GAR_OPERATION_TIMEOUT`: how long a long-running operation is waited for (`2m`).
        OperationTimeout = "operation_timeout" => Value::Duration(Shown::Human), default "2m";
    }
}

mirror_core::provider_builder! {
    /// Configures and builds an [`ArtifactRegistry`] (see the module docs).
    pub struct ArtifactRegistryBuilder(GarConfigKey, Option<Arc<dyn GcpTokenSource>>) {
        /// The project id (`my-project`; `example.com:my-project` for domain-scoped projects).
        fn project => Project;
        /// The location (`europe-west1`, `us`).
        fn location => Location;
        /// Starts every repository id with `prefix` (default `mirror`).
        fn repository_prefix => Prefix;
        /// The REST endpoint URL.
        fn endpoint => Endpoint;
        /// The data-plane host (`host[:port]`); a `<location>-docker.pkg.dev` host also sets
        /// the location when it is not set.
        fn docker_host => DockerHost;
        /// A service-account key file.
        fn credentials_file => CredentialsFile;
        /// The OAuth token endpoint used with the key file.
        fn token_uri => TokenUri;
        /// Retention (Cluster mode) and keep counts (Service mode) by cleanup policies
        /// (default true); with `false`, retention is left to `Mirror::sweep`.
        fn cleanup_policies => CleanupPolicies;
        /// Repositories with `cleanupPolicyDryRun` (policies only report).
        fn cleanup_dry_run => CleanupDryRun;
        /// How long long-running operations are waited for (default 2 minutes).
        fn operation_timeout => OperationTimeout;
    }
}

impl ArtifactRegistryBuilder {
    /// Access tokens from this source instead of a key file or the default chain.
    pub fn token_source(mut self, source: Arc<dyn GcpTokenSource>) -> Self {
        self.extra = Some(source);
        self
    }

    /// Validates the settings, finds the credentials and builds the registry. Makes no API
    /// call and requests no token (the default chain may probe the metadata server).
    pub async fn build(self) -> mirror_core::Result<ArtifactRegistry> {
        use GarConfigKey as K;
        let s = &self.settings;
        s.validate()?;
        let docker_host = s.host(K::DockerHost)?;
        let token_uri = s.text(K::TokenUri);
        if let Some(u) = token_uri {
            if !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                return Err(s.error(K::TokenUri, format!("{u:?}: expected an http(s) URL")));
            }
        }
        let prefix = s.text_or_default(K::Prefix).unwrap_or_default().to_string();
        naming::check_prefix(&prefix)?;
        let unset = |k: K, why: String| s.error(k, format!("not set: set {} ({why})", k.env_var()));
        let location = match (s.text(K::Location), docker_host.as_deref()) {
            (Some(l), _) => l.to_string(),
            (None, Some(h)) => naming::location_of_host(h)
                .ok_or_else(|| unset(K::Location, format!("the docker host {h} names none")))?,
            (None, None) => s
                .require(K::Location, "for example europe-west1 or us")?
                .to_string(),
        };
        naming::validate_location(&location)?;
        let host = docker_host.unwrap_or_else(|| naming::docker_host(&location));
        let origin = Origin::new(PROVIDER, &host);

        // The token source: given in code, a key file, GOOGLE_APPLICATION_CREDENTIALS naming
        // a key file, else the default chain.
        let key = |path: &Path| -> mirror_core::Result<Arc<dyn GcpTokenSource>> {
            let key = ServiceAccountKey::from_file(path)?;
            Ok(Arc::new(match token_uri {
                Some(uri) => key.with_token_uri(uri)?,
                None => key,
            }))
        };
        let application = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from);
        let source = match (&self.extra, s.text(K::CredentialsFile)) {
            (Some(source), _) => source.clone(),
            (None, Some(path)) => key(Path::new(path))?,
            (None, None) => match application.filter(|p| is_service_account_key(p)) {
                Some(path) => key(&path)?,
                None => Arc::new(DefaultChain::discover().await.map_err(|mut e| {
                    if e.kind() == Kind::Credentials {
                        e.registry = origin.registry.clone();
                    }
                    e
                })?),
            },
        };
        let project = match s.text(K::Project) {
            Some(p) => p.to_string(),
            None => source
                .project_id()
                .await
                .ok_or_else(|| unset(K::Project, "the credentials name none".into()))?,
        };
        naming::validate_project(&project)?;
        let credentials = Arc::new(credential::credentials(origin.registry.clone(), source));

        // The control plane, and the data plane with one streaming PUT per blob.
        let common = s.common();
        let base = common.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        let agent = concat!("mirror-core-provider-gcp/", env!("CARGO_PKG_VERSION"));
        let auth = Arc::new(BearerAuth(credentials.clone()));
        let rest = RestClient::new(base, K::Endpoint.as_str(), origin, auth, DIALECT, agent)?;
        let rest =
            rest.with_settings(common, common.request_timeout(), common.connect_timeout())?;
        let timeout = s
            .duration(K::OperationTimeout)
            .unwrap_or(DEFAULT_OPERATION_TIMEOUT);
        let data = common.data_plane(&host, credentials.clone(), UploadMode::Monolithic)?;
        Ok(CloudRegistry::new(GarPlane {
            api: ArApi::new(rest, &project, &location, timeout),
            data,
            project,
            location,
            prefix,
            cleanup_policies: s.flag(K::CleanupPolicies),
            cleanup_dry_run: s.flag(K::CleanupDryRun),
            credentials,
        }))
    }
}

/// True when `path` is a JSON file of `"type": "service_account"`.
fn is_service_account_key(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["type"] == "service_account"
}

/// Opens Artifact Registry registries for `mirror_core::registry::open` (see the module
/// docs).
pub type GarFactory = ProviderFactory<GarPlane>;

/// The factory, to pass to `mirror_core::registry::open`.
pub fn factory() -> GarFactory {
    GarFactory::new()
}

#[async_trait]
impl Provider for GarPlane {
    type Key = GarConfigKey;
    type Builder = ArtifactRegistryBuilder;
    const ID: &'static str = PROVIDER;
    const SCHEMES: &'static [&'static str] = &["gar"];
    const PREFIX: GarConfigKey = GarConfigKey::Prefix;
    const CREDENTIALS_HINT: &'static str = "the data plane takes user oauth2accesstoken with an OAuth access token (set credentials_file, GOOGLE_APPLICATION_CREDENTIALS or the default chain)";

    fn recognises(host: &str) -> bool {
        naming::location_of_host(host).is_some()
    }

    /// The location's path is `<project>[/<prefix>]`.
    fn locate<'a>(
        mut b: ArtifactRegistryBuilder,
        host: Option<&str>,
        path: Option<&'a str>,
    ) -> (ArtifactRegistryBuilder, Option<&'a str>) {
        if let Some(h) = host {
            b = b.docker_host(h);
        }
        let Some(path) = path else { return (b, None) };
        let (project, prefix) = path
            .split_once('/')
            .map_or((path, None), |(p, r)| (p, Some(r)));
        (b.project(project), prefix)
    }

    async fn open(builder: ArtifactRegistryBuilder) -> mirror_core::Result<Arc<dyn Registry>> {
        Ok(Arc::new(builder.build().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{AccessToken, StaticToken};
    use std::time::Duration;

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
                    mirror_core::Error::Setting { .. } | mirror_core::Error::InvalidName { .. }
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

    #[test]
    fn locations_and_options_reach_the_builder() {
        use mirror_core::registry::{OpenOptions, RegistryFactory};
        let f = factory();
        assert!(f.recognises("europe-west1-docker.pkg.dev"));
        assert!(!f.recognises("registry.example.com"));
        let b = f
            .builder(
                Some("europe-west1-docker.pkg.dev"),
                Some("my-project/team"),
                &OpenOptions::new()
                    .without_env()
                    .with("cleanup_policies", "off"),
            )
            .unwrap();
        assert_eq!(
            b.get_config(GarConfigKey::Project).as_deref(),
            Some("my-project")
        );
        assert_eq!(b.get_config(GarConfigKey::Prefix).as_deref(), Some("team"));
        assert_eq!(
            b.get_config(GarConfigKey::DockerHost).as_deref(),
            Some("europe-west1-docker.pkg.dev")
        );
        assert_eq!(
            b.get_config(GarConfigKey::CleanupPolicies).as_deref(),
            Some("false")
        );
        let e = f
            .builder(
                None,
                None,
                &OpenOptions::new().without_env().with("region", "x"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"region\""), "{e}");
    }
}
