//! Tests of the harness itself, against the real registry and skopeo.
//! Run with `cargo test -p mirror-core --features testing testing::`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::process::Command;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;

use super::*;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{RawManifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::store::{Blob, BlobStream, ImageStore, ManifestHead, StoreLocation};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// Uploads `data` as a blob with the two-step monolithic upload (POST, then PUT ?digest=).
async fn upload_blob(
    client: &reqwest::Client,
    registry: &TestRegistry,
    repo: &str,
    data: &[u8],
    auth: Option<(&str, &str)>,
) -> Digest {
    let digest = Digest::sha256_of(data);
    let mut post = client.post(format!("{}/v2/{repo}/blobs/uploads/", registry.url()));
    if let Some((u, p)) = auth {
        post = post.basic_auth(u, Some(p));
    }
    let resp = post.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with('/') {
        format!("{}{location}", registry.url())
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let mut put = client
        .put(format!("{location}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec());
    if let Some((u, p)) = auth {
        put = put.basic_auth(u, Some(p));
    }
    let resp = put.send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
    digest
}

#[tokio::test]
async fn plain_registry_answers_v2_and_keeps_data_across_restart() {
    let registry = TestRegistry::start();
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert!(registry.is_running());
    let client = client();
    let resp = client
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(registry.username(), None);
    assert!(registry.token_server().is_none());

    let digest = upload_blob(&client, &registry, "harness/plain", b"hello registry", None).await;
    let head = format!("{}/v2/harness/plain/blobs/{digest}", registry.url());

    let port = registry.port();
    registry.kill();
    assert!(!registry.is_running());
    assert!(client
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .is_err());

    registry.restart();
    assert_eq!(registry.port(), port, "restart keeps the port");
    let resp = client.head(&head).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "restart keeps the data");
    assert!(registry.log().contains("listening on"));

    // Two registries at once get different ports.
    let other = TestRegistry::start();
    assert_ne!(other.port(), registry.port());
    let pid = other.pid().unwrap();
    drop(other);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "dropping kills and reaps the registry"
    );
}

#[tokio::test]
async fn basic_auth_registry_demands_credentials() {
    let registry = TestRegistry::with_basic_auth("alice", "wonder land");
    assert_eq!(registry.username(), Some("alice"));
    assert_eq!(registry.password(), Some("wonder land"));
    let client = client();
    let url = format!("{}/v2/", registry.url());

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");

    let resp = client
        .get(&url)
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = client
        .get(&url)
        .basic_auth("alice", Some("wonder land"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    upload_blob(
        &client,
        &registry,
        "harness/basic",
        b"basic",
        Some(("alice", "wonder land")),
    )
    .await;
}

#[derive(serde::Deserialize)]
struct TokenBody {
    token: String,
    access_token: String,
    expires_in: u64,
    issued_at: String,
}

async fn fetch_token(
    client: &reqwest::Client,
    tokens: &TokenServer,
    scope: &str,
    auth: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut req = client
        .get(tokens.realm())
        .query(&[("service", tokens.service()), ("scope", scope)]);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn token_auth_grants_push_to_the_user_and_pull_to_anonymous() {
    let registry = TestRegistry::builder()
        .token_auth("bob", "builder")
        .token_expires_in(std::time::Duration::from_secs(120))
        .start();
    let tokens = registry.token_server().expect("token variant");
    assert_eq!(tokens.expires_in().as_secs(), 120);
    let client = client();

    // The registry challenges with our realm.
    let resp = client
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&tokens.realm()), "{challenge}");
    assert!(challenge.contains(tokens.service()), "{challenge}");

    let scope = "repository:harness/token:pull,push";
    let uploads = format!("{}/v2/harness/token/blobs/uploads/", registry.url());

    // With credentials: push granted.
    let resp = fetch_token(&client, tokens, scope, Some(("bob", "builder"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: TokenBody = resp.json().await.unwrap();
    assert_eq!(body.token, body.access_token);
    assert_eq!(body.expires_in, 120);
    assert!(body.issued_at.ends_with('Z'), "{}", body.issued_at);
    let resp = client
        .post(&uploads)
        .bearer_auth(&body.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "registry log:\n{}",
        registry.log()
    );

    // Anonymous: only pull, so the registry refuses the upload.
    let resp = fetch_token(&client, tokens, scope, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let anonymous: TokenBody = resp.json().await.unwrap();
    let resp = client
        .post(&uploads)
        .bearer_auth(&anonymous.token)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN,
        "anonymous push answered {}",
        resp.status()
    );
    // …but the anonymous token is valid for pulls (a 404, not a 401).
    let resp = client
        .get(format!("{}/v2/harness/token/tags/list", registry.url()))
        .bearer_auth(&anonymous.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Wrong password: 401 from the token server.
    let resp = fetch_token(&client, tokens, scope, Some(("bob", "wrong"))).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "UNAUTHORIZED");

    assert_eq!(
        tokens.stats(),
        TokenStats {
            issued: 2,
            authenticated: 1,
            anonymous: 1,
            rejected: 1
        }
    );
    let log = tokens.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].granted, vec![scope.to_string()]);
    assert_eq!(
        log[1].granted,
        vec!["repository:harness/token:pull".to_string()]
    );
    assert_eq!(log[2].outcome, TokenOutcome::Rejected);
    assert_eq!(log[2].username.as_deref(), Some("bob"));

    // A forged token (right kid, wrong key) is refused.
    let forged = forge_token(tokens);
    let resp = client
        .post(&uploads)
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    tokens.reset_stats();
    assert_eq!(tokens.stats(), TokenStats::default());
}

fn forge_token(tokens: &TokenServer) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(tokens.key_id().to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": tokens.issuer(), "sub": "mallory", "aud": tokens.service(),
        "exp": now + 60, "nbf": now - 1, "iat": now, "jti": "forged",
        "access": [{"type": "repository", "name": "harness/token", "actions": ["pull", "push"]}],
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(key.serialized_der()),
    )
    .unwrap()
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let bin = require_tool("skopeo", "apt-get install -y skopeo");
    let out = Command::new(bin)
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

#[tokio::test]
async fn skopeo_pushes_layout_fixtures_to_the_token_registry_digest_intact() {
    let registry = TestRegistry::with_token_auth("carol", "pw");
    let creds = "carol:pw";
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");

    let image = TestImage::builder()
        .seed(11)
        .layers([3000, 70_000])
        .write_layout(&layout, "v1")
        .unwrap();
    // skopeo's `oci:` transport ignores index.json entries that are not OCI media types, so
    // the Docker-format image goes through its `dir:` transport.
    let docker = TestImage::builder().seed(12).docker().build();
    let docker_dir = dir.path().join("docker-dir");
    write_skopeo_dir(&docker, &docker_dir);
    let index = TestIndex::linux_amd64_arm64(13);
    index.write_layout(&layout, "multi").unwrap();

    let cases = [
        (
            format!("oci:{}:v1", layout.display()),
            "harness/skopeo:v1",
            image.digest(),
            false,
        ),
        (
            format!("dir:{}", docker_dir.display()),
            "harness/skopeo:docker",
            docker.digest(),
            false,
        ),
        (
            format!("oci:{}:multi", layout.display()),
            "harness/skopeo:multi",
            index.digest(),
            true,
        ),
    ];
    for (src, dest, digest, all) in cases {
        let dst = format!("docker://{}/{dest}", registry.host());
        let mut args = vec![
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
        ];
        if all {
            args.push("--all");
        }
        args.push(&src);
        args.push(&dst);
        skopeo(&args);
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            creds,
            &dst,
        ]);
        assert_eq!(&Digest::sha256_of(&raw), digest, "{dest}");
    }
    let tokens = registry.token_server().unwrap();
    assert!(tokens.stats().authenticated > 0);
    assert_eq!(tokens.stats().rejected, 0);
}

/// skopeo's `dir:` layout: `manifest.json`, `version`, and blobs named by their hex digest.
fn write_skopeo_dir(image: &TestImage, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();
    std::fs::write(dir.join("manifest.json"), &image.manifest().bytes).unwrap();
    for blob in image.blobs() {
        std::fs::write(dir.join(blob.digest().hex()), blob.read().unwrap()).unwrap();
    }
}

#[test]
fn images_are_deterministic_and_layers_are_real_gzip_tars() {
    let a = TestImage::builder()
        .seed(5)
        .layers([0, 10, 100_000])
        .build();
    let b = TestImage::builder()
        .seed(5)
        .layers([0, 10, 100_000])
        .build();
    let c = TestImage::builder()
        .seed(6)
        .layers([0, 10, 100_000])
        .build();
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
    assert_eq!(a.manifest().media_type, OCI_MANIFEST);

    let parsed = a.manifest().parse("fixture").unwrap();
    match parsed {
        crate::media::ParsedManifest::Image { config, layers } => {
            assert_eq!(config.digest, *a.config().digest());
            assert_eq!(layers.len(), 3);
        }
        other => panic!("expected an image, got {other:?}"),
    }
    let config: serde_json::Value = serde_json::from_slice(a.config().bytes().unwrap()).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");

    for (i, (layer, diff_id)) in a.layers().iter().zip(a.diff_ids()).enumerate() {
        let gz = layer.bytes().unwrap();
        assert_eq!(Digest::sha256_of(gz), *layer.digest());
        assert_eq!(gz.len() as u64, layer.size());
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(Digest::sha256_of(&tar_bytes), *diff_id);
        assert_eq!(config["rootfs"]["diff_ids"][i], diff_id.to_string());
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let entries: Vec<u64> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().size().unwrap())
            .collect();
        assert_eq!(entries, vec![[0, 10, 100_000][i]]);
    }

    let docker = TestImage::builder().seed(5).docker().build();
    assert_eq!(docker.manifest().media_type, DOCKER_MANIFEST);
    let m: serde_json::Value = serde_json::from_slice(&docker.manifest().bytes).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    let stored = TestImage::builder()
        .seed(5)
        .layers([0, 10, 100_000])
        .compression(LayerCompression::Stored)
        .build();
    assert_eq!(
        stored.diff_ids(),
        a.diff_ids(),
        "same tar, other compression"
    );
    assert_ne!(stored.layers()[2].digest(), a.layers()[2].digest());
}

#[test]
fn indexes_list_every_platform() {
    let index = TestIndex::linux_amd64_arm64(1);
    assert_eq!(index.manifest().media_type, OCI_INDEX);
    let doc: serde_json::Value = serde_json::from_slice(&index.manifest().bytes).unwrap();
    let platforms: Vec<String> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(
        doc["manifests"][1]["digest"],
        index.images()[1].digest().to_string()
    );
    assert_eq!(index.images()[1].platform(), "linux/arm64/v8");

    let docker = TestIndex::for_platforms(
        &TestImage::builder().docker(),
        &["linux/amd64", "linux/arm/v7"],
    );
    assert_eq!(docker.manifest().media_type, DOCKER_MANIFEST_LIST);
}

#[test]
fn layouts_written_while_streaming_match_the_in_memory_image() {
    let dir = tempfile::tempdir().unwrap();
    let builder = TestImage::builder()
        .seed(99)
        .layers([1 << 20, 17])
        .compression(LayerCompression::Stored);
    let on_disk = builder.write_layout(dir.path(), "big").unwrap();
    let in_memory = builder.build();
    assert_eq!(on_disk.digest(), in_memory.digest());
    assert!(on_disk.layers()[0].bytes().is_none());
    let path = on_disk.layers()[0].path().unwrap();
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        on_disk.layers()[0].size()
    );

    // Every blob file is named by its digest; index.json tags the manifest.
    for entry in std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(!name.starts_with('.'), "temporary file left: {name}");
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(Digest::sha256_of(&data).hex(), name);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        on_disk.digest().to_string()
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "big"
    );
    assert!(dir.path().join("oci-layout").is_file());

    // Re-tagging replaces the entry; another tag adds one.
    in_memory.write_layout(dir.path(), "big").unwrap();
    TestImage::builder()
        .seed(1)
        .build()
        .write_layout(dir.path(), "small")
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
}

