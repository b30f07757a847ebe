//! The cluster's mirror registry: the [`Registry`] trait (the provider plug-in point) and its
//! two core implementations, [`GenericRegistry`] (any distribution registry) and
//! [`LayoutRegistry`] (a directory of OCI layouts, needing no server).
//!
//! # Push times
//!
//! The distribution API does not tell when an image was pushed. Registries that cannot tell
//! ([`Registry::records_push_time`] is false) get their push times recorded by the library: the
//! first tag written for an image is a bookkeeping tag `mirror.pushed.<unix-milliseconds>.<12 hex of
//! the digest>`, before its real tag. Listings read those tags back and hide them from
//! [`ImageRecord::tags`]. Deleting the image by digest deletes them with it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::eviction::ImageRecord;
use crate::media::ParsedManifest;
use crate::reference::validate_repository;
use crate::store::http::RegistryClient;
use crate::store::layout::LayoutStore;
use crate::store::ImageStore;

/// What a repository is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepositoryScope {
    /// Service mode: one repository per service of a cluster.
    Service {
        /// The cluster id.
        cluster: String,
        /// The service id.
        service: String,
    },
    /// Cluster mode: one repository shared by every service of a cluster.
    Cluster {
        /// The cluster id.
        cluster: String,
    },
    /// Images built for a service.
    Build {
        /// The cluster id.
        cluster: String,
        /// The service id.
        service: String,
    },
}

impl RepositoryScope {
    /// The cluster id of any scope.
    pub fn cluster(&self) -> &str {
        match self {
            RepositoryScope::Service { cluster, .. }
            | RepositoryScope::Cluster { cluster }
            | RepositoryScope::Build { cluster, .. } => cluster,
        }
    }
}

/// Settings a repository is created or updated with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RepositorySettings {
    /// Cluster mode: images older than this may be deleted (by the provider's native policy
    /// where there is one, else by `sweep`).
    pub retention: Option<Duration>,
    /// Service mode: how many previous images are kept for rollbacks.
    pub keep_previous: Option<usize>,
}

/// A cluster's mirror registry, as providers implement it.
///
/// # Contract
///
/// - `repository_name` is pure and total: for any cluster and service id it returns a name the
///   registry accepts, or [`Error::InvalidName`] for an empty id. Distinct ids give distinct
///   names; the same ids give the same name on every run.
/// - `ensure_repository` is idempotent and safe to call concurrently for one repository
///   ("already exists" is success); it applies `settings` when they differ.
/// - `store` returns a store with valid credentials for at least the next operation;
///   providers refresh credentials inside it.
/// - `list_images` lists every image (manifest or index reachable by tag) of the repository;
///   a repository that does not exist has no images (`Ok(vec![])`). Push times are `Some` for
///   every image whose push time is known.
/// - `delete_image` deletes the image and its tags; [`Error::NotFound`] when it is absent.
/// - No method reports a failed check as "absent".
#[async_trait]
pub trait Registry: Send + Sync + fmt::Debug {
    /// The provider name (`generic`, `layout`, `aws`…), used in errors and listings.
    fn provider(&self) -> &str;

    /// Where the registry is, for humans (`127.0.0.1:5000`, `oci:/var/mirror`).
    fn location(&self) -> String;

    /// The repository name for a scope.
    fn repository_name(&self, scope: &RepositoryScope) -> Result<String>;

    /// Creates the repository if needed and applies its settings.
    async fn ensure_repository(
        &self,
        repository: &str,
        settings: &RepositorySettings,
    ) -> Result<()>;

    /// A store for one repository.
    async fn store(&self, repository: &str) -> Result<Arc<dyn ImageStore>>;

    /// The repositories this library manages for `cluster`.
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>>;

    /// The images of a repository.
    async fn list_images(&self, repository: &str) -> Result<Vec<ImageRecord>>;

    /// Deletes one image (by manifest digest) and its tags.
    async fn delete_image(&self, repository: &str, digest: &Digest) -> Result<()>;

    /// The digest-pinned reference Kubernetes pulls.
    fn pull_reference(&self, repository: &str, digest: &Digest) -> String;

    /// True when the registry records push times itself; false makes the library record them
    /// with bookkeeping tags (see the module docs).
    fn records_push_time(&self) -> bool {
        false
    }

