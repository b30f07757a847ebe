//! Building images from source: the [`Builder`] trait and its command backends.
//!
//! - [`Buildah`] runs `buildah` (rootless-friendly, no daemon; `--storage-driver vfs
//!   --isolation chroot` by default so that it works in an unprivileged container);
//! - [`Buildx`] runs `docker buildx build` (BuildKit);
//! - [`dockerfile`] finds the build arguments a Dockerfile declares, so that only those take
//!   part in a build and its key.
//!
//! A builder builds a [`BuildRequest`] (context, Dockerfile, target stage, platforms, build
//! args, cache references) and pushes the result to [`BuildRequest::reference`]. Deployers
//! rarely call a builder directly: [`Mirror::build`](crate::Mirror::build) computes the build
//! key, skips builds that already happened, names the cache and the target, and calls the
//! builder only when needed.
//!
//! # Credentials
//!
//! Registry credentials ([`BuildRequest::credentials`]) reach the builder process through a
//! private temporary auth file (mode `0600` in a `0700` directory) that is removed when the
//! build ends, fails, times out or is cancelled. They never appear on a command line, in
//! the environment, in events or in errors, and the user's own docker or containers config is
//! neither read nor changed.
//!
//! # Processes
//!
//! Builder processes run in their own process group. Dropping the future of
//! [`Builder::build`] (cancellation) or reaching [`BuildRequest::timeout`] kills the whole
//! group, so that no build step outlives the call. Every output line of the process is sent
//! to [`BuildRequest::events`] as it arrives; the last lines are kept for the error of a
//! failed build ([`Error::BuildFailed`]).

pub mod buildah;
pub mod buildx;
pub mod dockerfile;
mod process;
mod workdir;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::http::credentials::Credentials;

pub use buildah::Buildah;
pub use buildx::Buildx;

/// Default limit of one build ([`BuildRequest::timeout`]).
pub(crate) const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(3600);

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A progress event of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BuildEvent {
    /// A builder process starts. Build-arg values are shown as `***`.
    Command {
        /// The command line, for people.
        command: String,
    },
    /// One line of the builder's output.
    Log {
        /// Where it came from.
        stream: LogStream,
        /// The line, without its line ending (invalid UTF-8 replaced).
        line: String,
    },
}

/// Receives build events. Must be cheap and must not block: it is called on the task that
/// reads the builder's output.
pub type BuildEventSink = Arc<dyn Fn(&BuildEvent) + Send + Sync>;

/// One build: what to build, where to push it, which caches to use.
///
/// `Debug` shows build-arg names and credential hosts, never their values.
#[derive(Clone)]
pub struct BuildRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (absolute, or relative to the current directory).
    pub dockerfile: PathBuf,
    /// Where to push the image: `host/repository:tag`.
    pub reference: String,
    /// Remote caches to import from: repository references `host/repository` (backends that
    /// keep a cache under one tag add it; a reference with a tag is used as given).
    pub cache_from: Vec<String>,
    /// The remote cache to export to (same form as `cache_from`).
    pub cache_to: Option<String>,
    /// Target platforms `os/arch[/variant]`; empty builds for the builder's own platform. Two
    /// or more push an index.
    pub platforms: Vec<String>,
    /// Build args (`--build-arg NAME=value`).
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (`--target`); `None` builds the last one.
    pub target: Option<String>,
    /// Credentials per registry host, written to the private auth file.
    pub credentials: BTreeMap<String, Credentials>,
    /// The build is killed and fails after this long.
    pub timeout: Duration,
    /// Receives the build's events.
    pub events: Option<BuildEventSink>,
}

impl BuildRequest {
    /// A request to build `context` with `dockerfile` and push it to `reference`, without
    /// cache, args or credentials, with the default timeout.
    pub fn new(
        context: impl Into<PathBuf>,
        dockerfile: impl Into<PathBuf>,
        reference: impl Into<String>,
    ) -> Self {
        BuildRequest {
            context: context.into(),
            dockerfile: dockerfile.into(),
            reference: reference.into(),
            cache_from: Vec::new(),
            cache_to: None,
            platforms: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            credentials: BTreeMap::new(),
            timeout: DEFAULT_BUILD_TIMEOUT,
            events: None,
        }
    }

