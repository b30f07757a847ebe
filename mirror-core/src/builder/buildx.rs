//! [`Buildx`]: builds with `docker buildx build` (BuildKit).
//!
//! One build is one command (see [`Buildx::command`] for the exact argument vector):
//!
//! ```text
//! DOCKER_CONFIG=<private dir> BUILDX_CONFIG=<your buildx state>
//! docker buildx build --progress plain --file DOCKERFILE --tag REF --output type=registry
//!        [--cache-from type=registry,ref=CACHE:buildcache]...
//!        [--cache-to type=registry,ref=CACHE:buildcache,mode=max,image-manifest=true,oci-mediatypes=true]
//!        [--platform P1,P2] [--build-arg K=V]... [--target T]
//!        --metadata-file META [--builder NAME] CONTEXT
//! ```
//!
//! The pushed digest is read from the metadata file (`containerimage.digest`).
//!
//! Credentials are written to `config.json` in a private temporary directory that
//! `DOCKER_CONFIG` points to for this process only; `BUILDX_CONFIG` keeps pointing at the
//! user's buildx state (`$DOCKER_CONFIG/buildx` or `~/.docker/buildx`, unless `BUILDX_CONFIG`
//! is set already), so that builder instances created with `docker buildx create` stay
//! visible. Choose one with [`Buildx::builder_instance`]: the registry cache exporter needs a
//! BuildKit builder (the `docker-container`, `kubernetes` or `remote` driver, or the `docker`
//! driver with the containerd image store).
//!
//! Cache references without a tag get the tag `buildcache`. Loopback registries get
//! `registry.insecure=true` on the output and the caches (plain HTTP), as everywhere in this
//! library; [`Buildx::insecure_registry`] forces a choice.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::process::Runner;
use super::workdir::WorkDir;
use super::{has_tag_or_digest, BuildOutput, BuildRequest, Builder, CommandLine};
use crate::digest::Digest;
use crate::error::Result;
use crate::reference::is_loopback_host;

/// The tag given to cache references that have none.
pub(crate) const CACHE_TAG: &str = "buildcache";

/// The buildx backend.
#[derive(Debug, Clone)]
pub struct Buildx {
    program: PathBuf,
    builder: Option<String>,
    buildx_config: Option<PathBuf>,
    insecure: Option<bool>,
}

impl Default for Buildx {
    fn default() -> Self {
        Buildx {
            program: PathBuf::from("docker"),
            builder: None,
            buildx_config: default_buildx_config(),
            insecure: None,
        }
    }
}

/// The user's buildx state directory, when `BUILDX_CONFIG` does not name it already.
fn default_buildx_config() -> Option<PathBuf> {
    if std::env::var_os("BUILDX_CONFIG").is_some() {
        return None;
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("buildx"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("buildx"))
}

/// The paths one build's command refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildxPaths {
    /// The private directory holding `config.json` (becomes `DOCKER_CONFIG`).
    pub docker_config: PathBuf,
    /// Where buildx writes the build metadata.
    pub metadata_file: PathBuf,
}

impl Buildx {
    /// `docker` from `PATH`, the current buildx builder, plain HTTP for loopback registries.
    pub fn new() -> Self {
        Self::default()
    }

    /// The docker CLI binary (default `docker`).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// The buildx builder instance (`--builder`).
    pub fn builder_instance(mut self, name: impl Into<String>) -> Self {
        self.builder = Some(name.into());
        self
    }

    /// The buildx state directory given to the process as `BUILDX_CONFIG` (default: see the
    /// module docs; `None` passes nothing).
    pub fn buildx_config(mut self, dir: Option<PathBuf>) -> Self {
        self.buildx_config = dir;
        self
    }

    /// Forces `registry.insecure=true` (plain HTTP) on or off for the output and caches.
    pub fn insecure_registry(mut self, insecure: bool) -> Self {
        self.insecure = Some(insecure);
        self
    }

