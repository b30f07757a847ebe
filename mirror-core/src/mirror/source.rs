//! What `Mirror::mirror` copies from: [`Source`], and [`Sources`], which opens them.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::store::http::credentials::{CredentialProvider, Credentials, DockerConfig};
use crate::store::http::RegistryClient;
use crate::store::layout::{parse_oci_location, LayoutStore};
use crate::store::ImageStore;
use crate::strategy::SourceId;

/// An image to mirror: a registry reference or an OCI layout (`oci:PATH[:tag]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An image in a registry.
    Registry(Reference),
    /// An image in an OCI layout directory.
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// The tag (default `latest`).
        tag: String,
    },
}

impl Source {
    /// Parses `oci:PATH[:tag]` or an image reference (normalised as Docker does).
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("oci:") {
            let (path, tag) = parse_oci_location(s)?;
            return Ok(Source::Layout {
                path,
                tag: tag.unwrap_or_else(|| "latest".into()),
            });
        }
        let r = Reference::parse(s)?;
        // A registry host named `oci` would print as an `oci:` layout location.
        if r.registry() == "oci" || r.registry().starts_with("oci:") {
            return Err(Error::InvalidReference {
                input: s.to_string(),
                reason: "a registry host named \"oci\" reads as an OCI layout location; \
                         write layouts as oci:PATH (lowercase)"
                    .into(),
            });
        }
        Ok(Source::Registry(r))
    }

    /// The identity strategies name targets by. A layout is identified by its canonical
    /// full path (symbolic links resolved; made absolute and normalised when it does not
    /// exist), so two layouts of the same directory name are two sources.
    pub fn id(&self) -> SourceId {
        match self {
            Source::Registry(r) => SourceId {
                registry: r.registry().to_string(),
                repository: r.repository().to_string(),
                tag: r.tag().map(str::to_string),
                digest: r.digest().cloned(),
            },
            Source::Layout { path, tag } => SourceId {
                registry: "oci".into(),
                repository: canonical_path(path).to_string_lossy().into_owned(),
                tag: Some(tag.clone()),
                digest: None,
            },
        }
    }

    /// [`Source::id`] where a layout's path is resolved on a blocking thread (it reads the
    /// file system).
    pub async fn id_async(&self) -> Result<SourceId> {
        match self {
            Source::Registry(_) => Ok(self.id()),
            Source::Layout { .. } => {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.id())
                    .await
                    .map_err(|e| Error::internal("resolving a layout path", e))
            }
        }
    }

    /// What to ask the source store for (digest when pinned, else tag).
    pub(crate) fn reference(&self) -> String {
        match self {
            Source::Registry(r) => r.manifest_reference(),
            Source::Layout { tag, .. } => tag.clone(),
        }
    }

    pub(crate) fn pinned(&self) -> Option<&Digest> {
        match self {
            Source::Registry(r) => r.digest(),
            Source::Layout { .. } => None,
        }
    }
}

/// `path` with symbolic links resolved; when that fails (it does not exist yet), absolute
/// and with `.` and `..` removed lexically.
fn canonical_path(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl std::str::FromStr for Source {
    type Err = Error;
    /// [`Source::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Source::parse(s)
    }
}

/// A source reads from its text (`"ghcr.io/acme/api:1.4"`, `"oci:/src:v1"`), as in a
/// deployer's configuration file.
impl<'de> serde::Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Source::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A source writes as its text.
impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Registry(r) => write!(f, "{r}"),
            Source::Layout { path, tag } => write!(f, "oci:{}:{tag}", path.display()),
        }
    }
}

