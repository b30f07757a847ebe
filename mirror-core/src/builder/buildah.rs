//! [`Buildah`]: builds with `buildah` (no daemon, works unprivileged).
//!
//! One build runs these commands (see [`Buildah::commands`] for the exact argument vectors):
//!
//! ```text
//! buildah [--root R --runroot RR] --storage-driver vfs build --isolation chroot --layers
//!         --authfile AUTH [--tls-verify=false] [--cache-from CACHE] [--cache-to CACHE]
//!         (--tag LOCAL [--platform P] | --manifest LOCAL --platform P1,P2)
//!         [--target T] [--build-arg K=V]... --file DOCKERFILE CONTEXT
//! buildah … push --authfile AUTH [--tls-verify=false] --digestfile D LOCAL docker://REF
//!   or, for several platforms:
//! buildah … manifest push --all --authfile AUTH [--tls-verify=false] --digestfile D LOCAL docker://REF
//! buildah … rmi LOCAL | manifest rm LOCAL      (shared storage only; best effort)
//! ```
//!
//! `LOCAL` is a name unique to the build (`localhost/mirror-build-…`), so concurrent builds
//! never collide in local storage; the registry tag is written only by the final push, after
//! the build succeeded.
//!
//! # Caches and platforms
//!
//! `--cache-from`/`--cache-to` take a repository (buildah tags each cached layer with its
//! cache key there) and need `--layers`. Buildah 1.28 takes one `--cache-from`.
//!
//! Buildah before 1.41 does not check the platform of cache candidates
//! (containers/podman#18723, fixed by containers/buildah#6269): in a multi-platform build a
//! step whose inputs are the same on every platform (any step of a `FROM scratch` stage)
//! reuses the first platform's image for the others, and the pushed index silently lacks
//! platforms. Multi-platform builds therefore run without `--layers` and without the remote
//! cache unless [`Buildah::multi_platform_cache`] says the installed buildah is fixed.
//!
//! # Storage
//!
//! By default buildah uses its configured storage (`/var/lib/containers/storage` for root),
//! which keeps a local layer cache between builds. [`Buildah::ephemeral_storage`] gives every
//! build a fresh storage directory removed afterwards: nothing accumulates on the machine and
//! only the remote cache is reused, as on a fresh CI runner.
//!
//! # Registries without TLS
//!
//! Loopback registries (`127.0.0.1`, `localhost`, `[::1]`) speak plain HTTP, as everywhere in
//! this library: for them buildah gets `--tls-verify=false`. [`Buildah::tls_verify`] forces a
//! choice. The flag applies to every registry the build contacts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::process::Runner;
use super::workdir::WorkDir;
use super::{BuildOutput, BuildRequest, Builder, CommandLine};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::is_loopback_host;

static BUILD_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Time limit of removing the local image after a build.
const CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How to install buildah, for error messages.
pub const BUILDAH_SETUP: &str = "apt-get install -y buildah";

/// The buildah backend. Cheap to clone; configure with the builder-style methods.
#[derive(Debug, Clone)]
pub struct Buildah {
    program: PathBuf,
    storage_driver: Option<String>,
    isolation: Option<String>,
    root: Option<PathBuf>,
    runroot: Option<PathBuf>,
    ephemeral: bool,
    tls_verify: Option<bool>,
    multi_platform_cache: bool,
}

impl Default for Buildah {
    fn default() -> Self {
        Buildah {
            program: PathBuf::from("buildah"),
            storage_driver: Some("vfs".into()),
            isolation: Some("chroot".into()),
            root: None,
            runroot: None,
            ephemeral: false,
            tls_verify: None,
            multi_platform_cache: false,
        }
    }
}

/// The paths one build's commands refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildahPaths {
    /// The private auth file.
    pub authfile: PathBuf,
    /// Where `push` writes the pushed digest.
    pub digestfile: PathBuf,
    /// The local image (or manifest list) name.
    pub local_name: String,
    /// Storage root and run root for this build, overriding the configured ones (ephemeral
    /// storage).
    pub storage: Option<(PathBuf, PathBuf)>,
}

/// The commands of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildahCommands {
    /// Build, then push; run in order, each must succeed.
    pub run: Vec<CommandLine>,
    /// Removes the local image afterwards (best effort; absent with throw-away storage).
    pub cleanup: Option<CommandLine>,
}

