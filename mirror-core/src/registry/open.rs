//! A registry from one URL-like string and options: [`open`], and the [`RegistryFactory`]
//! each provider crate exports.
//!
//! # Grammar
//!
//! | location | registry |
//! |---|---|
//! | `oci:PATH` | [`LayoutRegistry`] at `PATH` |
//! | `HOST[:PORT][/PREFIX]` | a factory that recognises `HOST` (`<account>.dkr.ecr.<region>.amazonaws.com`, `<location>-docker.pkg.dev`, `rg.<region>.scw.cloud`), else [`GenericRegistry`] |
//! | `http://HOST[:PORT][/PREFIX]`, `https://…` | [`GenericRegistry`], plain HTTP or HTTPS forced |
//! | `SCHEME://[HOST][/PREFIX]` | the factory of `SCHEME` (`ecr`, `gar`, `scaleway`); what `HOST` and `PREFIX` mean is the provider's (see its README) |
//!
//! `PREFIX` puts every repository under a path (the option `prefix` says the same; both at
//! once is an error). Options are `key=value` pairs: the generic ones below, or a provider's
//! configuration keys (its `*ConfigKey`, by key or by environment variable name). A factory
//! also reads its provider's environment variables, unless [`OpenOptions::without_env`];
//! explicit options win. An option nobody understands is an error, never ignored.
//!
//! Generic options (`GenericRegistry` and `LayoutRegistry`): `prefix`; and for HTTP
//! registries `username` and `password` (else, with [`OpenOptions::with_docker_config`], the
//! docker `config.json`; else anonymous: no credentials file is read unless asked),
//! `plain_http`, `tls_verify`, `verify_uploads` (hash uploads here too, for a registry that
//! does not check digests).
//!
//! `mirror-core` cannot depend on the provider crates, so the caller passes their factories:
//!
//! ```no_run
//! # async fn demo(factories: &[&dyn mirror_core::registry::RegistryFactory]) -> mirror_core::Result<()> {
//! use mirror_core::registry::{open, OpenOptions};
//! // With provider-aws linked: `open("ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror",
//! //     &OpenOptions::new(), &[&provider_aws::factory()])`.
//! let registry = open("127.0.0.1:5000/mirror", &OpenOptions::new(), factories).await?;
//! println!("{} at {}", registry.provider(), registry.location());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::reference::normalise_host;
use crate::registry::{GenericRegistry, LayoutRegistry, Registry};
use crate::store::http::credentials::{Credentials, DockerConfig};
use crate::store::http::RegistryClient;

/// A parsed location (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryUrl {
    /// `oci:PATH`.
    Layout {
        /// The root directory.
        path: PathBuf,
    },
    /// `[http://|https://]HOST[:PORT][/PREFIX]`.
    Host {
        /// `Some(true)` for `http://`, `Some(false)` for `https://`, `None` when not given.
        plain_http: Option<bool>,
        /// `host[:port]`.
        host: String,
        /// The path after the host.
        prefix: Option<String>,
    },
    /// `SCHEME://[HOST][/PREFIX]`.
    Provider {
        /// The scheme (`ecr`), lowercase.
        scheme: String,
        /// What follows `://` up to the first `/`, when not empty.
        host: Option<String>,
        /// The path after it.
        prefix: Option<String>,
    },
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim_matches('/');
    (!s.is_empty()).then(|| s.to_string())
}

impl RegistryUrl {
    /// Parses a location.
    pub fn parse(location: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference {
            input: location.to_string(),
            reason: reason.to_string(),
        };
        let s = location.trim();
        if s.is_empty() {
            return Err(bad("the registry location is empty"));
        }
        if let Some(path) = s.strip_prefix("oci:") {
            if path.is_empty() || path.starts_with("//") {
                return Err(bad("a layout registry is oci:PATH (a directory)"));
            }
            return Ok(RegistryUrl::Layout { path: path.into() });
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
            None => (None, s),
        };
        let (host, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, non_empty(p)),
            None => (rest, None),
        };
        if let Some(s) = &scheme {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
            {
                return Err(bad("the scheme is not a word"));
            }
        }
        match scheme.as_deref() {
            None | Some("http") | Some("https") => {
                if host.is_empty() {
                    return Err(bad("no registry host"));
                }
                let host = normalise_host(host).map_err(|reason| bad(&reason))?;
                Ok(RegistryUrl::Host {
                    plain_http: scheme.as_deref().map(|s| s == "http"),
                    host,
                    prefix,
                })
            }
            Some(other) => Ok(RegistryUrl::Provider {
                scheme: other.to_string(),
                host: non_empty(host),
                prefix,
            }),
        }
    }
}