/// Credential providers for source registries, by host: what a provider crate offers for
/// its registries as sources (`provider_aws::EcrSources` for any
/// `<account>.dkr.ecr.<region>.amazonaws.com`, …).
///
/// # Contract
///
/// - `provider_for` is cheap and makes no network call (a provider fetches its first token
///   when first asked); `None` means "not a host of mine".
/// - The providers it returns refresh their tokens themselves, so that a copy longer than a
///   token's life completes.
pub trait SourceCredentials: Send + Sync + std::fmt::Debug {
    /// A provider for `host` (`host[:port]`), or `None` when this does not serve it.
    fn provider_for(&self, host: &str) -> Option<Arc<dyn CredentialProvider>>;
}

/// Opens source stores: one HTTP client per registry host, layouts by path. A host's
/// credentials come from, in this order: [`Sources::with_credentials`] /
/// [`Sources::with_provider`] for that host, the first [`SourceCredentials`] that serves it,
/// the docker `config.json` (`auths`, `credHelpers`, `credsStore`), else anonymous.
#[derive(Debug, Default)]
pub struct Sources {
    credentials: HashMap<String, Credentials>,
    providers: HashMap<String, Arc<dyn CredentialProvider>>,
    families: Vec<Arc<dyn SourceCredentials>>,
    plain_http: HashMap<String, bool>,
    retry: Option<crate::retry::RetryConfig>,
    docker_config: bool,
    clients: Mutex<HashMap<String, RegistryClient>>,
}

impl Sources {
    /// Sources with credentials from the docker config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `credentials` for `registry` instead of the docker config.
    pub fn with_credentials(mut self, registry: &str, credentials: Credentials) -> Self {
        self.credentials.insert(registry.to_string(), credentials);
        self
    }

    /// Uses `provider` (refreshing tokens: a cloud registry's) for `registry`.
    pub fn with_provider(mut self, registry: &str, provider: Arc<dyn CredentialProvider>) -> Self {
        self.providers.insert(registry.to_string(), provider);
        self
    }

    /// Asks `family` for the credentials of the hosts it serves (after the explicit ones,
    /// before the docker config); families are asked in the order they were added.
    pub fn with_source_credentials(mut self, family: Arc<dyn SourceCredentials>) -> Self {
        self.families.push(family);
        self
    }

    /// Reads the docker `config.json` (`auths`, `credHelpers`, `credsStore`) for a host no
    /// other credentials serve. Off by default: a deployer serving several tenants must not
    /// pick up whatever credentials the host has; a command-line tool turns it on.
    pub fn with_docker_config(mut self) -> Self {
        self.docker_config = true;
        self
    }

    /// Forces plain HTTP (`true`) or HTTPS for `registry`.
    pub fn with_plain_http(mut self, registry: &str, plain: bool) -> Self {
        self.plain_http.insert(registry.to_string(), plain);
        self
    }