    /// The name builders push `repository` under and read caches from: `host/repository`,
    /// without tag or digest (see [`crate::builder`]).
    ///
    /// The default takes [`pull_reference`](Self::pull_reference) without its digest and
    /// fails with [`Error::Config`] when that is not a registry reference (an OCI layout
    /// cannot receive builds).
    fn repository_reference(&self, repository: &str) -> Result<String> {
        let probe = Digest::sha256_of(b"");
        let pinned = self.pull_reference(repository, &probe);
        let base = pinned.strip_suffix(&format!("@{probe}"));
        match base {
            Some(base)
                if !base.starts_with("oci:")
                    && crate::reference::Reference::parse(base).is_ok() =>
            {
                Ok(base.to_string())
            }
            _ => Err(Error::Config(format!(
                "the {} registry at {} cannot receive builds: builders push to a \
                 distribution registry",
                self.provider(),
                self.location()
            ))),
        }
    }

    /// Credentials a builder process uses to push to this registry and to read and write its
    /// caches, with the host they are for; `None` (the default) when the registry cannot hand
    /// them out, and the deployer passes them in the build spec. Asked once per build, so
    /// that rotating tokens (ECR, GCP) are fresh.
    async fn builder_credentials(
        &self,
    ) -> Result<Option<(String, crate::store::http::credentials::Credentials)>> {
        Ok(None)
    }

    /// The repository holding the remote build cache of the builds pushed to
    /// `build_repository` from one Dockerfile, named by `dockerfile_id` (lowercase hex, a
    /// hash of the Dockerfile's path). Caches are never shared between services or
    /// Dockerfiles, and never held in a repository that eviction or retention manages.
    ///
    /// The default is `<build_repository>/cache-<dockerfile_id>`: one level below the build
    /// repository, so it cannot collide with the name of any [`RepositoryScope`]. Providers
    /// with flat or short names override it; the name must stay distinct for distinct inputs.
    fn cache_repository(&self, build_repository: &str, dockerfile_id: &str) -> Result<String> {
        let name = format!("{build_repository}/cache-{dockerfile_id}");
        validate_repository(&name).map_err(|reason| Error::InvalidName {
            name: name.clone(),
            reason,
        })?;
        Ok(name)
    }
}

/// Prefix of the bookkeeping tags recording push times.
pub const PUSHED_TAG_PREFIX: &str = "mirror.pushed.";

/// The bookkeeping tag recording that `digest` was pushed at `at`.
pub fn pushed_tag(at: SystemTime, digest: &Digest) -> String {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{PUSHED_TAG_PREFIX}{millis}.{}", &digest.hex()[..12])
}

/// Reads a bookkeeping tag: (push time, first 12 hex of the digest).
pub fn parse_pushed_tag(tag: &str) -> Option<(SystemTime, String)> {
    let rest = tag.strip_prefix(PUSHED_TAG_PREFIX)?;
    let (millis, hex) = rest.split_once('.')?;
    let millis: u64 = millis.parse().ok()?;
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((UNIX_EPOCH + Duration::from_millis(millis), hex.to_string()))
}

/// Longest path component produced from an id.
const MAX_COMPONENT: usize = 48;

/// Turns an id (cluster, service) into a repository path component valid in the distribution
/// grammar: lowercase `[a-z0-9]` runs joined by single `-`. When that changes the id (case,
/// punctuation, Unicode, length), a hash of the exact id is appended so distinct ids never
/// share a name. Empty ids (or ids made only of whitespace) are an error.
pub fn id_component(kind: &str, id: &str, max_len: usize) -> Result<String> {
    if id.trim().is_empty() {
        return Err(Error::InvalidName {
            name: id.to_string(),
            reason: format!("the {kind} id is empty"),
        });
    }
    let mut out = String::new();
    for c in id.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    let max_len = max_len.max(12);
    if out == id && out.len() <= max_len {
        return Ok(out);
    }
    let hash = hex::encode(&Sha256::digest(id.as_bytes())[..4]);
    let keep = max_len - hash.len() - 1;
    out.truncate(keep);
    while out.ends_with('-') {
        out.pop();
    }
    Ok(if out.is_empty() {
        format!("x-{hash}")
    } else {
        format!("{out}-{hash}")
    })
}

