//! Test infrastructure (feature `testing`, not product code): an Artifact Registry emulator made of an in-process
//! fake of the REST API and of Google's OAuth token endpoint, and the real CNCF distribution
//! registry behind an in-process data-plane proxy.
//!
//! ```text
//!  ArtifactRegistry (REST) ──► fake Google ──  /token                  OAuth (JWT bearer grant)
//!                               │            /v1/…/repositories         create (LRO), get, patch, list
//!                               │            /v1/…/operations/OP        pending → done
//!                               │            /v1/…/dockerImages         reads the registry (below)
//!                               │            /v1/…/packages/P/versions/V  DELETE by digest (LRO)
//!  ArtifactRegistry (data) ──► data proxy ──► docker-registry            (blobs, uploads, mounts: real)
//!                               │ /v2/token: oauth2accesstoken + access token → registry token
//!                               │ manifest PUT ok → upload time recorded by the fake
//! ```
//!
//! Written from the public API reference, not from the code under test:
//!
//! - **OAuth**: `POST /token` takes the JWT-bearer grant `gcp_auth` sends, checks the RS256
//!   signature against the test key's public half, the issuer (the key's `client_email`), the
//!   audience (the token URI) and the scope, and hands out `ya29.fake-N` tokens with a
//!   configurable lifetime. The REST API and the data proxy accept only tokens it issued and
//!   that have not expired, so a client that does not refresh in time fails.
//! - **REST**: `repositories.create` validates the repository id (lowercase letters, digits,
//!   hyphens; a letter first; a letter or digit last; at most 63) and the cleanup policies, and
//!   answers an operation that stays pending for a configurable number of polls; the repository
//!   becomes visible only when the operation completes (a second create meanwhile is
//!   `ALREADY_EXISTS`, a get is `NOT_FOUND`). `repositories.patch` applies exactly the fields
//!   of `updateMask`. Listings paginate with a small page size (2 by default) and `pageToken`.
//!   Errors use the Google JSON error format; any method can be made to fail with a chosen
//!   status (403, 404, 409, 429…) for a number of calls.
//! - **dockerImages.list** reads the real registry over HTTP: the catalog finds the packages
//!   of the repository (`<project>/<repo>/<package>`), tag lists and manifests give digests,
//!   tags, media types and sizes, the children of indexes are listed as untagged versions (as
//!   Artifact Registry lists them), and versions pushed by digest are remembered from the data
//!   proxy. `uploadTime` is the time the proxy saw the manifest `PUT` (or the time the fake
//!   first saw the version, for content pushed to the registry directly).
//! - **versions.delete** checks the version exists (`NOT_FOUND`) and is untagged unless
//!   `force=true` (`FAILED_PRECONDITION`), and when its operation completes deletes the
//!   manifest from the registry by digest (which drops its tags). Deleting a whole package is
//!   answered but recorded as a violation, which tests assert never happens.
//! - **data proxy**: answers `401` with a `Bearer realm=".../v2/token"` challenge like
//!   Artifact Registry, exchanges `oauth2accesstoken:<access token>` for a registry token,
//!   refuses writes to repositories that do not exist (`404 NAME_UNKNOWN`), refuses chunked
//!   `PATCH` uploads (`405`, counted), and forwards everything else (streaming bodies,
//!   `Location` rewritten).
//!
//! Test RSA keys are generated once per test process with the `openssl` CLI.

mod data;
mod emulator;
mod images;
mod rest;
mod state;

pub use emulator::FakeGar;

#[allow(unused_imports)]
use self::{data::*, emulator::*, images::*, rest::*, state::*};

use std::sync::OnceLock;

use serde_json::json;

/// The project of the tests.
pub const PROJECT: &str = "mirror-test-project";
/// The location of the tests.
pub const LOCATION: &str = "europe-west1";
/// The service account of the test key.
pub const CLIENT_EMAIL: &str = "mirror@mirror-test-project.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// An RSA key pair for the test service account (PKCS#8 private key, SPKI public key).
pub struct TestKey {
    /// `-----BEGIN PRIVATE KEY-----`.
    pub private_pem: String,
    /// `-----BEGIN PUBLIC KEY-----`.
    pub public_pem: String,
}

/// The test key, generated once per process with `openssl` (0.1–0.5 s; an RSA keygen in a
/// debug build of a Rust crate takes far longer).
pub fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let openssl = mirror_core::testing::require_tool("openssl", "apt-get install -y openssl");
        let out = std::process::Command::new(&openssl)
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("run openssl genpkey");
        assert!(
            out.status.success(),
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let private_pem = String::from_utf8(out.stdout).expect("PEM is text");
        assert!(
            private_pem.contains("BEGIN PRIVATE KEY"),
            "openssl did not write PKCS#8: {private_pem}"
        );
        let mut child = std::process::Command::new(&openssl)
            .args(["pkey", "-pubout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run openssl pkey");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("openssl stdin");
            stdin
                .write_all(private_pem.as_bytes())
                .expect("write the key to openssl");
        }
        let out = child.wait_with_output().expect("openssl pkey");
        assert!(out.status.success(), "openssl pkey -pubout failed");
        TestKey {
            private_pem,
            public_pem: String::from_utf8(out.stdout).expect("PEM is text"),
        }
    })
}

/// The JSON of a service-account key for the test account.
pub fn key_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": test_key().private_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}
