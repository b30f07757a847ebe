//! [`ScalewayBuilder`]: a [`Scaleway`] registry configured from code, string keys
//! ([`ScalewayConfigKey`], each documented with its variable and default) or the environment
//! (the Scaleway SDKs' `SCW_*` variables for credentials, project, region and API URL,
//! `MIRROR_SCW_*` for the rest; the access key and the CLI's configuration file are not
//! read); [`ScalewayFactory`] for `mirror_core::registry::open`: `scaleway://<region>`,
//! `scaleway://rg.<region>.scw.cloud`, `scaleway://` (region from the options or the
//! environment) or `scaleway://HOST[:PORT]` (a data-plane override), each with an optional
//! `/<prefix>`; options are the keys. [`ScalewayBuilder::build`] validates everything, makes no
//! network call, and names the key of every error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mirror_core::kit::provider::cloud::CloudRegistry;
use mirror_core::kit::provider::config::{setting_error, Shown, Value};

use mirror_core::kit::provider::{
    CommonKey, HeaderAuth, Origin, Provider, ProviderFactory, RestClient,
};
use mirror_core::kit::store::http::credentials::{static_provider, Credentials, Secret};
use mirror_core::kit::store::http::UploadMode;
use mirror_core::Registry;

use crate::client::{ScalewayApi, DEFAULT_API_URL, MAX_PAGE_SIZE};
use crate::{naming, Scaleway, ScalewayPlane, DATA_PLANE_USER, PROVIDER};

/// The regions Scaleway Container Registry is known to run in.
pub const KNOWN_REGIONS: [&str; 3] = ["fr-par", "nl-ams", "pl-waw"];

/// A region: `<letters>-<letters>` (one Scaleway is not known to run in is warned about).
fn region(v: &str) -> Result<String, String> {
    let word = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase());
    if !v
        .split_once('-')
        .is_some_and(|(a, b)| v.len() >= 5 && word(a) && word(b))
    {
        return Err(format!(
            "not a Scaleway region ({})",
            KNOWN_REGIONS.join(", ")
        ));
    }
    if !KNOWN_REGIONS.contains(&v) {
        tracing::warn!(
            region = v,
            "not a region Scaleway Container Registry is known to run in"
        );
    }
    Ok(v.to_string())
}

mirror_core::config_keys! {
    /// The string configuration keys of [`ScalewayBuilder::with_config`], each parsed from
    /// its name or its variable in any case; *shared* keys mean the same for every provider.
    pub enum ScalewayConfigKey: "Scaleway", "MIRROR_SCW_" {
        /// `SCW_SECRET_KEY`: secret key of an API key (the `X-Auth-Token`; the data-plane password of `nologin`).
        SecretKey = "secret_key" env "SCW_SECRET_KEY" => Value::Secret,
            required "the secret key of an API key with Container Registry permissions";
        /// `SCW_DEFAULT_PROJECT_ID`: the project of the namespaces (and their names' discriminator).
        ProjectId = "project_id" env "SCW_DEFAULT_PROJECT_ID" => Value::Checked(mirror_core::kit::provider::naming::uuid),
            required "the project the namespaces are created in";
        /// `SCW_DEFAULT_REGION`: `fr-par` (default), `nl-ams`, `pl-waw`.
        Region = "region" env "SCW_DEFAULT_REGION" => Value::Checked(region), default "fr-par";
        /// `SCW_API_URL`: *shared* `endpoint`, the API URL (default `https://api.scaleway.com`).
        ApiUrl = "api_url" env "SCW_API_URL" => Value::Common(CommonKey::Endpoint), default DEFAULT_API_URL;
        /// `MIRROR_SCW_REGISTRY_HOST`: data-plane `host[:port]` (default `rg.<region>.scw.cloud`).
        RegistryHost = "registry_host" => Value::Text;
        /// `MIRROR_SCW_PLAIN_HTTP`: *shared*, plain HTTP to the data plane (default: loopback only).
        PlainHttp = "plain_http" => Value::Common(CommonKey::PlainHttp);
        /// `MIRROR_SCW_REQUEST_TIMEOUT`: *shared* (default 30 s on the API, 60 s on the data plane).
        RequestTimeout = "request_timeout" => Value::Common(CommonKey::RequestTimeout);
        /// `MIRROR_SCW_CONNECT_TIMEOUT`: *shared* (default 10 s on the API, 15 s on the data plane).
        ConnectTimeout = "connect_timeout" => Value::Common(CommonKey::ConnectTimeout);
        /// `MIRROR_SCW_MAX_ATTEMPTS`: *shared*, attempts per retried request (default 5).
        MaxAttempts = "max_attempts" => Value::Common(CommonKey::MaxAttempts);
        /// `MIRROR_SCW_PREFIX`: namespace prefix (default `mirror`; 1–16 of `[a-z0-9-]`, a letter first).
        Prefix = "prefix" => Value::Text, default naming::DEFAULT_PREFIX;
        /// `MIRROR_SCW_PUBLIC`: public namespaces, anyone may pull (default `false`).
        Public = "public" => Value::Flag, default "false";
        /// `MIRROR_SCW_NAMESPACE_TIMEOUT`: how long a new namespace may take to be ready (default `60s`).
        NamespaceTimeout = "namespace_timeout" => Value::Duration(Shown::Seconds), default "60s";
    }
}