/// The default repository layout shared by the core registries:
/// `[prefix/]<cluster>/services/<service>`, `[prefix/]<cluster>/mirror`,
/// `[prefix/]<cluster>/builds/<service>`. The middle component keeps scopes apart.
pub fn default_repository_name(prefix: Option<&str>, scope: &RepositoryScope) -> Result<String> {
    let cluster = id_component("cluster", scope.cluster(), MAX_COMPONENT)?;
    let tail = match scope {
        RepositoryScope::Service { service, .. } => {
            format!(
                "services/{}",
                id_component("service", service, MAX_COMPONENT)?
            )
        }
        RepositoryScope::Cluster { .. } => "mirror".to_string(),
        RepositoryScope::Build { service, .. } => {
            format!(
                "builds/{}",
                id_component("service", service, MAX_COMPONENT)?
            )
        }
    };
    let name = match prefix {
        Some(p) if !p.is_empty() => format!("{p}/{cluster}/{tail}"),
        _ => format!("{cluster}/{tail}"),
    };
    validate_repository(&name).map_err(|reason| Error::InvalidName {
        name: name.clone(),
        reason,
    })?;
    Ok(name)
}

fn cluster_prefix(prefix: Option<&str>, cluster: &str) -> Result<String> {
    let c = id_component("cluster", cluster, MAX_COMPONENT)?;
    Ok(match prefix {
        Some(p) if !p.is_empty() => format!("{p}/{c}/"),
        _ => format!("{c}/"),
    })
}

/// Lists the images of a store by its tags: HEADs every tag, groups by digest, and takes push
/// times from the bookkeeping tags.
pub async fn list_images_by_tags(
    store: &dyn ImageStore,
    repository: &str,
) -> Result<Vec<ImageRecord>> {
    let tags = store.list_tags().await?;
    let heads: Vec<(String, Option<Digest>)> =
        futures::stream::iter(tags.into_iter().map(|t| async move {
            let head = store.head_manifest(&t).await?;
            Ok::<_, Error>((t, head.map(|h| h.digest)))
        }))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let mut by_digest: BTreeMap<Digest, ImageRecord> = BTreeMap::new();
    for (tag, digest) in heads {
        // A tag deleted between the listing and the HEAD.
        let Some(digest) = digest else { continue };
        let rec = by_digest
            .entry(digest.clone())
            .or_insert_with(|| ImageRecord {
                repository: repository.to_string(),
                digest: digest.clone(),
                tags: Vec::new(),
                pushed_at: None,
                size: None,
            });
        match parse_pushed_tag(&tag) {
            Some((at, hex)) if digest.hex().starts_with(&hex) => {
                rec.pushed_at = Some(rec.pushed_at.map_or(at, |p| p.max(at)));
            }
            _ => rec.tags.push(tag),
        }
    }
    let mut out: Vec<ImageRecord> = by_digest.into_values().collect();
    for r in &mut out {
        r.tags.sort();
    }
    Ok(out)
}

/// The total size of an image: its manifest, and for every image manifest reached, config
/// and layers (blobs shared between platforms counted once).
pub async fn image_size(store: &dyn ImageStore, digest: &Digest) -> Result<u64> {
    let mut total = 0u64;
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut pending = vec![digest.clone()];
    while let Some(d) = pending.pop() {
        let m = store.get_manifest(&d.to_string()).await?;
        total += m.bytes.len() as u64;
        match m.parse(&format!("{}@{d}", store.location()))? {
            ParsedManifest::Image { config, layers } => {
                for b in std::iter::once(config).chain(layers) {
                    if seen.insert(b.digest.clone()) {
                        total += b.size;
                    }
                }
            }
            ParsedManifest::Index { manifests } => {
                pending.extend(manifests.into_iter().map(|m| m.digest))
            }
        }
    }
    Ok(total)
}

/// Any OCI distribution registry (the CNCF registry, Harbor, Zot, Quay…).
///
/// Repositories are named by [`default_repository_name`] under an optional prefix; they need
/// no creation (distribution registries create repositories on first push); images are
/// deleted by manifest digest (the registry must have deletes enabled); push times are
/// recorded by the library (see the module docs); repositories are listed through the catalog
/// API.
#[derive(Debug, Clone)]
pub struct GenericRegistry {
    client: RegistryClient,
    prefix: Option<String>,
}

impl GenericRegistry {
    /// A registry reached through `client`.
    pub fn new(client: RegistryClient) -> Self {
        GenericRegistry {
            client,
            prefix: None,
        }
    }

    /// Puts every repository under `prefix` (a valid repository path, e.g. `mirror`).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        validate_repository(prefix).map_err(|reason| Error::InvalidName {
            name: prefix.to_string(),
            reason,
        })?;
        self.prefix = Some(prefix.to_string());
        Ok(self)
    }

    /// The HTTP client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }
}

#[async_trait]
impl Registry for GenericRegistry {
    fn provider(&self) -> &str {
        "generic"
    }