impl Buildah {
    /// `buildah` from `PATH`, `--storage-driver vfs --isolation chroot`, the configured
    /// storage, TLS verification off for loopback registries only.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buildah binary (default `buildah`, looked up on `PATH`).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// The storage driver (`vfs` by default; `None` uses buildah's configured one).
    pub fn storage_driver(mut self, driver: Option<&str>) -> Self {
        self.storage_driver = driver.map(str::to_string);
        self
    }

    /// The isolation of `RUN` steps (`chroot` by default; `None` uses buildah's default).
    pub fn isolation(mut self, isolation: Option<&str>) -> Self {
        self.isolation = isolation.map(str::to_string);
        self
    }

    /// Storage root and run root (`--root`, `--runroot`) instead of buildah's configured
    /// ones.
    pub fn storage(mut self, root: impl Into<PathBuf>, runroot: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self.runroot = Some(runroot.into());
        self
    }

    /// Gives every build its own fresh storage, removed afterwards (see the module docs).
    pub fn ephemeral_storage(mut self, ephemeral: bool) -> Self {
        self.ephemeral = ephemeral;
        self
    }

    /// Forces TLS verification on (`true`) or off (`false`) for every registry; the default
    /// turns it off only when the target is a loopback registry.
    pub fn tls_verify(mut self, verify: bool) -> Self {
        self.tls_verify = Some(verify);
        self
    }

    /// Uses `--layers` and the remote cache for multi-platform builds too. Only for buildah
    /// 1.41 or later (see the module docs).
    pub fn multi_platform_cache(mut self, enabled: bool) -> Self {
        self.multi_platform_cache = enabled;
        self
    }

    fn global_args(&self, storage: Option<&(PathBuf, PathBuf)>) -> Vec<String> {
        let mut a = Vec::new();
        let roots = match storage {
            Some((r, rr)) => Some((r.as_path(), rr.as_path())),
            None => self.root.as_deref().zip(self.runroot.as_deref()),
        };
        if let Some((root, runroot)) = roots {
            a.push("--root".into());
            a.push(path_arg(root));
            a.push("--runroot".into());
            a.push(path_arg(runroot));
        }
        if let Some(d) = &self.storage_driver {
            a.push("--storage-driver".into());
            a.push(d.clone());
        }
        a
    }

    fn tls_args(&self, request: &BuildRequest) -> Vec<String> {
        let verify = self.tls_verify.unwrap_or_else(|| {
            !request
                .registry()
                .map(|r| is_loopback_host(&r))
                .unwrap_or(false)
        });
        if verify {
            Vec::new()
        } else {
            vec!["--tls-verify=false".into()]
        }
    }

    /// The exact commands of a build: a pure function of the configuration, the request and
    /// the paths, so that tests can assert the command line.
    ///
    /// Fails with [`Error::Config`] when the request asks for more than one `cache_from`
    /// (buildah takes one).
    pub fn commands(
        &self,
        request: &BuildRequest,
        paths: &BuildahPaths,
    ) -> Result<BuildahCommands> {
        if request.cache_from.len() > 1 {
            return Err(Error::config(
                "cache source",
                format!(
                    "buildah takes one --cache-from, {} were given",
                    request.cache_from.len()
                ),
            ));
        }
        let multi = request.platforms.len() > 1;
        let cached = !multi || self.multi_platform_cache;
        let global = self.global_args(paths.storage.as_ref());
        let tls = self.tls_args(request);
        let authfile = path_arg(&paths.authfile);
        let cmd = |args: Vec<String>| CommandLine {
            program: self.program.clone(),
            args: global.iter().cloned().chain(args).collect(),
            env: Vec::new(),
        };

        let mut build = vec!["build".to_string()];
        if let Some(i) = &self.isolation {
            build.push("--isolation".into());
            build.push(i.clone());
        }
        if cached {
            build.push("--layers".into());
        }
        build.push("--authfile".into());
        build.push(authfile.clone());
        build.extend(tls.iter().cloned());
        if cached {
            for c in &request.cache_from {
                build.push("--cache-from".into());
                build.push(c.clone());
            }
            if let Some(c) = &request.cache_to {
                build.push("--cache-to".into());
                build.push(c.clone());
            }
        }
        if multi {
            build.push("--manifest".into());
            build.push(paths.local_name.clone());
        } else {
            build.push("--tag".into());
            build.push(paths.local_name.clone());
        }
        if !request.platforms.is_empty() {
            build.push("--platform".into());
            build.push(request.platforms.join(","));
        }
        if let Some(t) = &request.target {
            build.push("--target".into());
            build.push(t.clone());
        }
        for (k, v) in &request.build_args {
            build.push("--build-arg".into());
            build.push(format!("{k}={v}"));
        }
        build.push("--file".into());
        build.push(path_arg(&request.dockerfile));
        build.push(path_arg(&request.context));

        let mut push: Vec<String> = if multi {
            vec!["manifest".into(), "push".into(), "--all".into()]
        } else {
            vec!["push".into()]
        };
        push.push("--authfile".into());
        push.push(authfile);
        push.extend(tls);
        push.push("--digestfile".into());
        push.push(path_arg(&paths.digestfile));
        push.push(paths.local_name.clone());
        push.push(format!("docker://{}", request.reference));

        let cleanup = paths.storage.is_none().then(|| {
            if multi {
                cmd(vec![
                    "manifest".into(),
                    "rm".into(),
                    paths.local_name.clone(),
                ])
            } else {
                cmd(vec!["rmi".into(), paths.local_name.clone()])
            }
        });
        Ok(BuildahCommands {
            run: vec![cmd(build), cmd(push)],
            cleanup,
        })
    }
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A local image name unique to this build.
fn local_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "localhost/mirror-build-{}-{}-{}:latest",
        std::process::id(),
        nanos,
        BUILD_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Reads the digest a push wrote.
pub(crate) fn read_digest(path: &Path, runner: &Runner<'_>) -> Result<Digest> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| runner.failure(format!("the push wrote no digest ({e})")))?;
    Digest::parse(text.trim())
        .map_err(|e| runner.failure(format!("the push wrote an invalid digest: {e}")))
}

#[async_trait]
impl Builder for Buildah {
    fn name(&self) -> &str {
        "buildah"
    }