/// Options of [`open`]: `key=value` pairs, and whether factories read the environment.
#[derive(Clone, Default)]
pub struct OpenOptions {
    options: BTreeMap<String, String>,
    without_env: bool,
    docker_config: bool,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (a password, a key): names only.
        f.debug_struct("OpenOptions")
            .field("keys", &self.options.keys().collect::<Vec<_>>())
            .field("without_env", &self.without_env)
            .field("docker_config", &self.docker_config)
            .finish()
    }
}

impl OpenOptions {
    /// No options; factories read the environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (case-insensitive) to `value`.
    pub fn with(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.options
            .insert(key.as_ref().to_ascii_lowercase(), value.into());
        self
    }

    /// Parses `key=value` and sets it.
    pub fn with_pair(self, pair: &str) -> Result<Self> {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(self.with(k.trim(), v)),
            // Not echoed: a mistyped `password…` would be printed.
            _ => Err(Error::config(
                "registry option",
                "not key=value (expected KEY=VALUE)",
            )),
        }
    }

    /// Factories read none of their provider's variables (`MIRROR_ECR_*`, `MIRROR_GAR_*`,
    /// `SCW_*`…). The cloud SDKs' own credential chains (the AWS SDK's `AWS_*` and profile
    /// files, Google's `GOOGLE_APPLICATION_CREDENTIALS` and default chain) still read theirs:
    /// pass credentials in the options to avoid them.
    pub fn without_env(mut self) -> Self {
        self.without_env = true;
        self
    }

    /// True unless [`without_env`](Self::without_env).
    pub fn reads_env(&self) -> bool {
        !self.without_env
    }

    /// Reads the docker `config.json` for a distribution registry's credentials when none
    /// are given (off by default: no credentials file is read unless asked; providers have
    /// their own credentials and ignore it).
    pub fn with_docker_config(mut self) -> Self {
        self.docker_config = true;
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .get(&key.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Every option, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.options.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The options except `keys`.
    pub fn except<'a>(&'a self, keys: &'a [&str]) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.iter().filter(move |(k, _)| !keys.contains(k))
    }

    /// The prefix: from the location's path or the `prefix` option (both at once is an
    /// error).
    pub fn prefix(&self, from_location: Option<&str>) -> Result<Option<String>> {
        match (from_location, self.get("prefix")) {
            (Some(a), Some(b)) if a != b => Err(option_error(
                "prefix",
                format!("the location names prefix {a:?} and the prefix option {b:?}; give one"),
            )),
            (Some(a), _) => Ok(Some(a.to_string())),
            (None, b) => Ok(b.map(str::to_string)),
        }
    }
}

/// Options from `key=value` pairs, as a deployer reads them from its configuration
/// (`[("username", "ci"), ("password", "…")]`).
impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for OpenOptions {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        iter.into_iter()
            .fold(OpenOptions::new(), |o, (k, v)| o.with(k.as_ref(), v))
    }
}

/// What a provider crate exports so that [`open`] can make its registry.
///
/// # Contract
///
/// - `schemes` are the URL schemes it answers (`ecr`), lowercase; `recognises` is true for
///   the data-plane hosts that can only be its own (`*.dkr.ecr.*.amazonaws.com`).
/// - `open` validates every option before any network call and fails with
///   [`Error::Config`] naming an option it does not understand.
#[async_trait]
pub trait RegistryFactory: Send + Sync + fmt::Debug {
    /// The provider name (`aws`).
    fn provider(&self) -> &'static str;

    /// The schemes it answers.
    fn schemes(&self) -> &'static [&'static str];

    /// True for a host only this provider serves.
    fn recognises(&self, host: &str) -> bool;

    /// The registry for `host` (what the location names, when it names one) and `prefix`,
    /// with `options`.
    async fn open(
        &self,
        host: Option<&str>,
        prefix: Option<&str>,
        options: &OpenOptions,
    ) -> Result<Arc<dyn Registry>>;
}

const LAYOUT_OPTIONS: &[&str] = &["prefix"];
const GENERIC_OPTIONS: &[&str] = &[
    "prefix",
    "username",
    "password",
    "plain_http",
    "tls_verify",
    "verify_uploads",
];

/// A registry option that cannot be used: which key and why (the key's value is never shown:
/// it may be a password).
fn option_error(key: &str, reason: String) -> Error {
    Error::Setting {
        provider: "registry".to_string(),
        key: crate::error::shown(key),
        reason,
    }
}