    fn location(&self) -> String {
        self.client.registry().to_string()
    }

    fn repository_name(&self, scope: &RepositoryScope) -> Result<String> {
        default_repository_name(self.prefix.as_deref(), scope)
    }

    async fn ensure_repository(
        &self,
        repository: &str,
        _settings: &RepositorySettings,
    ) -> Result<()> {
        // Distribution registries create repositories on the first push and have no
        // repository settings: retention is enforced by `sweep`.
        validate_repository(repository).map_err(|reason| Error::InvalidName {
            name: repository.to_string(),
            reason,
        })
    }

    async fn store(&self, repository: &str) -> Result<Arc<dyn ImageStore>> {
        Ok(Arc::new(self.client.repository(repository)?))
    }

    async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>> {
        let prefix = cluster_prefix(self.prefix.as_deref(), cluster)?;
        let mut repos: Vec<String> = self
            .client
            .catalog()
            .await?
            .into_iter()
            .filter(|r| r.starts_with(&prefix))
            .collect();
        repos.sort();
        Ok(repos)
    }

    async fn list_images(&self, repository: &str) -> Result<Vec<ImageRecord>> {
        let store = self.client.repository(repository)?;
        list_images_by_tags(&store, repository).await
    }

    async fn delete_image(&self, repository: &str, digest: &Digest) -> Result<()> {
        let store = self.client.repository(repository)?;
        // Distribution 2.8 deletes the tags of a manifest deleted by digest; registries that
        // keep dangling tags answer 404 for them afterwards, which listings skip.
        store.delete_manifest(digest).await
    }

    fn pull_reference(&self, repository: &str, digest: &Digest) -> String {
        format!("{}/{repository}@{digest}", self.client.registry())
    }

    async fn builder_credentials(
        &self,
    ) -> Result<Option<(String, crate::store::http::credentials::Credentials)>> {
        let creds = self.client.current_credentials().await?;
        Ok((!creds.is_anonymous()).then(|| (self.client.registry().to_string(), creds)))
    }
}

/// A directory of OCI image layouts, one per repository (`<root>/<repository>/`): the
/// embedded default that needs no server. Push times are recorded by the library.
#[derive(Debug, Clone)]
pub struct LayoutRegistry {
    root: PathBuf,
}

impl LayoutRegistry {
    /// A registry rooted at `root` (created on first push).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LayoutRegistry { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, repository: &str) -> Result<PathBuf> {
        validate_repository(repository).map_err(|reason| Error::InvalidName {
            name: repository.to_string(),
            reason,
        })?;
        Ok(self.root.join(repository))
    }
}

#[async_trait]
impl Registry for LayoutRegistry {
    fn provider(&self) -> &str {
        "layout"
    }

    fn location(&self) -> String {
        format!("oci:{}", self.root.display())
    }

    fn repository_name(&self, scope: &RepositoryScope) -> Result<String> {
        default_repository_name(None, scope)
    }

    async fn ensure_repository(
        &self,
        repository: &str,
        _settings: &RepositorySettings,
    ) -> Result<()> {
        LayoutStore::create(self.path_of(repository)?).map(|_| ())
    }

    async fn store(&self, repository: &str) -> Result<Arc<dyn ImageStore>> {
        Ok(Arc::new(LayoutStore::create(self.path_of(repository)?)?))
    }