/// What only code sets: the first pause between readiness checks, the page size.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    poll_interval: Option<Duration>,
    page_size: Option<u32>,
}

mirror_core::provider_builder! {
    /// Configures and builds a [`Scaleway`] registry (see the module docs).
    pub struct ScalewayBuilder(ScalewayConfigKey, Extra) {
        /// The secret key of an API key (a UUID). Sent only as the `X-Auth-Token` header and
        /// as the data-plane password; never shown by `Debug`.
        fn secret_key => SecretKey;
        /// The project the namespaces live in (a UUID).
        fn project_id => ProjectId;
        /// The region (`fr-par`, `nl-ams`, `pl-waw`).
        fn region => Region;
        /// The control-plane API URL (`https://api.scaleway.com`, or an emulator).
        fn api_url => ApiUrl;
        /// The data-plane host (`host[:port]`) instead of `rg.<region>.scw.cloud`.
        fn registry_host => RegistryHost;
        /// The namespace name prefix (default `mirror`).
        fn prefix => Prefix;
        /// Namespaces anyone may pull from without credentials (default `false`); applied to
        /// existing namespaces too when they differ.
        fn public => Public;
        /// How long `ensure_repository` waits for a new namespace to become ready.
        fn namespace_timeout => NamespaceTimeout;
    }
}

impl ScalewayBuilder {
    /// The first pause between two readiness checks of a namespace (doubling up to 2 s;
    /// default 250 ms).
    pub fn namespace_poll_interval(mut self, interval: Duration) -> Self {
        self.extra.poll_interval = Some(interval);
        self
    }

    /// Items asked per page of the list calls (1 to 100, default 100).
    pub fn page_size(mut self, size: u32) -> Self {
        self.extra.page_size = Some(size);
        self
    }

    /// Validates the settings and builds the registry. Makes no network call.
    pub fn build(self) -> mirror_core::Result<Scaleway> {
        use ScalewayConfigKey as K;
        let s = &self.settings;
        s.validate()?;
        let text = |k| s.text_or_default(k).unwrap_or_default().to_string();
        let (secret, project, region, prefix) = (
            Secret::new(text(K::SecretKey)),
            text(K::ProjectId),
            text(K::Region),
            text(K::Prefix),
        );
        let page_size = self.extra.page_size.unwrap_or(MAX_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            let reason = format!("{page_size}: 1 to {MAX_PAGE_SIZE}");
            return Err(setting_error(K::NAME, "page_size", reason));
        }
        naming::check_prefix(&prefix)?;
        let host = s
            .host(K::RegistryHost)?
            .unwrap_or_else(|| naming::registry_host(&region));
        // The control plane: the secret key is its only credential (no token cache).
        let common = s.common();
        let auth = Arc::new(HeaderAuth::new("X-Auth-Token", secret.clone()));
        let base = common.endpoint.as_deref().unwrap_or(DEFAULT_API_URL);
        let agent = concat!("mirror-core-provider-scaleway/", env!("CARGO_PKG_VERSION"));
        let origin = Origin::new(PROVIDER, &host);
        let rest = RestClient::new(base, "api_url", origin, auth, crate::error::DIALECT, agent)?;
        let rest = rest.with_settings(common, Duration::from_secs(30), Duration::from_secs(10))?;
        // The data plane: user `nologin`, the secret key as password.
        let credentials = static_provider(Credentials::basic(DATA_PLANE_USER, secret));
        let data = common.data_plane(&host, credentials, UploadMode::Auto)?;
        let poll_interval = self
            .extra
            .poll_interval
            .unwrap_or(Duration::from_millis(250));
        Ok(CloudRegistry::new(ScalewayPlane {
            api: ScalewayApi::new(rest, &region, &project, page_size),
            data,
            region,
            project_id: project,
            prefix,
            public: s.flag(K::Public),
            namespace_timeout: s.duration(K::NamespaceTimeout).unwrap_or_default(),
            poll_interval,
            namespaces: Default::default(),
        }))
    }
}

