//! The real registry (plain, basic, token), the token server, skopeo interop.

use std::process::Command;

use reqwest::{Method, StatusCode};

use super::{client, send};
use crate::digest::Digest;
use crate::testing::*;

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

/// The `WWW-Authenticate` challenge of `resp`.
fn challenge_of(resp: &reqwest::Response) -> String {
    resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string()
}

/// `POST url` with the bearer `token`.
async fn post_with_token(client: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    client.post(url).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn plain_registry_answers_v2_and_keeps_data_across_restart() {
    let registry = TestRegistry::start();
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert!(registry.is_running());
    let client = client();
    let resp = send(&client, Method::GET, format!("{}/v2/", registry.url())).await;
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
    let resp = send(&client, Method::HEAD, &head).await;
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

    let resp = send(&client, Method::GET, &url).await;
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
    let resp = send(&client, Method::GET, format!("{}/v2/", registry.url())).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = challenge_of(&resp);
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
    let resp = post_with_token(&client, &uploads, &body.token).await;
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
    let resp = post_with_token(&client, &uploads, &anonymous.token).await;
    // Distribution 2.8 answers 401 with `error="insufficient_scope"` in the challenge.
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = challenge_of(&resp);
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
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
    let resp = post_with_token(&client, &uploads, &forged).await;
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