    /// The registry host of [`reference`](Self::reference).
    pub fn registry(&self) -> Result<String> {
        Ok(crate::reference::Reference::parse(&self.reference)?
            .registry()
            .to_string())
    }

    /// Checks what every backend needs: a parsable tagged reference, an existing context
    /// directory and Dockerfile, platforms of the form `os/arch[/variant]`, valid build-arg
    /// names, a non-zero timeout.
    pub fn validate(&self) -> Result<()> {
        let r = crate::reference::Reference::parse(&self.reference)?;
        if r.digest().is_some()
            || !self
                .reference
                .ends_with(&format!(":{}", r.tag().unwrap_or("")))
        {
            return Err(Error::config(
                "build reference",
                format!("{} must be host/repository:tag", self.reference),
            ));
        }
        if !self.context.is_dir() {
            return Err(Error::config(
                "build context",
                format!("{} is not a directory", self.context.display()),
            ));
        }
        if !self.dockerfile.is_file() {
            return Err(Error::config(
                "Dockerfile",
                format!("{} does not exist", self.dockerfile.display()),
            ));
        }
        for p in &self.platforms {
            crate::media::PlatformFilter::parse(p)?;
            if p.contains(',') {
                return Err(Error::config("platform", format!("{p:?} holds a comma")));
            }
        }
        for name in self.build_args.keys() {
            if name.is_empty()
                || name
                    .chars()
                    .any(|c| c == '=' || c.is_whitespace() || c.is_control())
            {
                return Err(Error::config("build arg", format!("name {name:?}")));
            }
        }
        if let Some(t) = &self.target {
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::config(
                    "target stage",
                    format!("invalid target stage {t:?}"),
                ));
            }
        }
        for c in self.cache_from.iter().chain(&self.cache_to) {
            if c.is_empty() || c.contains(',') || c.chars().any(char::is_whitespace) {
                return Err(Error::config(
                    "cache reference",
                    format!("invalid cache reference {c:?}"),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err(Error::config("build timeout", "is zero"));
        }
        Ok(())
    }

    pub(crate) fn emit(&self, event: BuildEvent) {
        if let Some(sink) = &self.events {
            sink(&event);
        }
    }
}

impl fmt::Debug for BuildRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildRequest")
            .field("context", &self.context)
            .field("dockerfile", &self.dockerfile)
            .field("reference", &self.reference)
            .field("cache_from", &self.cache_from)
            .field("cache_to", &self.cache_to)
            .field("platforms", &self.platforms)
            .field("build_args", &self.build_args.keys().collect::<Vec<_>>())
            .field("target", &self.target)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("events", &self.events.is_some())
            .finish()
    }
}

/// What a successful build pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildOutput {
    /// The reference pushed (the request's).
    pub reference: String,
    /// The digest of the pushed manifest (an index for several platforms).
    pub digest: Digest,
}

/// One program invocation, as a backend plans it: the exact argument vector and the extra
/// environment. Backends expose pure functions that return these, so that tests can assert
/// the exact command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The program.
    pub program: PathBuf,
    /// The arguments, in order.
    pub args: Vec<String>,
    /// Environment variables set for this process (added to the inherited environment).
    pub env: Vec<(String, String)>,
}

impl CommandLine {
    /// The command line for people: build-arg values replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut out = self.program.display().to_string();
        let mut hide_next = false;
        for a in &self.args {
            out.push(' ');
            if hide_next {
                match a.split_once('=') {
                    Some((k, _)) => out.push_str(&format!("{k}=***")),
                    None => out.push_str("***"),
                }
                hide_next = false;
                continue;
            }
            hide_next = a == "--build-arg";
            out.push_str(a);
        }
        out
    }
}