    /// The exact command of a build: a pure function of the configuration, the request and
    /// the paths, so that tests can assert the command line.
    pub fn command(&self, request: &BuildRequest, paths: &BuildxPaths) -> CommandLine {
        let insecure = self.insecure.unwrap_or_else(|| {
            request
                .registry()
                .map(|r| is_loopback_host(&r))
                .unwrap_or(false)
        });
        let suffix = if insecure {
            ",registry.insecure=true"
        } else {
            ""
        };
        let cache_ref = |r: &str| {
            if has_tag_or_digest(r) {
                r.to_string()
            } else {
                format!("{r}:{CACHE_TAG}")
            }
        };
        let mut a: Vec<String> = ["buildx", "build", "--progress", "plain", "--file"]
            .map(String::from)
            .to_vec();
        a.push(path_arg(&request.dockerfile));
        a.push("--tag".into());
        a.push(request.reference.clone());
        a.push("--output".into());
        a.push(format!("type=registry{suffix}"));
        for c in &request.cache_from {
            a.push("--cache-from".into());
            a.push(format!("type=registry,ref={}{suffix}", cache_ref(c)));
        }
        if let Some(c) = &request.cache_to {
            a.push("--cache-to".into());
            a.push(format!(
                "type=registry,ref={},mode=max,image-manifest=true,oci-mediatypes=true{suffix}",
                cache_ref(c)
            ));
        }
        if !request.platforms.is_empty() {
            a.push("--platform".into());
            a.push(request.platforms.join(","));
        }
        for (k, v) in &request.build_args {
            a.push("--build-arg".into());
            a.push(format!("{k}={v}"));
        }
        if let Some(t) = &request.target {
            a.push("--target".into());
            a.push(t.clone());
        }
        a.push("--metadata-file".into());
        a.push(path_arg(&paths.metadata_file));
        if let Some(b) = &self.builder {
            a.push("--builder".into());
            a.push(b.clone());
        }
        a.push(path_arg(&request.context));

        let mut env = vec![("DOCKER_CONFIG".to_string(), path_arg(&paths.docker_config))];
        if let Some(dir) = &self.buildx_config {
            env.push(("BUILDX_CONFIG".into(), path_arg(dir)));
        }
        CommandLine {
            program: self.program.clone(),
            args: a,
            env,
        }
    }
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[async_trait]
impl Builder for Buildx {
    fn name(&self) -> &str {
        "buildx"
    }

