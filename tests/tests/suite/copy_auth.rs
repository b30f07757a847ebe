//! Copies between authenticating registries: basic auth, bearer tokens from a token server,
//! a static bearer token, and an anonymous client learning the challenge from its first
//! answer (split from `copy.rs`, whose helpers these tests share).

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{TestIndex, TestRegistry};
use mirror_core::{copy, Error, ImageStore};

use crate::copy::{index_blobs, opts, small_image};

#[tokio::test]
async fn basic_auth_registry_copies_and_wrong_password_is_unauthorized() {
    let reg = TestRegistry::with_basic_auth("alice", "s3cret-basic");
    let image = small_image(9);
    let src = reg.store("auth/app");
    image.push(&src, "v1").await.unwrap();
    let dst = reg.store("auth/copy");
    let r = copy(&src, "v1", &dst, "v1", &opts()).await.unwrap();
    assert_eq!(r.blobs_mounted, 4);

    let wrong = RegistryClient::new(&reg.host(), Credentials::basic("alice", "nope"))
        .unwrap()
        .repository("auth/app")
        .unwrap();
    let err = wrong.get_manifest("v1").await.unwrap_err();
    match &err {
        Error::Unauthorized { registry, .. } => assert_eq!(registry, &reg.host()),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(
        !err.to_string().contains("nope"),
        "no secret in errors: {err}"
    );
    let anon = RegistryClient::new(&reg.host(), Credentials::Anonymous)
        .unwrap()
        .repository("auth/app")
        .unwrap();
    assert!(matches!(
        anon.has_blob(image.config().digest(), None).await,
        Err(Error::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn token_auth_registry_copies_caches_tokens_and_refuses_bad_or_anonymous_pushes() {
    let reg = TestRegistry::with_token_auth("bob", "s3cret-token");
    let tokens = reg
        .token_server()
        .expect("token registry has a token server");
    let index = TestIndex::linux_amd64_arm64(10);
    let src = reg.store("tok/app");
    index.push(&src, "v1").await.unwrap();
    let dst = reg.store("tok/copy");
    tokens.reset_stats();
    let r = copy(&src, "v1", &dst, "v1", &opts()).await.unwrap();
    assert_eq!(
        r.blobs_mounted,
        index_blobs(&index),
        "mount token holds pull on the source: {r:?}"
    );
    let issued = tokens.stats().issued;
    assert!(
        issued <= 4,
        "tokens are cached per scope, {issued} issued for one copy"
    );

    let anon = RegistryClient::new(&reg.host(), Credentials::Anonymous)
        .unwrap()
        .repository("tok/anon")
        .unwrap();
    let image = small_image(11);
    let err = image.push(&anon, "v1").await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { .. } | Error::Denied { .. }),
        "anonymous push refused cleanly: {err:?}"
    );
    assert!(
        anon.head_manifest("v1").await.is_err()
            || anon.head_manifest("v1").await.unwrap().is_none()
    );

    let wrong = RegistryClient::new(&reg.host(), Credentials::basic("bob", "wrong"))
        .unwrap()
        .repository("tok/app")
        .unwrap();
    match wrong.get_manifest("v1").await.unwrap_err() {
        Error::Unauthorized { registry, message } => {
            assert_eq!(registry, reg.host());
            assert!(!message.contains("wrong"));
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn static_bearer_token_is_sent_as_is() {
    let reg = TestRegistry::with_token_auth("carol", "pw");
    let tokens = reg.token_server().unwrap();
    let image = small_image(12);
    image.push(&reg.store("bearer/app"), "v1").await.unwrap();
    // Obtain a token out of band, then use it as a static bearer credential.
    let url = format!(
        "{}?service={}&scope=repository:bearer/app:pull",
        tokens.realm(),
        tokens.service()
    );
    let body: serde_json::Value = reqwest_get_json(&url, "carol", "pw").await;
    let token = body["token"].as_str().unwrap().to_string();
    tokens.reset_stats();
    let s = RegistryClient::new(&reg.host(), Credentials::Bearer(token.into()))
        .unwrap()
        .repository("bearer/app")
        .unwrap();
    assert_eq!(s.get_manifest("v1").await.unwrap().digest, *image.digest());
    assert_eq!(tokens.stats().issued, 0);
}

#[tokio::test]
async fn an_anonymous_client_sends_no_ping_and_learns_the_challenge_from_its_first_answer() {
    // A registry without auth: the HEAD is the one request (no `GET /v2/` first).
    let open = TestRegistry::start();
    let image = small_image(21);
    image.push(&open.store("anon/app"), "v1").await.unwrap();
    let before = tests::access_lines(&open).len();
    let fresh = RegistryClient::new(&open.host(), Credentials::Anonymous)
        .unwrap()
        .repository("anon/app")
        .unwrap();
    assert!(fresh.head_manifest("v1").await.unwrap().is_some());
    assert_eq!(
        tests::access_lines(&open)[before..],
        ["HEAD /v2/anon/app/manifests/v1"]
    );

    // A token registry: the first HEAD's 401 names the realm, one anonymous token is
    // fetched, the HEAD goes again; the next request reuses the token.
    let reg = TestRegistry::with_token_auth("bob", "pw");
    let tokens = reg.token_server().unwrap();
    image.push(&reg.store("anon/app"), "v1").await.unwrap();
    tokens.reset_stats();
    let before = tests::access_lines(&reg).len();
    let anon = RegistryClient::new(&reg.host(), Credentials::Anonymous)
        .unwrap()
        .repository("anon/app")
        .unwrap();
    assert_eq!(
        anon.head_manifest("v1").await.unwrap().map(|h| h.digest),
        Some(image.digest().clone())
    );
    assert!(anon.has_blob(image.config().digest(), None).await.unwrap());
    assert_eq!(
        tests::access_lines(&reg)[before..],
        [
            "HEAD /v2/anon/app/manifests/v1".to_string(),
            "HEAD /v2/anon/app/manifests/v1".to_string(),
            format!("HEAD /v2/anon/app/blobs/{}", image.config().digest()),
        ]
    );
    assert_eq!(tokens.stats().anonymous, 1, "{:?}", tokens.stats());

    // With credentials the challenge is learned first, so that they go out on the first
    // request: the ping, then the HEAD, once.
    let before = tests::access_lines(&reg).len();
    let bob = reg.store("anon/app");
    assert!(bob.head_manifest("v1").await.unwrap().is_some());
    assert_eq!(
        tests::access_lines(&reg)[before..],
        ["GET /v2/", "HEAD /v2/anon/app/manifests/v1"]
    );
}

async fn reqwest_get_json(url: &str, user: &str, pass: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .get(url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .expect("token server reachable");
    assert!(
        resp.status().is_success(),
        "token fetch failed: {}",
        resp.status()
    );
    resp.json().await.expect("token JSON")
}