/// A minimal in-memory store, to test `push` without depending on the real stores.
#[derive(Debug, Default)]
struct MemoryStore {
    blobs: Mutex<HashMap<Digest, Bytes>>,
    manifests: Mutex<BTreeMap<String, RawManifest>>,
    order: Mutex<Vec<String>>,
}

#[async_trait]
impl ImageStore for MemoryStore {
    fn location(&self) -> StoreLocation {
        StoreLocation::Registry {
            registry: "memory".into(),
            repository: "test".into(),
        }
    }
    async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>> {
        Ok(self
            .manifests
            .lock()
            .unwrap()
            .get(reference)
            .map(|m| ManifestHead {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                size: m.bytes.len() as u64,
            }))
    }
    async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        self.manifests
            .lock()
            .unwrap()
            .get(reference)
            .cloned()
            .ok_or_else(|| Error::manifest_not_found(reference))
    }
    async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<()> {
        self.order
            .lock()
            .unwrap()
            .push(format!("manifest {reference}"));
        self.manifests
            .lock()
            .unwrap()
            .insert(reference.to_string(), manifest.clone());
        Ok(())
    }
    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        self.manifests.lock().unwrap().remove(&digest.to_string());
        Ok(())
    }
    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.blobs.lock().unwrap().contains_key(digest))
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Blob> {
        let b = self
            .blobs
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::blob_not_found(digest.to_string()))?;
        Ok(Blob {
            size: Some(b.len() as u64),
            stream: Box::pin(futures::stream::iter([Ok(b)])),
        })
    }
    async fn put_blob(&self, digest: &Digest, size: u64, mut data: BlobStream) -> Result<()> {
        let mut all = Vec::new();
        while let Some(chunk) = data.next().await {
            all.extend_from_slice(&chunk?);
        }
        assert_eq!(all.len() as u64, size);
        digest.verify(&all)?;
        self.order.lock().unwrap().push(format!("blob {digest}"));
        self.blobs
            .lock()
            .unwrap()
            .insert(digest.clone(), all.into());
        Ok(())
    }
    async fn list_tags(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn push_writes_blobs_then_children_then_the_tag() {
    let store = MemoryStore::default();
    let index = TestIndex::linux_amd64_arm64(3);
    index.push(&store, "multi").await.unwrap();
    let order = store.order.lock().unwrap().clone();
    let first_manifest = order
        .iter()
        .position(|o| o.starts_with("manifest"))
        .unwrap();
    assert!(order[..first_manifest]
        .iter()
        .all(|o| o.starts_with("blob")));
    assert_eq!(order.last().unwrap(), "manifest multi");
    assert_eq!(
        order.len(),
        4 + 2 + 1,
        "2 configs + 2 layers, 2 images, 1 index"
    );
    assert_eq!(
        store.get_manifest("multi").await.unwrap().digest,
        *index.digest()
    );

    // On-disk blobs stream from their files.
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage::builder()
        .seed(4)
        .layers([300_000])
        .write_layout(dir.path(), "t")
        .unwrap();
    let store = MemoryStore::default();
    image.push(&store, "t").await.unwrap();
    assert!(store.has_blob(image.layers()[0].digest()).await.unwrap());
}

#[tokio::test]
async fn fake_registry_serves_a_fixture_and_corrupts_on_request() {
    let image = TestImage::builder().seed(21).layers([5000]).build();
    let fake = FakeRegistry::serving(&image, "lib/app", "1.0");
    let client = client();
    let base = fake.url();

    assert_eq!(
        client
            .get(format!("{base}/v2/"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    for reference in ["1.0".to_string(), image.digest().to_string()] {
        let resp = client
            .get(format!("{base}/v2/lib/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(
            resp.headers()["docker-content-digest"],
            image.digest().to_string().as_str()
        );
        let body = resp.bytes().await.unwrap();
        assert_eq!(body, image.manifest().bytes);
    }
    let layer = &image.layers()[0];
    let blob_url = format!("{base}/v2/lib/app/blobs/{}", layer.digest());
    let head = client.head(&blob_url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        layer.size().to_string().as_str()
    );
    let head = client
        .head(format!("{base}/v2/lib/app/manifests/1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["content-length"],
        image.manifest().bytes.len().to_string().as_str()
    );

    let good = client
        .get(&blob_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&good), *layer.digest());

    fake.corrupt_blob(layer.digest());
    let resp = client.get(&blob_url).send().await.unwrap();
    assert_eq!(
        resp.headers()["docker-content-digest"],
        layer.digest().to_string().as_str()
    );
    let bad = resp.bytes().await.unwrap();
    assert_eq!(bad.len(), good.len());
    assert_ne!(Digest::sha256_of(&bad), *layer.digest());
    fake.heal();
    let healed = client
        .get(&blob_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(healed, good);

    let missing = client
        .get(format!("{base}/v2/lib/other/manifests/1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing = client
        .get(format!("{base}/v2/lib/app/manifests/2.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.starts_with("HEAD /v2/lib/app/blobs/")));
}

#[test]
#[should_panic(expected = "apt-get install -y no-such-tool")]
fn missing_tools_fail_with_the_setup_command() {
    require_tool(
        "mirror-core-no-such-tool",
        "apt-get install -y no-such-tool",
    );
}

#[test]
fn registries_can_be_created_outside_any_runtime_and_dropped_inside_one() {
    let registry = TestRegistry::with_token_auth("u", "p");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let resp = client()
            .get(format!(
                "{}?service=x&scope=repository:a:pull",
                registry.token_server().unwrap().realm()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        drop(registry);
    });
}
