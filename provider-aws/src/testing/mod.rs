//! Test infrastructure (feature `testing`, not product code): an ECR emulator built from `moto_server` for the
//! control plane and the real CNCF distribution registry for the data plane, kept consistent
//! by two in-process HTTP proxies.
//!
//! ```text
//!  Ecr (SDK) ──► control proxy ──► moto_server            (ECR API: repositories, images…)
//!                   │ BatchDeleteImage ok ──► DELETE manifest in the registry
//!  Ecr (data) ──► data proxy ──► docker-registry           (blobs, uploads, mounts: real)
//!                   │ manifest PUT ok ──► moto PutImage (with imageDigest = the real digest)
//! ```
//!
//! Why: moto's ECR keeps images in memory and knows nothing of a data plane, and the registry
//! knows nothing of moto. Real ECR is one service; the proxies make the pair behave like one:
//!
//! - **data proxy**: requires basic auth `AWS:<token password>` (the password moto's
//!   `GetAuthorizationToken` hands out) and answers `401` with a `Basic` challenge otherwise,
//!   as ECR does; refuses writes to repositories moto does not know (`404 NAME_UNKNOWN`, as
//!   ECR does for repositories never created); forwards everything else to the registry
//!   (streaming bodies, `Location` headers rewritten to point back at the proxy); after every
//!   successful manifest `PUT` it calls moto's `PutImage` with the manifest, its media type,
//!   the tag (for pushes by tag) and `imageDigest` (so moto uses the real digest, not its own
//!   computation). It counts mount attempts and can decline them with the `202` ECR sends
//!   when blob mounting is disabled.
//! - **control proxy**: forwards every ECR API call to moto, counts calls per operation,
//!   injects canned error answers on request, and after a successful `BatchDeleteImage`
//!   deletes the deleted manifests from the registry (for a deletion by tag, only when moto no
//!   longer has the image: removing one of several tags leaves it).
//!
//! Known differences from ECR that the emulator does not hide: moto deletes an image whose
//! only tag is moved to another image (ECR leaves it untagged), and moto's `imageSizeInBytes`
//! is not the sum of the layers.
//!
//! Constructors panic with a clear message when the environment is broken (a test cannot go
//! on anyway); every process and server they start stops when its handle is dropped.

mod emulator;
mod proxy;

pub use emulator::EcrEmulator;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// moto's default account.
pub const ACCOUNT: &str = "123456789012";
/// The region the tests use.
pub const REGION: &str = "us-east-1";
/// The pinned moto version (keep in step with scripts/moto.sh).
pub const MOTO_PIP: &str = "moto==5.2.5 flask==3.1.3 flask-cors==6.0.5 boto3==1.44.8";

const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const FAKE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDMIRRORTEST/20240101/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Finds `moto_server`: `$MOTO_SERVER`, else `.venv-moto/bin/moto_server` at the workspace
/// root, else `PATH`. Panics with the setup command when it is missing.
pub fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "MOTO_SERVER={} does not exist; run scripts/moto.sh (or scripts/test.sh), or: python3 -m venv .venv-moto && .venv-moto/bin/pip install {MOTO_PIP}",
            p.display()
        );
        return p;
    }
    let venv = workspace_root().join(".venv-moto/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    mirror_core::testing::find_tool("moto_server").unwrap_or_else(|| {
        panic!(
            "moto_server (PyPI `moto`) was not found: set MOTO_SERVER, or run scripts/moto.sh \
             or scripts/test.sh (they create .venv-moto), or: python3 -m venv .venv-moto && \
             .venv-moto/bin/pip install {MOTO_PIP}"
        )
    })
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// A `moto_server` process on 127.0.0.1 with an ephemeral port, killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto and waits until it answers (panics after 60 s, with its log).
    pub async fn start() -> Moto {
        let bin = moto_binary();
        let dir = tempfile::tempdir().expect("temp dir for the moto log");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = dir.path().join(format!("moto-{port}.log"));
            let file = std::fs::File::create(&log).expect("create the moto log");
            let err = file.try_clone().expect("clone the moto log handle");
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "moto_server exited with {status}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                let up = http
                    .get(format!("http://127.0.0.1:{port}/moto-api/"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok();
                if up {
                    return Moto {
                        child,
                        port,
                        log,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "moto_server did not answer on port {port} within 60 s: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("moto_server would not start: {last}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls an ECR operation on moto directly (no proxy, not counted).
pub async fn moto_call(http: &reqwest::Client, moto: &str, op: &str, body: &Value) -> (u16, Value) {
    let resp = http
        .post(format!("{moto}/"))
        .header("x-amz-target", format!("{TARGET_PREFIX}{op}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", FAKE_AUTH)
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto {op}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