/// Builds a context into an image and pushes it to a registry.
///
/// # Contract
///
/// - `build` pushes the image of `request` to [`BuildRequest::reference`] and returns the
///   digest of the manifest (an index when two or more platforms were asked for) that now
///   sits at that reference. It imports layers from `cache_from` and exports them to
///   `cache_to`; a cache that does not exist yet is not an error.
/// - Nothing is tagged at the reference unless the build succeeded: the tag is written last,
///   by the push of the finished image.
/// - A failed build returns [`Error::BuildFailed`] carrying the
///   tail of the build log; invalid requests return [`Error::Config`].
/// - The builder honours [`BuildRequest::timeout`]; dropping the returned future cancels the
///   build and kills every process it started.
/// - Credentials reach the builder only through private temporary files removed before
///   `build` returns (or when its future is dropped), never through a command line or a
///   shared configuration.
/// - Several builds may run concurrently on one builder.
#[async_trait]
pub trait Builder: Send + Sync + fmt::Debug {
    /// The backend's name (`buildah`, `buildx`). It is part of build keys: images built by
    /// different backends are different images.
    fn name(&self) -> &str;

    /// Builds and pushes; see the trait documentation.
    async fn build(&self, request: &BuildRequest) -> Result<BuildOutput>;
}

/// The build args BuildKit and Buildah set from the platforms (`TARGETARCH`…). They follow
/// [`BuildRequest::platforms`] and are never taken from the environment: an inherited
/// `TARGETARCH` would make every platform of a multi-platform build the same.
pub(crate) const AUTOMATIC_PLATFORM_ARGS: [&str; 8] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// True when a cache reference already names a tag (`host/repo:tag`) or digest.
pub(crate) fn has_tag_or_digest(reference: &str) -> bool {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    reference.contains('@') || (reference.contains('/') && last.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_build_arg_values_and_credentials() {
        let mut r = BuildRequest::new("/ctx", "/ctx/Dockerfile", "h:5000/r:t");
        r.build_args.insert("TOKEN".into(), "hunter2".into());
        r.credentials
            .insert("h:5000".into(), Credentials::basic("u", "p4ssw0rd"));
        let shown = format!("{r:?}");
        assert!(
            shown.contains("TOKEN") && shown.contains("h:5000"),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("p4ssw0rd"),
            "{shown}"
        );
    }

    #[test]
    fn redacted_command_lines_hide_build_arg_values() {
        let c = CommandLine {
            program: "/usr/bin/buildah".into(),
            args: [
                "build",
                "--build-arg",
                "A=secret",
                "--build-arg",
                "B",
                "ctx",
            ]
            .map(String::from)
            .to_vec(),
            env: Vec::new(),
        };
        assert_eq!(
            c.redacted(),
            "/usr/bin/buildah build --build-arg A=*** --build-arg *** ctx"
        );
    }

    #[test]
    fn tags_are_told_apart_from_ports() {
        assert!(!has_tag_or_digest("127.0.0.1:5000/c/cache"));
        assert!(has_tag_or_digest("127.0.0.1:5000/c/cache:buildcache"));
        assert!(has_tag_or_digest("h/c@sha256:00"));
    }

    #[test]
    fn requests_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let df = dir.path().join("Dockerfile");
        std::fs::write(&df, "FROM scratch\n").unwrap();
        let ok = BuildRequest::new(dir.path(), &df, "127.0.0.1:5000/c/builds/api:k1");
        ok.validate().unwrap();
        assert_eq!(ok.registry().unwrap(), "127.0.0.1:5000");
        let cases: [fn(&mut BuildRequest); 9] = [
            |r| r.reference = "127.0.0.1:5000/c/builds/api".into(),
            |r| r.context = "/nonexistent/ctx".into(),
            |r| r.dockerfile = "/nonexistent/Dockerfile".into(),
            |r| r.platforms = vec!["linux".into()],
            |r| r.platforms = vec!["linux/amd64,linux/arm64".into()],
            |r| {
                r.build_args.insert("A B".into(), "1".into());
            },
            |r| r.target = Some("a b".into()),
            |r| r.cache_to = Some("h/c,mode=min".into()),
            |r| r.timeout = Duration::ZERO,
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut r = ok.clone();
            change(&mut r);
            assert!(
                matches!(
                    r.validate(),
                    Err(Error::Config { .. }) | Err(Error::InvalidReference { .. })
                ),
                "case {i}: {r:?}"
            );
        }
    }
}