    async fn build(&self, request: &BuildRequest) -> Result<BuildOutput> {
        request.validate()?;
        let mut work = WorkDir::create("mirror-buildah")?;
        let authfile = work.write_auth("auth.json", &request.credentials)?;
        let storage = self
            .ephemeral
            .then(|| (work.path().join("root"), work.path().join("runroot")));
        let paths = BuildahPaths {
            authfile,
            digestfile: work.path().join("digest"),
            local_name: local_name(),
            storage,
        };
        let commands = self.commands(request, &paths)?;
        let mut runner = Runner::new(request);
        let mut result = Ok(());
        for c in &commands.run {
            result = runner.run(c).await;
            if result.is_err() {
                break;
            }
        }
        work.remove_auth_files();
        let digest = result.and_then(|()| read_digest(&paths.digestfile, &runner));
        if let Some(c) = &commands.cleanup {
            let mut cleanup = Runner::with_timeout(request, CLEANUP_TIMEOUT);
            if let Err(e) = cleanup.run(c).await {
                tracing::debug!(error = %e, "could not remove the local build image");
            }
        }
        work.remove().await;
        Ok(BuildOutput {
            reference: request.reference.clone(),
            digest: digest?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::builder::BuildEvent;
    use crate::store::http::credentials::Credentials;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn request(reference: &str) -> BuildRequest {
        let mut r = BuildRequest::new("/src/app", "/src/app/Dockerfile", reference);
        r.cache_from = vec!["registry.example.com/c/builds/api/cache-1234".into()];
        r.cache_to = Some("registry.example.com/c/builds/api/cache-1234".into());
        r
    }

    fn paths() -> BuildahPaths {
        BuildahPaths {
            authfile: "/tmp/w/auth.json".into(),
            digestfile: "/tmp/w/digest".into(),
            local_name: "localhost/mirror-build-1:latest".into(),
            storage: None,
        }
    }

    #[test]
    fn single_platform_command_lines() {
        let mut r = request("registry.example.com/c/builds/api:abc-123");
        r.target = Some("runtime".into());
        r.build_args = BTreeMap::from([
            ("VERSION".to_string(), "1.2".to_string()),
            ("A".to_string(), "x y".to_string()),
        ]);
        r.platforms = vec!["linux/arm64".into()];
        let c = Buildah::new().commands(&r, &paths()).unwrap();
        assert_eq!(c.run.len(), 2);
        assert_eq!(c.run[0].program, PathBuf::from("buildah"));
        assert_eq!(
            c.run[0].args,
            strings(&[
                "--storage-driver",
                "vfs",
                "build",
                "--isolation",
                "chroot",
                "--layers",
                "--authfile",
                "/tmp/w/auth.json",
                "--cache-from",
                "registry.example.com/c/builds/api/cache-1234",
                "--cache-to",
                "registry.example.com/c/builds/api/cache-1234",
                "--tag",
                "localhost/mirror-build-1:latest",
                "--platform",
                "linux/arm64",
                "--target",
                "runtime",
                "--build-arg",
                "A=x y",
                "--build-arg",
                "VERSION=1.2",
                "--file",
                "/src/app/Dockerfile",
                "/src/app",
            ])
        );
        assert_eq!(
            c.run[1].args,
            strings(&[
                "--storage-driver",
                "vfs",
                "push",
                "--authfile",
                "/tmp/w/auth.json",
                "--digestfile",
                "/tmp/w/digest",
                "localhost/mirror-build-1:latest",
                "docker://registry.example.com/c/builds/api:abc-123",
            ])
        );
        assert_eq!(
            c.cleanup.unwrap().args,
            strings(&[
                "--storage-driver",
                "vfs",
                "rmi",
                "localhost/mirror-build-1:latest"
            ])
        );
        assert!(c.run.iter().all(|c| c.env.is_empty()));
    }

    #[test]
    fn multi_platform_builds_a_manifest_list_without_the_cross_platform_cache() {
        let mut r = request("127.0.0.1:5000/c/builds/api:k");
        r.platforms = vec!["linux/amd64".into(), "linux/arm64".into()];
        let mut p = paths();
        p.storage = Some(("/tmp/w/root".into(), "/tmp/w/runroot".into()));
        let c = Buildah::new().commands(&r, &p).unwrap();
        let global = [
            "--root",
            "/tmp/w/root",
            "--runroot",
            "/tmp/w/runroot",
            "--storage-driver",
            "vfs",
        ];
        let mut build = strings(&global);
        build.extend(strings(&[
            "build",
            "--isolation",
            "chroot",
            "--authfile",
            "/tmp/w/auth.json",
            "--tls-verify=false",
            "--manifest",
            "localhost/mirror-build-1:latest",
            "--platform",
            "linux/amd64,linux/arm64",
            "--file",
            "/src/app/Dockerfile",
            "/src/app",
        ]));
        assert_eq!(c.run[0].args, build);
        let mut push = strings(&global);
        push.extend(strings(&[
            "manifest",
            "push",
            "--all",
            "--authfile",
            "/tmp/w/auth.json",
            "--tls-verify=false",
            "--digestfile",
            "/tmp/w/digest",
            "localhost/mirror-build-1:latest",
            "docker://127.0.0.1:5000/c/builds/api:k",
        ]));
        assert_eq!(c.run[1].args, push);
        assert_eq!(c.cleanup, None, "throw-away storage needs no cleanup");

        // With a buildah that checks cache platforms, the cache is used.
        let c = Buildah::new()
            .multi_platform_cache(true)
            .commands(&r, &p)
            .unwrap();
        assert!(c.run[0].args.contains(&"--layers".to_string()));
        assert!(c.run[0].args.contains(&"--cache-to".to_string()));
    }

    #[test]
    fn configuration_changes_the_command_line() {
        let r = request("registry.example.com/c/builds/api:k");
        let b = Buildah::new()
            .program("/opt/bin/buildah")
            .storage_driver(Some("overlay"))
            .isolation(None)
            .storage("/var/b/root", "/run/b")
            .tls_verify(false);
        let c = b.commands(&r, &paths()).unwrap();
        assert_eq!(c.run[0].program, PathBuf::from("/opt/bin/buildah"));
        assert_eq!(
            c.run[0].args[..9],
            strings(&[
                "--root",
                "/var/b/root",
                "--runroot",
                "/run/b",
                "--storage-driver",
                "overlay",
                "build",
                "--layers",
                "--authfile",
            ])[..]
        );
        assert!(c.run[0].args.contains(&"--tls-verify=false".to_string()));

        let mut two = r.clone();
        two.cache_from.push("registry.example.com/other".into());
        assert!(matches!(
            b.commands(&two, &paths()),
            Err(Error::Config { .. })
        ));

        let mut none = r;
        none.cache_from.clear();
        none.cache_to = None;
        let c = Buildah::new().commands(&none, &paths()).unwrap();
        assert!(!c.run[0].args.iter().any(|a| a.starts_with("--cache")));
    }

    /// A fake `buildah` that records its arguments, the auth file's mode and content, and
    /// writes a digest file as `push` does.
    fn fake_buildah(dir: &Path, exit_code: i32) -> PathBuf {
        let script = format!(
            r#"#!/bin/sh
log="{dir}/calls"
echo "$*" >> "$log"
prev=""
for a in "$@"; do
  if [ "$prev" = "--authfile" ]; then
    stat -c '%a' "$a" >> "{dir}/auth-modes"
    echo "$a" >> "{dir}/auth-paths"
    cat "$a" > "{dir}/auth-content"
  fi
  if [ "$prev" = "--digestfile" ]; then
    printf 'sha256:%064d\n' 7 > "$a"
  fi
  prev="$a"
done
echo "STEP 1/1: FROM scratch"
echo "some error text" >&2
exit {exit_code}
"#,
            dir = dir.display()
        );
        let path = dir.join("buildah");
        std::fs::write(&path, script).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        path
    }

    fn context(dir: &Path) -> BuildRequest {
        let ctx = dir.join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
        let mut r = BuildRequest::new(&ctx, ctx.join("Dockerfile"), "127.0.0.1:5000/c/b/api:k1");
        r.credentials.insert(
            "127.0.0.1:5000".into(),
            Credentials::basic("alice", "s3cret-pw"),
        );
        r.timeout = Duration::from_secs(30);
        r
    }

    #[tokio::test]
    async fn credentials_go_through_a_private_auth_file_removed_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_buildah(dir.path(), 0);
        let mut r = context(dir.path());
        let events = Arc::new(Mutex::new(Vec::new()));
        let e = events.clone();
        r.events = Some(Arc::new(move |ev: &BuildEvent| {
            e.lock().unwrap().push(ev.clone())
        }));
        let out = Buildah::new().program(&fake).build(&r).await.unwrap();
        assert_eq!(out.digest.to_string(), format!("sha256:{:064}", 7));
        assert_eq!(out.reference, "127.0.0.1:5000/c/b/api:k1");

        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(lines.len(), 3, "build, push, rmi: {calls}");
        assert!(lines[0].contains(" build ") && lines[1].contains(" push "));
        assert!(
            !calls.contains("s3cret-pw") && !calls.contains("alice"),
            "{calls}"
        );
        let modes = std::fs::read_to_string(dir.path().join("auth-modes")).unwrap();
        assert_eq!(modes.lines().collect::<Vec<_>>(), ["600", "600"]);
        let content = std::fs::read_to_string(dir.path().join("auth-content")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&content).unwrap();
        assert_eq!(
            v["auths"]["127.0.0.1:5000"]["auth"],
            "YWxpY2U6czNjcmV0LXB3" // alice:s3cret-pw
        );
        for p in std::fs::read_to_string(dir.path().join("auth-paths"))
            .unwrap()
            .lines()
        {
            let p = Path::new(p);
            assert!(!p.exists(), "auth file {} left behind", p.display());
            assert!(!p.parent().unwrap().exists(), "work dir left behind");
        }
        let shown = format!("{:?}", events.lock().unwrap());
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("STEP 1/1"), "{shown}");
    }

    #[tokio::test]
    async fn a_failed_build_carries_the_log_tail_and_removes_the_auth_file() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_buildah(dir.path(), 2);
        let r = context(dir.path());
        let err = Buildah::new()
            .program(&fake)
            .ephemeral_storage(true)
            .build(&r)
            .await
            .unwrap_err();
        match &err {
            Error::BuildFailed {
                reference,
                status,
                log_tail,
            } => {
                assert_eq!(reference, "127.0.0.1:5000/c/b/api:k1");
                assert!(status.ends_with("exit status 2"), "{status}");
                assert!(log_tail.contains("some error text"), "{log_tail}");
            }
            e => panic!("{e}"),
        }
        assert!(!err.to_string().contains("s3cret-pw"));
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(
            calls.lines().count(),
            1,
            "no push after a failed build: {calls}"
        );
        assert!(calls.contains("--root "), "ephemeral storage: {calls}");
        let auth = std::fs::read_to_string(dir.path().join("auth-paths")).unwrap();
        let auth = Path::new(auth.trim());
        assert!(!auth.exists() && !auth.parent().unwrap().exists());
    }

    #[tokio::test]
    async fn a_missing_buildah_fails_with_the_setup_hint_in_reach() {
        let dir = tempfile::tempdir().unwrap();
        let r = context(dir.path());
        let err = Buildah::new()
            .program("/nonexistent/buildah")
            .build(&r)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::BuildFailed { status, .. } if status.contains("cannot start")),
            "{err}"
        );
    }
}