    async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>> {
        let prefix = cluster_prefix(None, cluster)?;
        let base = self.root.join(prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut pending = vec![base];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            if dir.join("oci-layout").is_file() {
                if let Ok(rel) = dir.strip_prefix(&self.root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
                continue;
            }
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    pending.push(entry.path());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn list_images(&self, repository: &str) -> Result<Vec<ImageRecord>> {
        let path = self.path_of(repository)?;
        if !path.join("oci-layout").is_file() {
            return Ok(Vec::new());
        }
        let store = LayoutStore::open(path)?;
        list_images_by_tags(&store, repository).await
    }

    async fn delete_image(&self, repository: &str, digest: &Digest) -> Result<()> {
        let path = self.path_of(repository)?;
        if !path.join("oci-layout").is_file() {
            return Err(Error::manifest_not_found(format!(
                "oci:{}@{digest}",
                path.display()
            )));
        }
        LayoutStore::open(path)?.delete_manifest(digest).await
    }

    fn pull_reference(&self, repository: &str, digest: &Digest) -> String {
        format!("oci:{}@{digest}", self.root.join(repository).display())
    }

    fn repository_reference(&self, _repository: &str) -> Result<String> {
        Err(Error::Config(format!(
            "the layout registry {} cannot receive builds: builders push to a distribution \
             registry",
            self.location()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_become_valid_distinct_components() {
        assert_eq!(id_component("service", "api", 48).unwrap(), "api");
        assert_eq!(id_component("service", "web-1", 48).unwrap(), "web-1");
        let a = id_component("service", "Web_1", 48).unwrap();
        let b = id_component("service", "web-1!", 48).unwrap();
        assert!(
            a.starts_with("web-1-") && b.starts_with("web-1-") && a != b,
            "{a} {b}"
        );
        assert!(id_component("service", "  ", 48).is_err());
        assert!(matches!(
            id_component("cluster", "", 48),
            Err(Error::InvalidName { .. })
        ));
        assert!(id_component("service", "ÄÖÜ", 48)
            .unwrap()
            .starts_with("x-"));
    }

    #[test]
    fn scopes_never_share_a_repository() {
        let s = RepositoryScope::Service {
            cluster: "c".into(),
            service: "mirror".into(),
        };
        let c = RepositoryScope::Cluster {
            cluster: "c".into(),
        };
        let b = RepositoryScope::Build {
            cluster: "c".into(),
            service: "mirror".into(),
        };
        let names: HashSet<String> = [&s, &c, &b]
            .iter()
            .map(|x| default_repository_name(None, x).unwrap())
            .collect();
        assert_eq!(names.len(), 3);
        assert_eq!(
            default_repository_name(Some("m"), &c).unwrap(),
            "m/c/mirror"
        );
    }

    #[test]
    fn builds_push_to_host_and_repository_with_caches_beside_them() {
        use crate::store::http::credentials::Credentials;
        let reg = GenericRegistry::new(
            RegistryClient::new("127.0.0.1:5000", Credentials::Anonymous).unwrap(),
        );
        let build = default_repository_name(
            None,
            &RepositoryScope::Build {
                cluster: "c".into(),
                service: "api".into(),
            },
        )
        .unwrap();
        assert_eq!(
            reg.repository_reference(&build).unwrap(),
            "127.0.0.1:5000/c/builds/api"
        );
        let cache = reg.cache_repository(&build, "0123abcd").unwrap();
        assert_eq!(cache, "c/builds/api/cache-0123abcd");
        // One level deeper than every scope's name: no service, build or cluster repository
        // can be named like a cache.
        for scope in [
            RepositoryScope::Service {
                cluster: "c".into(),
                service: "api".into(),
            },
            RepositoryScope::Cluster {
                cluster: "c".into(),
            },
            RepositoryScope::Build {
                cluster: "c".into(),
                service: "api".into(),
            },
        ] {
            let name = default_repository_name(None, &scope).unwrap();
            assert_ne!(name.matches('/').count(), cache.matches('/').count());
        }
        let layout = LayoutRegistry::new("/tmp/x");
        assert!(matches!(
            layout.repository_reference(&build),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn pushed_tags_round_trip() {
        let d = Digest::sha256_of(b"x");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = pushed_tag(at, &d);
        crate::reference::validate_tag(&t).unwrap();
        assert_eq!(parse_pushed_tag(&t), Some((at, d.hex()[..12].to_string())));
        assert_eq!(parse_pushed_tag("mirror.pushed.x.abc"), None);
        assert_eq!(parse_pushed_tag("v1"), None);
    }

    proptest! {
        #[test]
        fn names_are_valid_for_any_ids(cluster in "\\PC{1,300}", service in "\\PC{1,300}") {
            prop_assume!(!cluster.trim().is_empty() && !service.trim().is_empty());
            for scope in [
                RepositoryScope::Service { cluster: cluster.clone(), service: service.clone() },
                RepositoryScope::Cluster { cluster: cluster.clone() },
                RepositoryScope::Build { cluster: cluster.clone(), service: service.clone() },
            ] {
                let name = default_repository_name(Some("mirror"), &scope).unwrap();
                prop_assert!(validate_repository(&name).is_ok(), "{}", name);
            }
        }

        #[test]
        fn distinct_ids_give_distinct_components(a in "\\PC{1,80}", b in "\\PC{1,80}") {
            prop_assume!(a != b && !a.trim().is_empty() && !b.trim().is_empty());
            prop_assert_ne!(id_component("service", &a, 48).unwrap(), id_component("service", &b, 48).unwrap());
        }
    }
}
