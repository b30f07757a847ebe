//! What to build: [`BuildSpec`], read into a [`BuildPlan`] (the build key and the resolved
//! paths) by [`BuildSpec::plan`]. [`Mirror::build`](crate::Mirror::build) takes a spec.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::builder::dockerfile::{build_args_from_env, declared_args};
use crate::builder::{BuildEventSink, AUTOMATIC_PLATFORM_ARGS, DEFAULT_BUILD_TIMEOUT};
use crate::error::{Error, Result};
use crate::key::{BuildKey, BuildKeyInputs};
use crate::store::http::credentials::Credentials;

/// The extra key input naming the builder.
const BUILDER_KEY_INPUT: &str = "mirror.builder";

/// What to build: a context checked out at a commit, and how to build it.
///
/// Build with [`BuildSpec::new`] and the `with_*` methods. `Debug` shows environment and
/// extra-input names and credential hosts, never their values.
#[derive(Clone)]
pub struct BuildSpec {
    pub(crate) context: PathBuf,
    pub(crate) commit: String,
    pub(crate) dockerfile: Option<PathBuf>,
    pub(crate) repository_root: Option<PathBuf>,
    pub(crate) target: Option<String>,
    pub(crate) platforms: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) extra: BTreeMap<String, String>,
    pub(crate) credentials: BTreeMap<String, Credentials>,
    pub(crate) timeout: Duration,
    pub(crate) keep_previous: Option<usize>,
    pub(crate) cache_builds: usize,
    pub(crate) events: Option<BuildEventSink>,
}

impl BuildSpec {
    /// The build context directory, a clean checkout of `commit` (see [`crate::key`] for
    /// what the commit stands for).
    pub fn new(context: impl Into<PathBuf>, commit: impl Into<String>) -> Self {
        BuildSpec {
            context: context.into(),
            commit: commit.into(),
            dockerfile: None,
            repository_root: None,
            target: None,
            platforms: Vec::new(),
            env: BTreeMap::new(),
            extra: BTreeMap::new(),
            credentials: BTreeMap::new(),
            timeout: DEFAULT_BUILD_TIMEOUT,
            keep_previous: None,
            cache_builds: crate::mirror::DEFAULT_CACHE_BUILDS,
            events: None,
        }
    }