fn refuse_unknown(options: &OpenOptions, known: &[&str], what: &str) -> Result<()> {
    match options.except(known).next() {
        Some((k, _)) => Err(option_error(
            k,
            format!("does not apply to {what} (options: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Opens the registry `location` names (see the module docs for the grammar), with
/// `options`, asking `factories` for provider registries.
pub async fn open(
    location: &str,
    options: &OpenOptions,
    factories: &[&dyn RegistryFactory],
) -> Result<Arc<dyn Registry>> {
    match RegistryUrl::parse(location)? {
        RegistryUrl::Layout { path } => {
            refuse_unknown(options, LAYOUT_OPTIONS, "an oci: layout registry")?;
            let mut registry = LayoutRegistry::new(path);
            if let Some(p) = options.prefix(None)? {
                registry = registry.with_prefix(&p)?;
            }
            Ok(Arc::new(registry))
        }
        RegistryUrl::Provider {
            scheme,
            host,
            prefix,
        } => {
            let factory = factories
                .iter()
                .find(|f| f.schemes().contains(&scheme.as_str()))
                .ok_or_else(|| {
                    let known: Vec<String> = factories
                        .iter()
                        .flat_map(|f| f.schemes().iter().map(|s| format!("{s}://")))
                        .collect();
                    Error::config(
                        "registry location",
                        format!(
                        "no registry provider for {scheme}:// (known here: oci:, host[:port], {}); \
                         link the provider crate and pass its factory to open()",
                        if known.is_empty() { "no provider".to_string() } else { known.join(", ") }
                    ),
                    )
                })?;
            factory
                .open(host.as_deref(), prefix.as_deref(), options)
                .await
        }
        RegistryUrl::Host {
            plain_http,
            host,
            prefix,
        } => {
            if plain_http.is_none() {
                if let Some(f) = factories.iter().find(|f| f.recognises(&host)) {
                    return f.open(Some(&host), prefix.as_deref(), options).await;
                }
                // `ecr`, `gar`, `scaleway` alone read as a host name; say what is meant.
                if let Some(f) = factories
                    .iter()
                    .find(|f| f.schemes().contains(&host.as_str()))
                {
                    return Err(Error::config(
                        "registry location",
                        format!(
                            "registry {host:?} reads as a host name; for the {} provider write \
                         {host}:// (with its host or region after it, see its README)",
                            f.provider()
                        ),
                    ));
                }
            }
            refuse_unknown(options, GENERIC_OPTIONS, "a distribution registry")?;
            let docker_config = options.docker_config;
            let credentials = match (options.get("username"), options.get("password")) {
                (Some(u), Some(p)) => Credentials::basic(u, p),
                // The docker config only when asked: a multi-tenant deployer must not pick up
                // whatever credentials the host has.
                (None, None) if docker_config => {
                    let h = host.clone();
                    tokio::task::spawn_blocking(move || {
                        DockerConfig::load_default()?.credentials_for(&h)
                    })
                    .await
                    .map_err(|e| Error::internal("reading the docker config", e))??
                }
                (None, None) => Credentials::Anonymous,
                _ => {
                    return Err(option_error(
                        "username",
                        "username and password go together".into(),
                    ))
                }
            };
            let mut b = RegistryClient::builder(&host).credentials(credentials);
            let option = options
                .get("plain_http")
                .map(|v| parse_bool("plain_http", v).map_err(|r| option_error("plain_http", r)))
                .transpose()?;
            match (plain_http, option) {
                (Some(a), Some(b)) if a != b => {
                    return Err(option_error(
                        "plain_http",
                        format!(
                            "the location says {} and the option plain_http={b}; give one",
                            if a { "http://" } else { "https://" }
                        ),
                    ))
                }
                (Some(p), _) | (None, Some(p)) => b = b.plain_http(p),
                (None, None) => {}
            }
            if let Some(v) = options.get("tls_verify") {
                b = b.tls_verify(
                    parse_bool("tls_verify", v).map_err(|r| option_error("tls_verify", r))?,
                );
            }
            if let Some(v) = options.get("verify_uploads") {
                b = b.verify_uploads(
                    parse_bool("verify_uploads", v)
                        .map_err(|r| option_error("verify_uploads", r))?,
                );
            }
            let mut registry = GenericRegistry::new(b.build()?);
            if let Some(p) = options.prefix(prefix.as_deref())? {
                registry = registry.with_prefix(&p)?;
            }
            Ok(Arc::new(registry))
        }
    }
}

/// Reads a boolean: `1 true yes on` / `0 false no off`, in any case.
pub fn parse_bool(key: &str, v: &str) -> std::result::Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{key}: {v:?} is not a boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_by_the_grammar() {
        assert_eq!(
            RegistryUrl::parse("oci:/var/mirror").unwrap(),
            RegistryUrl::Layout {
                path: "/var/mirror".into()
            }
        );
        assert_eq!(
            RegistryUrl::parse("127.0.0.1:5000/team/mirror").unwrap(),
            RegistryUrl::Host {
                plain_http: None,
                host: "127.0.0.1:5000".into(),
                prefix: Some("team/mirror".into())
            }
        );
        assert_eq!(
            RegistryUrl::parse("https://registry.example.com").unwrap(),
            RegistryUrl::Host {
                plain_http: Some(false),
                host: "registry.example.com".into(),
                prefix: None
            }
        );
        assert_eq!(
            RegistryUrl::parse("ECR://123456789012.dkr.ecr.eu-west-1.amazonaws.com/m").unwrap(),
            RegistryUrl::Provider {
                scheme: "ecr".into(),
                host: Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com".into()),
                prefix: Some("m".into())
            }
        );
        assert_eq!(
            RegistryUrl::parse("scaleway://").unwrap(),
            RegistryUrl::Provider {
                scheme: "scaleway".into(),
                host: None,
                prefix: None
            }
        );
        for bad in ["", "oci:", "http://", "bad host/x", "://x", "a b://x"] {
            assert!(RegistryUrl::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// Opens a layout in a fixed directory and records what it was asked.
    #[derive(Debug, Default)]
    struct Fake {
        asked: std::sync::Mutex<Vec<(Option<String>, Option<String>)>>,
    }

    #[async_trait]
    impl RegistryFactory for Fake {
        fn provider(&self) -> &'static str {
            "fake"
        }
        fn schemes(&self) -> &'static [&'static str] {
            &["fake"]
        }
        fn recognises(&self, host: &str) -> bool {
            host.ends_with(".fake.test")
        }
        async fn open(
            &self,
            host: Option<&str>,
            prefix: Option<&str>,
            _options: &OpenOptions,
        ) -> Result<Arc<dyn Registry>> {
            if let Ok(mut a) = self.asked.lock() {
                a.push((host.map(str::to_string), prefix.map(str::to_string)));
            }
            Ok(Arc::new(LayoutRegistry::new("/nonexistent")))
        }
    }

    #[tokio::test]
    async fn locations_reach_the_factory_of_their_scheme_or_host() {
        let fake = Fake::default();
        let factories: [&dyn RegistryFactory; 1] = [&fake];
        let o = OpenOptions::new();
        assert_eq!(
            open("fake://", &o, &factories).await.unwrap().provider(),
            "layout"
        );
        open("fake://h:1/p", &o, &factories).await.unwrap();
        open("r.fake.test/team", &o, &factories).await.unwrap();
        // A scheme forces a distribution registry even for a host a provider serves.
        let r = open("https://r.fake.test", &o, &factories).await.unwrap();
        assert_eq!(r.provider(), "generic");
        assert_eq!(r.location(), "r.fake.test");
        assert_eq!(
            *fake.asked.lock().unwrap(),
            vec![
                (None, None),
                (Some("h:1".to_string()), Some("p".to_string())),
                (Some("r.fake.test".to_string()), Some("team".to_string())),
            ]
        );
        let e = open("other://x", &o, &factories).await.unwrap_err();
        assert!(
            e.to_string().contains("fake://"),
            "names the known schemes: {e}"
        );
    }

    #[tokio::test]
    async fn core_registries_open_and_unknown_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let loc = format!("oci:{}", dir.path().display());
        let r = open(&loc, &OpenOptions::new().with("prefix", "team-b"), &[])
            .await
            .unwrap();
        assert_eq!(r.provider(), "layout");
        let repo = r
            .repository(&crate::RepositoryScope::Cluster {
                cluster: "c".into(),
            })
            .unwrap();
        assert_eq!(
            repo.name(),
            "team-b/c/mirror",
            "the prefix applies to layouts"
        );
        let e = open(&loc, &OpenOptions::new().with("region", "x"), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Setting { key, .. } if key == "region"),
            "{e:?}"
        );
        assert!(e.to_string().contains("region: does not apply"), "{e}");

        let r = open(
            "127.0.0.1:5000/m",
            &OpenOptions::new()
                .with("username", "u")
                .with("password", "p"),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(r.provider(), "generic");
        assert_eq!(r.location(), "127.0.0.1:5000");
        let e = open("ecr://x", &OpenOptions::new(), &[]).await.unwrap_err();
        assert!(
            e.to_string().contains("no registry provider for ecr://"),
            "{e}"
        );
        let e = open(
            "127.0.0.1:5000/a",
            &OpenOptions::new().with("prefix", "b"),
            &[],
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, Error::Setting { key, .. } if key == "prefix"),
            "{e:?}"
        );
        assert_eq!(e.kind(), crate::ErrorKind::Input);
        let e = open(
            "127.0.0.1:5000/a",
            &OpenOptions::new().with("passwrod", "s3cret"),
            &[],
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, Error::Setting { key, .. } if key == "passwrod"),
            "{e:?}"
        );
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(!format!("{:?}", OpenOptions::new().with("password", "s3cret")).contains("s3cret"));
    }
}