    /// The retry policy of every source registry's client (default:
    /// [`RetryConfig::default`](crate::retry::RetryConfig)). A deployer that would rather serve
    /// the mirrored copy at once when a source is down gives a shorter one.
    pub fn with_retry(mut self, retry: crate::retry::RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The pull limit the registry `host` last announced to the client this opened for it
    /// (Docker Hub's `ratelimit-*` headers); `None` when it announced none or was not
    /// opened.
    pub fn rate_limit(&self, host: &str) -> Option<crate::store::RateLimit> {
        self.clients.lock().ok()?.get(host)?.rate_limit()
    }

    /// Opens the store holding `source`. The file reads this may need (a layout's marker, the
    /// docker `config.json`) run on a blocking thread.
    pub async fn open(&self, source: &Source) -> Result<Arc<dyn ImageStore>> {
        match source {
            Source::Layout { path, .. } => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || LayoutStore::open(path))
                    .await
                    .map_err(|e| Error::internal("opening a layout", e))??;
                Ok(Arc::new(store))
            }
            Source::Registry(r) => {
                let host = r.registry().to_string();
                // A poisoned cache still holds whole clients: each insert is one call.
                let known = (self.clients.lock())
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .contains_key(&host);
                // The docker config is a file: read where it may block.
                let docker = if known
                    || !self.docker_config
                    || self.credentials.contains_key(&host)
                    || self.providers.contains_key(&host)
                    || self
                        .families
                        .iter()
                        .any(|f| f.provider_for(&host).is_some())
                {
                    None
                } else {
                    let h = host.clone();
                    Some(
                        tokio::task::spawn_blocking(move || {
                            DockerConfig::load_default()?.credentials_for(&h)
                        })
                        .await
                        .map_err(|e| Error::internal("reading the docker config", e))??,
                    )
                };
                self.open_registry(r, docker)
            }
        }
    }

    /// The store of a registry source, its client made once per host (`docker`: the
    /// credentials the docker config gives the host, read beforehand when needed).
    fn open_registry(
        &self,
        r: &Reference,
        docker: Option<Credentials>,
    ) -> Result<Arc<dyn ImageStore>> {
        let host = r.registry();
        let mut clients = (self.clients.lock()).unwrap_or_else(std::sync::PoisonError::into_inner);
        let client = match clients.get(host) {
            Some(c) => c.clone(),
            None => {
                let provider = self
                    .providers
                    .get(host)
                    .cloned()
                    .or_else(|| self.families.iter().find_map(|f| f.provider_for(host)));
                let mut b = RegistryClient::builder(host);
                b = match (self.credentials.get(host), provider) {
                    (Some(c), _) => b.credentials(c.clone()),
                    (None, Some(p)) => b.credential_provider(p),
                    (None, None) => b.credentials(docker.unwrap_or(Credentials::Anonymous)),
                };
                if let Some(p) = self.plain_http.get(host) {
                    b = b.plain_http(*p);
                }
                if let Some(r) = &self.retry {
                    b = b.retry(r.clone());
                }
                let c = b.build()?;
                clients.insert(host.to_string(), c.clone());
                c
            }
        };
        drop(clients);
        Ok(Arc::new(client.repository(r.repository())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_from_text_and_configuration() {
        let s: Source = "ghcr.io/acme/api:1.4".parse().unwrap();
        assert_eq!(s, Source::parse("ghcr.io/acme/api:1.4").unwrap());
        let from_json: Vec<Source> =
            serde_json::from_str(r#"["nginx:1.27", "oci:/tmp/src:v1"]"#).unwrap();
        assert_eq!(from_json[0].to_string(), "docker.io/library/nginx:1.27");
        assert!(matches!(from_json[1], Source::Layout { .. }));
        let err = serde_json::from_str::<Source>(r#""Not A Reference""#).unwrap_err();
        assert!(err.to_string().contains("invalid reference"), "{err}");
        assert_eq!(
            serde_json::to_string(&from_json[0]).unwrap(),
            r#""docker.io/library/nginx:1.27""#
        );
    }

    #[test]
    fn layouts_are_identified_by_their_full_path() {
        let a = Source::parse("oci:/a/app:v1").unwrap().id();
        let b = Source::parse("oci:/b/app:v1").unwrap().id();
        assert_ne!(a, b, "two layouts named app are two sources");
        assert_eq!(a.repository, "/a/app");
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("app");
        std::fs::create_dir(&real).unwrap();
        let via_dots = Source::parse(&format!("oci:{}/x/../app:v1", dir.path().display()))
            .unwrap()
            .id();
        assert_eq!(
            via_dots.repository,
            real.canonicalize().unwrap().to_string_lossy(),
            "the same directory however it is written"
        );
        assert_eq!(
            crate::strategy::cluster_tag(&a),
            crate::strategy::cluster_tag(&Source::parse("oci:/a/./app:v1").unwrap().id())
        );
        assert_ne!(
            crate::strategy::cluster_tag(&a),
            crate::strategy::cluster_tag(&b)
        );
        assert!(
            crate::strategy::cluster_tag(&a).starts_with("oci_app_v1-"),
            "the directory name is what people read: {}",
            crate::strategy::cluster_tag(&a)
        );
    }
}