    /// The Dockerfile: absolute, or relative to the context (default `Dockerfile` in the
    /// context).
    pub fn with_dockerfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.dockerfile = Some(path.into());
        self
    }

    /// The root of the source repository, which key paths are relative to. Default: the
    /// nearest directory at or above the context holding `.git`, else the context itself.
    pub fn with_repository_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.repository_root = Some(root.into());
        self
    }

    /// The stage to build (`--target`).
    pub fn with_target(mut self, stage: impl Into<String>) -> Self {
        let stage = stage.into();
        self.target = (!stage.is_empty()).then_some(stage);
        self
    }

    /// Target platforms `os/arch[/variant]`; two or more build an index.
    pub fn with_platforms<I, S>(mut self, platforms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.platforms.extend(platforms.into_iter().map(Into::into));
        self
    }

    /// Environment variables offered as build args. Only those the Dockerfile declares with
    /// `ARG` are passed to the builder and hashed into the key; the platform args
    /// (`TARGETARCH`…, see `AUTOMATIC_PLATFORM_ARGS`) never are. A repeated name keeps its
    /// last value.
    pub fn with_env<I, K, V>(mut self, env: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(env.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// A deployer-defined key input (the builder and its version, a digest of local changes,
    /// a base-image digest...). A repeated name keeps its last value; the value is hashed
    /// into the key and never printed.
    pub fn with_extra(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// Credentials the builder uses for `registry` (a host, `host:port`): the mirror registry
    /// (to push and to read and write the cache; needed unless the registry hands them out,
    /// see [`BuildCapability::builder_credentials`](crate::registry::BuildCapability::builder_credentials)) and
    /// registries holding base images. They reach the builder through a private temporary
    /// auth file only.
    pub fn with_credentials(
        mut self,
        registry: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        self.credentials.insert(registry.into(), credentials);
        self
    }

    /// The build is killed and fails after this long (default one hour).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Previous builds kept by eviction (default: the strategy's `keep_previous` in Service
    /// mode, 1 otherwise).
    pub fn with_keep_previous(mut self, keep: usize) -> Self {
        self.keep_previous = Some(keep);
        self
    }

    /// How many of the latest builds of this service and Dockerfile the remote cache keeps
    /// its entries for (default [`DEFAULT_CACHE_BUILDS`](crate::mirror::DEFAULT_CACHE_BUILDS),
    /// at least 1): an entry none of them used is deleted after the build (see
    /// [`Mirror::build`](crate::Mirror::build)).
    pub fn with_cache_builds(mut self, builds: usize) -> Self {
        self.cache_builds = builds.max(1);
        self
    }

    /// Receives the builder's events (its command lines and log lines).
    pub fn with_events(mut self, events: BuildEventSink) -> Self {
        self.events = Some(events);
        self
    }

    /// Reads the Dockerfile and computes the build key for `builder_name`.
    pub fn plan(&self, builder_name: &str) -> Result<BuildPlan> {
        let context = canonical(&self.context, "build context")?;
        if !context.is_dir() {
            return Err(Error::config(
                "build context",
                format!("{} is not a directory", context.display()),
            ));
        }
        let dockerfile = match &self.dockerfile {
            None => context.join("Dockerfile"),
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => context.join(p),
        };
        let dockerfile = canonical(&dockerfile, "Dockerfile")?;
        let content = std::fs::read(&dockerfile).map_err(|e| Error::io(&dockerfile, e))?;
        let root = match &self.repository_root {
            Some(r) => canonical(r, "repository root")?,
            None => git_root(&context).unwrap_or_else(|| context.clone()),
        };
        let context_rel = relative(&context, &root);
        let dockerfile_rel = relative(&dockerfile, &root);

        let declared = declared_args(&String::from_utf8_lossy(&content));
        let mut build_args = build_args_from_env(
            &declared,
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        for a in AUTOMATIC_PLATFORM_ARGS {
            build_args.remove(a);
        }
        let mut extra = BTreeMap::from([(BUILDER_KEY_INPUT.to_string(), builder_name.to_string())]);
        extra.extend(self.extra.clone());
        let key = BuildKeyInputs {
            target: self.target.clone(),
            platforms: self.platforms.clone(),
            build_args: build_args.clone(),
            extra,
            ..BuildKeyInputs::new(&self.commit, &dockerfile_rel, &content, &context_rel)
        }
        .compute()?;
        let dockerfile_id = hex::encode(
            &Sha256::new()
                .chain_update(b"mirror-core/build-cache\0")
                .chain_update(dockerfile_rel.as_bytes())
                .finalize()[..6],
        );
        Ok(BuildPlan {
            key,
            context,
            dockerfile,
            dockerfile_rel,
            dockerfile_id,
            build_args,
        })
    }
}

impl fmt::Debug for BuildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildSpec")
            .field("context", &self.context)
            .field("commit", &self.commit)
            .field("dockerfile", &self.dockerfile)
            .field("repository_root", &self.repository_root)
            .field("target", &self.target)
            .field("platforms", &self.platforms)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("keep_previous", &self.keep_previous)
            .field("events", &self.events.is_some())
            .finish()
    }
}

/// What [`BuildSpec::plan`] found: the key and the resolved paths. `Debug` shows build-arg
/// names only.
#[derive(Clone)]
pub struct BuildPlan {
    /// The build key; its tag names the image.
    pub key: BuildKey,
    /// The context, absolute.
    pub context: PathBuf,
    /// The Dockerfile, absolute.
    pub dockerfile: PathBuf,
    /// The Dockerfile relative to the repository root, as hashed into the key.
    pub dockerfile_rel: String,
    /// Identifies the Dockerfile's path in the cache repository name (12 hex characters).
    pub dockerfile_id: String,
    /// The build args passed to the builder: the declared ones found in the environment.
    pub build_args: BTreeMap<String, String>,
}

impl fmt::Debug for BuildPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildPlan")
            .field("key", &self.key)
            .field("context", &self.context)
            .field("dockerfile", &self.dockerfile)
            .field("dockerfile_rel", &self.dockerfile_rel)
            .field("dockerfile_id", &self.dockerfile_id)
            .field("build_args", &self.build_args.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn canonical(path: &Path, what: &str) -> Result<PathBuf> {
    path.canonicalize().map_err(|e| {
        Error::config(
            "path",
            format!("{what} {} cannot be resolved: {e}", path.display()),
        )
    })
}

/// The nearest directory at or above `dir` holding `.git` (a directory, or a file in
/// worktrees and submodules).
fn git_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// `path` relative to `base` (both absolute and canonical), with `..` where `path` is not
/// below `base`; `.` when they are equal.
fn relative(path: &Path, base: &Path) -> String {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_string(), b.len() - common).collect();
    parts.extend(
        p[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/a/b/c"), Path::new("/a")), "b/c");
        assert_eq!(relative(Path::new("/a"), Path::new("/a")), ".");
        assert_eq!(relative(Path::new("/x/D"), Path::new("/a/b")), "../../x/D");
    }

    fn checkout(dir: &Path) -> PathBuf {
        let root = dir.join("repo");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("svc")).unwrap();
        std::fs::write(
            root.join("svc/Dockerfile"),
            "FROM scratch\nARG VERSION\nARG TARGETARCH\nCOPY . /\n",
        )
        .unwrap();
        root
    }

    #[test]
    fn keys_use_declared_args_only_and_paths_from_the_repository_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = checkout(dir.path());
        let spec = BuildSpec::new(root.join("svc"), "abc123").with_env([
            ("VERSION", "1"),
            ("PATH", "/bin"),
            ("TARGETARCH", "s390x"),
        ]);
        let plan = spec.plan("buildah").unwrap();
        assert_eq!(plan.dockerfile_rel, "svc/Dockerfile");
        assert_eq!(plan.dockerfile_id.len(), 12);
        assert_eq!(
            plan.build_args.keys().collect::<Vec<_>>(),
            ["VERSION"],
            "undeclared and platform args are not build args"
        );
        let same = spec
            .clone()
            .with_env([("PATH", "/usr/bin")])
            .plan("buildah")
            .unwrap();
        assert_eq!(same.key, plan.key, "an undeclared variable changes nothing");
        let other = spec
            .clone()
            .with_env([("VERSION", "2")])
            .plan("buildah")
            .unwrap();
        assert_ne!(other.key, plan.key);
        assert_ne!(
            spec.plan("buildx").unwrap().key,
            plan.key,
            "the builder counts"
        );

        // The same source checked out elsewhere (a clone) has the same key.
        let dir2 = tempfile::tempdir().unwrap();
        let root2 = checkout(dir2.path());
        let clone = BuildSpec::new(root2.join("svc"), "abc123").with_env([("VERSION", "1")]);
        assert_eq!(clone.plan("buildah").unwrap().key, plan.key);

        // Another Dockerfile: another cache.
        std::fs::write(root.join("svc/Dockerfile.dev"), "FROM scratch\n").unwrap();
        let dev = spec
            .clone()
            .with_dockerfile("Dockerfile.dev")
            .plan("buildah")
            .unwrap();
        assert_ne!(dev.dockerfile_id, plan.dockerfile_id);
        assert!(format!("{spec:?}").contains("VERSION") && !format!("{spec:?}").contains("s390x"));
    }

    #[test]
    fn missing_inputs_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            BuildSpec::new(dir.path().join("none"), "abc").plan("buildah"),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            BuildSpec::new(dir.path(), "abc").plan("buildah"),
            Err(Error::Config { .. })
        ));
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        assert!(matches!(
            BuildSpec::new(dir.path(), "a b").plan("buildah"),
            Err(Error::Config { .. })
        ));
    }
}
