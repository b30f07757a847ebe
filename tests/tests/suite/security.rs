//! Security properties: secrets never reach logs, events or errors; TLS is verified by
//! default; credentials are never sent to a redirect target on another host.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::routing::get;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{copy, CopyEvent, CopyOptions, Digest, Error, ImageStore};
use tests::hostile::{HostileRegistry, Witness};

const PASSWORD: &str = "Sup3r-S3cret-Passw0rd";

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every thread of the runtime logs into the capture: a subscriber set for the test's own
/// thread alone missed what ran on the workers, which made the size check depend on scheduling.
#[test]
fn the_password_never_appears_in_logs_events_debug_or_errors() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let on_start = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&on_start)))
        .build()
        .unwrap();
    let seen = runtime.block_on(logged_and_shown());
    drop(runtime);
    check_nothing_leaked(&capture, &seen);
}

/// Pushes and copies with the password on both registries, fails with wrong passwords: what
/// `Debug`, reports, events and errors showed.
async fn logged_and_shown() -> String {
    let mut seen = String::new();
    for reg in [
        TestRegistry::with_basic_auth("alice", PASSWORD),
        TestRegistry::with_token_auth("alice", PASSWORD),
    ] {
        let client =
            RegistryClient::new(&reg.host(), Credentials::basic("alice", PASSWORD)).unwrap();
        seen.push_str(&format!("{client:?}"));
        let src = client.repository("sec/src").unwrap();
        seen.push_str(&format!("{src:?}"));
        let img = TestImage::builder().seed(1).layer(5000).build();
        img.push(&src, "v1").await.unwrap();
        let events = Arc::new(Mutex::new(String::new()));
        let sink = events.clone();
        let options = CopyOptions {
            events: Some(Arc::new(move |e: &CopyEvent| {
                sink.lock()
                    .unwrap()
                    .push_str(&format!("{e:?} {}", serde_json::to_string(e).unwrap()))
            })),
            ..CopyOptions::default()
        };
        let report = copy(
            &src,
            "v1",
            &client.repository("sec/dst").unwrap(),
            "v1",
            &options,
        )
        .await
        .unwrap();
        seen.push_str(&format!("{report:?}"));
        seen.push_str(&events.lock().unwrap());
        // Errors: a wrong password, and a password that is a prefix of the right one.
        for wrong in [format!("{PASSWORD}x"), PASSWORD[..8].to_string()] {
            let bad = RegistryClient::new(&reg.host(), Credentials::basic("alice", wrong.as_str()))
                .unwrap();
            let e = bad
                .repository("sec/src")
                .unwrap()
                .get_manifest("v1")
                .await
                .unwrap_err();
            seen.push_str(&format!("{e} {e:?}"));
        }
    }
    seen
}

fn check_nothing_leaked(capture: &Capture, seen: &str) {
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(
        logs.len() > 1000,
        "trace logging was captured ({} bytes)",
        logs.len()
    );
    let b64 = {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = write!(s, "{}", base64_of(&format!("alice:{PASSWORD}")));
        s
    };
    for haystack in [logs.as_str(), seen] {
        assert!(!haystack.contains(PASSWORD), "password leaked");
        assert!(
            !haystack.contains(&PASSWORD[..8]),
            "part of the password leaked"
        );
        assert!(!haystack.contains(&b64), "basic auth header leaked");
    }
}

fn base64_of(s: &str) -> String {
    // Tiny standard base64 encoder, to look for an Authorization header value in logs.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn https_certificates_are_verified_by_default() {
    let port = tests::tls::serve_raw(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec()
    })
    .await;
    let host = format!("localhost:{port}");
    // HTTPS forced on a loopback host (plain HTTP would be its default): verification is on.
    let strict = RegistryClient::builder(&host)
        .plain_http(false)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = strict.ping().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("certificate")),
        "self-signed certificate refused: {err:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "an untrusted certificate is not retried: {:?}",
        started.elapsed()
    );
    // Only an explicit opt-out accepts it.
    let lax = RegistryClient::builder(&host)
        .plain_http(false)
        .tls_verify(false)
        .build()
        .unwrap();
    lax.ping().await.unwrap();
}

#[tokio::test]
async fn credentials_are_not_sent_to_a_redirect_target_on_another_host() {
    // The "storage" host records the Authorization headers it receives.
    let blob = b"hello blob".to_vec();
    let digest = Digest::sha256_of(&blob);
    let storage = Witness::start(move || blob.clone()).await;
    // The registry demands basic auth and redirects blob reads to "localhost" (another host).
    let location = format!("http://localhost:{}/blob", storage.port());
    let registry = HostileRegistry::basic_auth()
        .route(
            "/v2/app/blobs/{digest}",
            get(move || {
                let location = location.clone();
                async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)]) }
            }),
        )
        .serve()
        .await;
    let client = RegistryClient::new(&registry, Credentials::basic("alice", PASSWORD)).unwrap();
    let store = client.repository("app").unwrap();
    let mut b = store.get_blob(&digest).await.unwrap();
    let mut got = Vec::new();
    use futures::StreamExt;
    while let Some(chunk) = b.stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(Digest::sha256_of(&got), digest, "the redirect was followed");
    assert_eq!(
        storage.seen(),
        vec![None],
        "no Authorization header reached the other host"
    );
}

/// A `Link` to the next page of a tag list (or catalog) on another origin of the same host
/// (another port) is refused: the registry's credentials would go with the request. Only the
/// registry's own origin (scheme, host, port) is followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_never_follows_a_link_to_another_origin() {
    // The other origin: records what reaches it.
    let other =
        Witness::start(|| axum::Json(serde_json::json!({"name": "app", "tags": ["stolen"]}))).await;
    let page = |next: String| {
        get(move || {
            let next = next.clone();
            async move {
                (
                    [("link", format!("<{next}>; rel=\"next\""))],
                    axum::Json(
                        serde_json::json!({"name": "app", "tags": ["v1"], "repositories": ["app"]}),
                    ),
                )
            }
        })
    };
    let registry = HostileRegistry::basic_auth()
        .route(
            "/v2/app/tags/list",
            page(other.url("/v2/app/tags/list?last=v1")),
        )
        .route("/v2/_catalog", page(other.url("/v2/_catalog?last=app")))
        .serve()
        .await;
    let client = RegistryClient::new(&registry, Credentials::basic("alice", PASSWORD)).unwrap();
    let err = client
        .repository("app")
        .unwrap()
        .list_tags()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("another origin")),
        "{err:?}"
    );
    let err = client.catalog().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(
        other.seen().is_empty(),
        "nothing reached the other origin: {:?}",
        other.seen()
    );
    assert!(!err.to_string().contains(PASSWORD));
}