    async fn build(&self, request: &BuildRequest) -> Result<BuildOutput> {
        request.validate()?;
        let mut work = WorkDir::create("mirror-buildx")?;
        work.write_auth("config.json", &request.credentials)?;
        let paths = BuildxPaths {
            docker_config: work.path().to_path_buf(),
            metadata_file: work.path().join("metadata.json"),
        };
        let cmd = self.command(request, &paths);
        let mut runner = Runner::new(request);
        let result = runner.run(&cmd).await;
        work.remove_auth_files();
        let digest = result.and_then(|()| read_metadata_digest(&paths.metadata_file, &runner));
        work.remove().await;
        Ok(BuildOutput {
            reference: request.reference.clone(),
            digest: digest?,
        })
    }
}

fn read_metadata_digest(path: &Path, runner: &Runner<'_>) -> Result<Digest> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| runner.failure(format!("buildx wrote no metadata file ({e})")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| runner.failure(format!("buildx metadata is not JSON: {e}")))?;
    let d = v
        .get("containerimage.digest")
        .and_then(|d| d.as_str())
        .ok_or_else(|| runner.failure("buildx metadata holds no containerimage.digest"))?;
    Digest::parse(d).map_err(|e| runner.failure(format!("buildx metadata digest: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::error::Error;
    use crate::store::http::credentials::Credentials;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn paths() -> BuildxPaths {
        BuildxPaths {
            docker_config: "/tmp/w".into(),
            metadata_file: "/tmp/w/metadata.json".into(),
        }
    }

    #[test]
    fn the_exact_command_line() {
        let mut r = BuildRequest::new(
            "/src/app",
            "/src/app/Dockerfile",
            "registry.example.com/c/builds/api:abc-123",
        );
        r.cache_from = vec!["registry.example.com/c/builds/api/cache-1234".into()];
        r.cache_to = Some("registry.example.com/c/builds/api/cache-1234".into());
        r.platforms = vec!["linux/amd64".into(), "linux/arm64".into()];
        r.build_args = BTreeMap::from([("VERSION".to_string(), "1.2".to_string())]);
        r.target = Some("runtime".into());
        r.credentials
            .insert("registry.example.com".into(), Credentials::basic("u", "pw"));
        let b = Buildx::new()
            .buildx_config(Some("/home/me/.docker/buildx".into()))
            .builder_instance("ci");
        let c = b.command(&r, &paths());
        assert_eq!(c.program, PathBuf::from("docker"));
        assert_eq!(
            c.args,
            strings(&[
                "buildx", "build", "--progress", "plain",
                "--file", "/src/app/Dockerfile",
                "--tag", "registry.example.com/c/builds/api:abc-123",
                "--output", "type=registry",
                "--cache-from",
                "type=registry,ref=registry.example.com/c/builds/api/cache-1234:buildcache",
                "--cache-to",
                "type=registry,ref=registry.example.com/c/builds/api/cache-1234:buildcache,mode=max,image-manifest=true,oci-mediatypes=true",
                "--platform", "linux/amd64,linux/arm64",
                "--build-arg", "VERSION=1.2",
                "--target", "runtime",
                "--metadata-file", "/tmp/w/metadata.json",
                "--builder", "ci",
                "/src/app",
            ])
        );
        assert_eq!(
            c.env,
            vec![
                ("DOCKER_CONFIG".to_string(), "/tmp/w".to_string()),
                (
                    "BUILDX_CONFIG".to_string(),
                    "/home/me/.docker/buildx".to_string()
                ),
            ]
        );
        assert!(
            !format!("{c:?}").contains("pw\""),
            "no credentials on the command line"
        );
    }

    #[test]
    fn loopback_registries_are_plain_http_and_tagged_caches_kept() {
        let mut r = BuildRequest::new("/c", "/c/Dockerfile", "127.0.0.1:5000/c/builds/api:k");
        r.cache_from = vec!["127.0.0.1:5000/c/cache:v2".into()];
        let c = Buildx::new().buildx_config(None).command(&r, &paths());
        assert!(c
            .args
            .contains(&"type=registry,registry.insecure=true".to_string()));
        assert!(c.args.contains(
            &"type=registry,ref=127.0.0.1:5000/c/cache:v2,registry.insecure=true".to_string()
        ));
        assert_eq!(c.env.len(), 1);
        let c = Buildx::new().insecure_registry(false).command(&r, &paths());
        assert!(c.args.contains(&"type=registry".to_string()));
    }

    fn fake_docker(dir: &Path, exit_code: i32) -> PathBuf {
        let script = format!(
            r##"#!/bin/sh
echo "$*" >> "{dir}/calls"
stat -c '%a' "$DOCKER_CONFIG" > "{dir}/config-dir-mode"
stat -c '%a' "$DOCKER_CONFIG/config.json" > "{dir}/config-mode"
cat "$DOCKER_CONFIG/config.json" > "{dir}/config-content"
echo "$DOCKER_CONFIG" > "{dir}/config-path"
prev=""
for a in "$@"; do
  if [ "$prev" = "--metadata-file" ]; then
    printf '{{"containerimage.digest": "sha256:%064d"}}' 9 > "$a"
  fi
  prev="$a"
done
echo "#5 ERROR: failed to solve" >&2
exit {exit_code}
"##,
            dir = dir.display()
        );
        let path = dir.join("docker");
        std::fs::write(&path, script).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        path
    }

    fn request(dir: &Path) -> BuildRequest {
        let ctx = dir.join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
        let mut r = BuildRequest::new(&ctx, ctx.join("Dockerfile"), "registry.example.com/r:k");
        r.credentials.insert(
            "registry.example.com".into(),
            Credentials::basic("bob", "hunter22"),
        );
        r.timeout = Duration::from_secs(30);
        r
    }

    #[tokio::test]
    async fn credentials_reach_buildx_through_a_private_config_removed_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_docker(dir.path(), 0);
        let out = Buildx::new()
            .program(&fake)
            .build(&request(dir.path()))
            .await
            .unwrap();
        assert_eq!(out.digest.to_string(), format!("sha256:{:064}", 9));
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("config-dir-mode").trim(), "700");
        assert_eq!(read("config-mode").trim(), "600");
        let v: serde_json::Value = serde_json::from_str(&read("config-content")).unwrap();
        assert_eq!(
            v["auths"]["registry.example.com"]["auth"],
            "Ym9iOmh1bnRlcjIy"
        );
        assert!(!read("calls").contains("hunter22"));
        assert!(!Path::new(read("config-path").trim()).exists());
    }

    #[tokio::test]
    async fn a_failed_build_carries_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_docker(dir.path(), 1);
        let err = Buildx::new()
            .program(&fake)
            .build(&request(dir.path()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::BuildFailed { log_tail, status, .. }
                if log_tail.contains("failed to solve") && status.ends_with("exit status 1")),
            "{err}"
        );
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert!(!Path::new(read("config-path").trim()).exists());
    }
}
