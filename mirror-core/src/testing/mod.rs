//! Test harness (feature `testing`): real registries, a token server, image fixtures and a
//! fault-injecting fake registry. The image fixtures alone ([`TestImage`], [`TestIndex`]) are
//! feature `fixtures`, which the quickstart uses: it needs no server.
//!
//! - [`TestRegistry`] spawns the CNCF distribution registry (Debian package `docker-registry`)
//!   on `127.0.0.1` with an ephemeral port and a temporary directory: plain, with htpasswd
//!   basic auth, or with bearer token auth served by an in-process [`TokenServer`].
//! - [`TestImage`] and [`TestIndex`] build deterministic images (real gzip'd tar layers, OCI
//!   or Docker v2 schema 2 manifests, multi-platform indexes) without network, push them to
//!   any [`ImageStore`](crate::ImageStore) or write them into an OCI layout directory.
//! - [`FakeRegistry`] serves one fixture through the distribution read API and can corrupt a
//!   chosen blob on the wire.
//! - [`providers`]: provider scenarios (anchors under a native retention document, the
//!   provider's registries as sources) every provider crate instantiates with
//!   [`provider_suite!`](crate::provider_suite).
//! - [`control_plane`]: the kit the provider crates' emulators are built on (a fake's
//!   server, call ledger and faults, paging, a data-plane proxy with the provider's rules,
//!   long-running operations, an OAuth JWT-bearer token endpoint).
//! - [`FaultProxy`] sits in front of a real registry and injects faults: error statuses,
//!   delays, dropped connections, truncated or corrupted bodies, expired tokens; with
//!   [`FaultProxy::with_referrers_api`] it also serves the OCI 1.1 referrers API that the
//!   packaged registry lacks.
//!
//! Missing tools are never skipped silently: [`require_tool`] panics with the command that
//! installs them. Constructors of this harness panic with a clear message when the
//! environment is broken (a test cannot go on anyway); every process and server they start
//! is stopped when its handle is dropped.
//!
//! ```no_run
//! # async fn demo() -> mirror_core::Result<()> {
//! use mirror_core::testing::{TestImage, TestRegistry};
//! let registry = TestRegistry::with_token_auth("alice", "s3cret");
//! let image = TestImage::builder().seed(7).layer(4096).build();
//! println!("push {} to {}", image.digest(), registry.host());
//! # Ok(()) }
//! ```

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod control_plane;
#[cfg(feature = "testing")]
mod fake;
mod fixtures;
#[cfg(feature = "testing")]
pub mod providers;
#[cfg(feature = "testing")]
mod proxy;
#[cfg(feature = "testing")]
mod referrers_api;
#[cfg(feature = "testing")]
mod registry;
#[cfg(feature = "testing")]
mod server;
#[cfg(feature = "testing")]
mod token;

#[cfg(all(test, feature = "testing"))]
mod tests;

use std::path::{Path, PathBuf};

#[cfg(feature = "testing")]
pub use fake::FakeRegistry;
pub use fixtures::{
    Fixture, LayerCompression, ManifestFormat, TestArtifact, TestArtifactBuilder, TestBlob,
    TestImage, TestImageBuilder, TestIndex, COSIGN_SIMPLESIGNING,
};
#[cfg(feature = "testing")]
pub use proxy::{Fault, FaultProxy, Rule};
#[cfg(feature = "testing")]
pub use registry::{TestRegistry, TestRegistryBuilder};
#[cfg(feature = "testing")]
pub use token::{TokenOutcome, TokenRequest, TokenServer, TokenStats};

/// Finds `binary` (a name looked up on `PATH` and the usual system directories, or a path)
/// and returns its full path.
///
/// # Panics
///
/// When the tool is not installed, with a message naming `setup_command` (for example
/// `apt-get install -y skopeo`). Tests that need a tool fail rather than skip silently.
pub fn require_tool(binary: &str, setup_command: &str) -> PathBuf {
    match find_tool(binary) {
        Some(path) => path,
        None => panic!(
            "required tool `{binary}` was not found on PATH (nor in /usr/local/bin, /usr/bin, \
             /usr/sbin, /bin, /sbin); install it with: {setup_command}"
        ),
    }
}

/// Like [`require_tool`] but returns `None` instead of panicking.
pub fn find_tool(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        let p = Path::new(binary);
        return is_executable(p).then(|| p.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter()
        .map(|d| d.join(binary))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Builds an example binary of this workspace (`cargo build -p PACKAGE --example NAME`, a
/// no-op when it is fresh) and returns the path of its executable, for tests that run a CLI
/// the way a person does.
///
/// `workspace_root` is the directory holding the workspace `Cargo.toml` (from a crate of the
/// workspace: `Path::new(env!("CARGO_MANIFEST_DIR")).parent()`).
///
/// # Panics
///
/// If cargo cannot be run, the build fails (its output is in the message), or cargo reports
/// no executable.
pub fn build_example(workspace_root: &Path, package: &str, example: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(&cargo)
        .current_dir(workspace_root)
        .args([
            "build",
            "-p",
            package,
            "--example",
            example,
            "--message-format=json",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} --example {example} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == example)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for the {example} example"))
}