/// Opens Scaleway registries for `mirror_core::registry::open` (see the module docs).
pub type ScalewayFactory = ProviderFactory<ScalewayPlane>;

/// The factory, to pass to `mirror_core::registry::open`.
pub fn factory() -> ScalewayFactory {
    ScalewayFactory::new()
}

#[async_trait]
impl Provider for ScalewayPlane {
    type Key = ScalewayConfigKey;
    type Builder = ScalewayBuilder;
    const ID: &'static str = PROVIDER;
    const SCHEMES: &'static [&'static str] = &["scaleway", "scw"];
    const PREFIX: ScalewayConfigKey = ScalewayConfigKey::Prefix;
    const CREDENTIALS_HINT: &'static str =
        "the data plane takes user nologin with the secret key; set SCW_SECRET_KEY";

    fn recognises(host: &str) -> bool {
        naming::region_of_host(host).is_some()
    }

    /// A word without dot or port is a region (new regions need no new release); a
    /// `rg.<region>.scw.cloud` host names its region; any other host overrides the data plane.
    fn locate<'a>(
        mut b: ScalewayBuilder,
        host: Option<&str>,
        path: Option<&'a str>,
    ) -> (ScalewayBuilder, Option<&'a str>) {
        match host {
            None => {}
            Some(h) if !h.contains('.') && !h.contains(':') => b = b.region(h),
            Some(h) => {
                let region = naming::region_of_host(h);
                if let Some(r) = region {
                    b = b.region(r);
                }
                if naming::registry_host(region.unwrap_or("")) != h {
                    b = b.registry_host(h);
                }
            }
        }
        (b, path)
    }

    async fn open(builder: ScalewayBuilder) -> mirror_core::Result<Arc<dyn Registry>> {
        Ok(Arc::new(builder.build()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_core::kit::provider::parse_duration;
    use mirror_core::registry::OpenOptions;

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
                    mirror_core::Error::Setting { .. } | mirror_core::Error::InvalidName { .. }
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

    #[test]
    fn locations_and_options_reach_the_builder() {
        use mirror_core::registry::RegistryFactory;
        let f = factory();
        assert!(f.recognises("rg.nl-ams.scw.cloud"));
        assert!(!f.recognises("registry.example.com"));
        let o = OpenOptions::new().without_env().with("public", "true");
        let b = f
            .builder(Some("rg.nl-ams.scw.cloud"), Some("team"), &o)
            .unwrap();
        assert_eq!(
            b.get_config(ScalewayConfigKey::Region).as_deref(),
            Some("nl-ams")
        );
        assert_eq!(b.get_config(ScalewayConfigKey::RegistryHost), None);
        assert_eq!(
            b.get_config(ScalewayConfigKey::Prefix).as_deref(),
            Some("team")
        );
        assert_eq!(
            b.get_config(ScalewayConfigKey::Public).as_deref(),
            Some("true")
        );
        let b = f.builder(Some("pl-waw"), None, &o).unwrap();
        assert_eq!(
            b.get_config(ScalewayConfigKey::Region).as_deref(),
            Some("pl-waw")
        );
        let b = f.builder(Some("127.0.0.1:5000"), None, &o).unwrap();
        assert_eq!(
            b.get_config(ScalewayConfigKey::RegistryHost).as_deref(),
            Some("127.0.0.1:5000")
        );
        let e = f
            .builder(
                None,
                None,
                &OpenOptions::new().without_env().with("account", "1"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"account\""), "{e}");
    }
}
