//! Fault injection: a proxy in front of the real source or destination registry injects one
//! fault at a time; every copy and every `Mirror::mirror` either completes with the source's
//! digest or fails with a typed error, and never leaves a tag on a half-copied image.
//! The outcome table is printed (run with `--nocapture` to see it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mirror_core::kit::retry::RetryConfig;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::{HttpStore, RegistryClient};
use mirror_core::testing::{Fault, FaultProxy, Rule, TestImage, TestRegistry};
use mirror_core::{copy, CopyOptions, Error, GenericRegistry, ImageStore, Mirror, Source, Sources};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Source,
    Destination,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Complete,
    TypedError,
}

struct Case {
    name: &'static str,
    side: Side,
    rule: Rule,
    expect: Expect,
}

fn retry() -> RetryConfig {
    RetryConfig {
        max_backoff: Duration::from_millis(1500),
        ..RetryConfig::fast()
    }
}

fn client(host: &str, creds: Credentials) -> RegistryClient {
    RegistryClient::builder(host)
        .credentials(creds)
        .retry(retry())
        .build()
        .unwrap()
}

fn cases() -> Vec<Case> {
    use Expect::*;
    use Side::*;
    let st = |status, retry_after| Fault::Status {
        status,
        retry_after,
    };
    vec![
        Case {
            name: "500 on blob GET x2",
            side: Source,
            rule: Rule::new(Some("GET"), "/blobs/", st(500, None), 2),
            expect: Complete,
        },
        Case {
            name: "503 on manifest GET x2",
            side: Source,
            rule: Rule::new(Some("GET"), "/manifests/", st(503, None), 2),
            expect: Complete,
        },
        Case {
            name: "429 Retry-After 1s on blob GET",
            side: Source,
            rule: Rule::new(Some("GET"), "/blobs/", st(429, Some(1)), 1),
            expect: Complete,
        },
        Case {
            name: "connection dropped mid-blob x2",
            side: Source,
            rule: Rule::new(Some("GET"), "/blobs/", Fault::DropAfter(20_000), 2),
            expect: Complete,
        },
        Case {
            name: "truncated blob body",
            side: Source,
            rule: Rule::new(Some("GET"), "/blobs/", Fault::Truncate(10_000), 1),
            expect: Complete,
        },
        Case {
            name: "flipped byte in blob",
            side: Source,
            rule: Rule::new(Some("GET"), "/blobs/", Fault::FlipByte(100), 1),
            expect: Complete,
        },
        Case {
            name: "flipped byte, every time",
            side: Source,
            rule: Rule::new(Some("GET"), "/blobs/", Fault::FlipByte(100), 1000),
            expect: TypedError,
        },
        Case {
            name: "500 on blob GET, every time",
            side: Source,
            rule: Rule::new(Some("GET"), "/blobs/", st(500, None), 1000),
            expect: TypedError,
        },
        Case {
            name: "delay 300ms on manifests",
            side: Source,
            rule: Rule::new(
                None,
                "/manifests/",
                Fault::Delay(Duration::from_millis(300)),
                10,
            ),
            expect: Complete,
        },
        Case {
            name: "token expired on manifest GET",
            side: Source,
            rule: Rule::new(Some("GET"), "/manifests/", Fault::Unauthorized, 1),
            expect: Complete,
        },
        Case {
            name: "404 on a blob (lost at source)",
            side: Source,
            rule: Rule::new(Some("GET"), "/blobs/", st(404, None), 1000),
            expect: TypedError,
        },
        Case {
            name: "400 on manifest GET (not retried)",
            side: Source,
            rule: Rule::new(Some("GET"), "/manifests/", st(400, None), 1000),
            expect: TypedError,
        },
        Case {
            name: "500 on blob PUT x2",
            side: Destination,
            rule: Rule::new(Some("PUT"), "/blobs/uploads/", st(500, None), 2),
            expect: Complete,
        },
        Case {
            name: "503 on manifest PUT x2",
            side: Destination,
            rule: Rule::new(Some("PUT"), "/manifests/", st(503, None), 2),
            expect: Complete,
        },
        Case {
            name: "429 on upload POST x2",
            side: Destination,
            rule: Rule::new(Some("POST"), "/blobs/uploads/", st(429, Some(0)), 2),
            expect: Complete,
        },
        Case {
            name: "token expired on blob PUT",
            side: Destination,
            rule: Rule::new(Some("PUT"), "/blobs/uploads/", Fault::Unauthorized, 1),
            expect: Complete,
        },
        Case {
            name: "502 on manifest HEAD x2",
            side: Destination,
            rule: Rule::new(
                Some("HEAD"),
                "/manifests/",
                Fault::Status {
                    status: 502,
                    retry_after: None,
                },
                2,
            ),
            expect: Complete,
        },
        // A concurrent writer of the same blob (another deployer process) makes distribution
        // answer the manifest PUT MANIFEST_BLOB_UNKNOWN, or a blob HEAD 500, for a moment.
        Case {
            name: "MANIFEST_BLOB_UNKNOWN on manifest PUT x3",
            side: Destination,
            rule: Rule::new(
                Some("PUT"),
                "/manifests/",
                Fault::Error {
                    status: 400,
                    code: "MANIFEST_BLOB_UNKNOWN".into(),
                },
                3,
            ),
            expect: Complete,
        },
        Case {
            name: "500 on blob HEAD x3 (rewritten link)",
            side: Destination,
            rule: Rule::new(Some("HEAD"), "/blobs/", st(500, None), 3),
            expect: Complete,
        },
        Case {
            name: "500 on blob HEAD, every time",
            side: Destination,
            rule: Rule::new(Some("HEAD"), "/blobs/", st(500, None), 1000),
            expect: TypedError,
        },
        Case {
            name: "500 on manifest PUT, every time",
            side: Destination,
            rule: Rule::new(Some("PUT"), "/manifests/", st(500, None), 1000),
            expect: TypedError,
        },
        Case {
            name: "403 on blob PUT",
            side: Destination,
            rule: Rule::new(Some("PUT"), "/blobs/uploads/", st(403, None), 1000),
            expect: TypedError,
        },
    ]
}

fn is_typed(e: &Error) -> bool {
    matches!(
        e,
        Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::Http { .. }
            | Error::NotFound { .. }
            | Error::Denied { .. }
            | Error::Unauthorized { .. }
            | Error::Connect { .. }
            | Error::RateLimited { .. }
    )
}

/// Runs one case through the copy engine and through `Mirror`, returning the outcome line.
async fn run_case(
    case: &Case,
    index: usize,
    img: &TestImage,
    src_reg: &TestRegistry,
    dst_reg: &TestRegistry,
) -> String {
    let user = src_reg.username().unwrap();
    let pass = src_reg.password().unwrap();
    let creds = Credentials::basic(user, pass);
    let proxy = FaultProxy::start(&match case.side {
        Side::Source => src_reg.host(),
        Side::Destination => dst_reg.host(),
    });
    let via = |side: Side, reg: &TestRegistry| {
        if case.side == side {
            proxy.host()
        } else {
            reg.host()
        }
    };
    let src_host = via(Side::Source, src_reg);
    let dst_host = via(Side::Destination, dst_reg);
    let src = client(&src_host, creds.clone())
        .repository("src/app")
        .unwrap();
    let dst: HttpStore = client(&dst_host, creds.clone())
        .repository(&format!("dst/case{index}"))
        .unwrap();
    // The direct (fault-free) view of the destination, to check what really got tagged.
    let direct = client(&dst_reg.host(), creds.clone())
        .repository(&format!("dst/case{index}"))
        .unwrap();

    proxy.add(case.rule.clone());
    let options = CopyOptions {
        retry: retry(),
        ..CopyOptions::default()
    };
    let started = Instant::now();
    let result = copy(&src, "v1", &dst, "v1", &options).await;
    let copy_outcome = check(case, &result.map(|r| r.digest), img, &direct, "v1").await;
    let copy_time = started.elapsed();
    assert!(
        !proxy.faults_applied().is_empty(),
        "{}: the fault was never injected",
        case.name
    );

    // The same fault through Mirror (fresh rule budget, fresh service repository).
    proxy.clear();
    proxy.add(case.rule.clone());
    let registry = Arc::new(GenericRegistry::new(client(&dst_host, creds.clone())));
    let mirror = Mirror::builder(registry, &format!("c{index}"))
        .copy_options(options.clone())
        .sources(mirror_core::Sources::new().with_credentials(&src_host, creds.clone()))
        .build()
        .unwrap();
    let source = Source::parse(&format!("{src_host}/src/app:v1")).unwrap();
    let d = mirror.mirror("svc", &source).await;
    let repo = format!("c{index}/services/svc");
    let direct_m = client(&dst_reg.host(), creds).repository(&repo).unwrap();
    let tag = mirror_core::strategy::service_tag(&source.id());
    let mirror_outcome = check(case, &d.map(|d| d.digest), img, &direct_m, &tag).await;
    format!(
        "| {} | {:?} | {} | {} | {:.1}s |",
        case.name,
        case.side,
        copy_outcome,
        mirror_outcome,
        copy_time.as_secs_f64()
    )
}

async fn check(
    case: &Case,
    result: &Result<mirror_core::Digest, Error>,
    img: &TestImage,
    direct: &HttpStore,
    tag: &str,
) -> String {
    let tagged = direct.head_manifest(tag).await.unwrap();
    match result {
        Ok(d) => {
            assert_eq!(
                d,
                img.digest(),
                "{}: completed with a wrong digest",
                case.name
            );
            assert_eq!(
                tagged.map(|h| h.digest).as_ref(),
                Some(img.digest()),
                "{}: tag",
                case.name
            );
            assert_eq!(
                case.expect,
                Expect::Complete,
                "{}: expected a typed error",
                case.name
            );
            "completed, digest identical".to_string()
        }
        Err(e) => {
            assert!(is_typed(e), "{}: untyped error {e:?}", case.name);
            assert!(tagged.is_none(), "{}: failed but left a tag", case.name);
            assert_eq!(
                case.expect,
                Expect::TypedError,
                "{}: expected completion, got {e}",
                case.name
            );
            let kind = format!("{e:?}");
            let kind = kind.split([' ', '{', '(']).next().unwrap_or("").to_string();
            format!("typed error `{kind}`, no tag")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_injected_fault_completes_identically_or_fails_typed_without_a_tag() {
    let src_reg = TestRegistry::with_basic_auth("u", "p");
    let dst_reg = TestRegistry::with_basic_auth("u", "p");
    let img = TestImage::builder()
        .seed(99)
        .layers([150_000, 60_000, 5_000])
        .build();
    let seed_store = client(&src_reg.host(), Credentials::basic("u", "p"))
        .repository("src/app")
        .unwrap();
    img.push(&seed_store, "v1").await.unwrap();
    let mut table = vec![
        "| fault | side | copy | mirror | copy time |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    for (i, case) in cases().iter().enumerate() {
        table.push(run_case(case, i, &img, &src_reg, &dst_reg).await);
    }
    println!("{}", table.join("\n"));
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let reg = TestRegistry::start();
    let img = TestImage::builder().seed(5).layer(1000).build();
    img.push(
        &client(&reg.host(), Credentials::Anonymous)
            .repository("a/b")
            .unwrap(),
        "v1",
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(&reg.host());
    proxy.add(tests::manifest_get_rate_limited(1));
    let s = client(&proxy.host(), Credentials::Anonymous)
        .repository("a/b")
        .unwrap();
    let t = Instant::now();
    s.get_manifest("v1").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        t.elapsed()
    );
    assert_eq!(proxy.faults_applied().len(), 1);
}

#[tokio::test]
async fn validation_errors_are_not_retried() {
    let reg = TestRegistry::start();
    let proxy = FaultProxy::start(&reg.host());
    proxy.add(Rule::new(
        Some("GET"),
        "/manifests/",
        Fault::Status {
            status: 400,
            retry_after: None,
        },
        100,
    ));
    let s = client(&proxy.host(), Credentials::Anonymous)
        .repository("a/b")
        .unwrap();
    let err = s.get_manifest("v1").await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 400, .. }), "{err:?}");
    let gets = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v2/a/b/manifests"))
        .count();
    assert_eq!(gets, 1, "a 400 is sent once");
}

#[tokio::test]
async fn kill_destination_mid_copy_then_mirror_again_reuses_uploaded_blobs() {
    let src = TestRegistry::start();
    let dst = Arc::new(TestRegistry::start());
    let img = TestImage::builder()
        .seed(77)
        .layers([400_000, 300_000, 200_000, 100_000])
        .build();
    img.push(
        &client(&src.host(), Credentials::Anonymous)
            .repository("s/app")
            .unwrap(),
        "v1",
    )
    .await
    .unwrap();
    // Slow every blob upload down so the copy is still running when the registry dies.
    let proxy = FaultProxy::start(&dst.host());
    proxy.add(Rule::new(
        Some("POST"),
        "/blobs/uploads/",
        Fault::Delay(Duration::from_millis(400)),
        100,
    ));
    let s = client(&src.host(), Credentials::Anonymous)
        .repository("s/app")
        .unwrap();
    let d = RegistryClient::builder(&proxy.host())
        .retry(RetryConfig::none())
        .build()
        .unwrap()
        .repository("d/app")
        .unwrap();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killer = {
        let done = done.clone();
        let dst = dst.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            while done.load(std::sync::atomic::Ordering::SeqCst) < 2
                && t.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            dst.kill();
        })
    };
    let counter = done.clone();
    let options = CopyOptions {
        concurrency: 1,
        retry: RetryConfig::none(),
        events: Some(Arc::new(move |e: &mirror_core::CopyEvent| {
            if matches!(e, mirror_core::CopyEvent::BlobDone { .. }) {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })),
        ..CopyOptions::default()
    };
    let err = copy(&s, "v1", &d, "v1", &options).await.unwrap_err();
    killer.join().unwrap();
    assert!(
        matches!(err, Error::Connect { .. } | Error::Http { .. }),
        "{err:?}"
    );
    let uploaded_before = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(uploaded_before >= 2);

    dst.restart();
    proxy.clear();
    let d2 = client(&dst.host(), Credentials::Anonymous)
        .repository("d/app")
        .unwrap();
    assert!(
        d2.head_manifest("v1").await.unwrap().is_none(),
        "nothing tagged by the killed copy"
    );
    let report = copy(&s, "v1", &d2, "v1", &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(&report.digest, img.digest());
    assert!(
        report.blobs_skipped >= uploaded_before,
        "blobs uploaded before the kill are not uploaded again: {report:?}"
    );
    assert_eq!(report.blobs_skipped + report.blobs_uploaded, 5);
}

#[derive(Debug)]
struct CountingProvider {
    calls: std::sync::atomic::AtomicUsize,
    lifetime: Duration,
}

#[async_trait::async_trait]
impl mirror_core::kit::store::http::credentials::CredentialProvider for CountingProvider {
    async fn credentials(
        &self,
    ) -> mirror_core::Result<mirror_core::kit::store::http::credentials::ExpiringCredentials> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(
            mirror_core::kit::store::http::credentials::ExpiringCredentials {
                credentials: Credentials::basic("u", "p"),
                expires_at: Some(std::time::SystemTime::now() + self.lifetime),
            },
        )
    }
}

/// A registry issuing 2 s tokens, holding a 4-layer image at `repo:v1`; a proxy in front of
/// it delaying every `method` request on `path` by 1.5 s; and a credential provider whose
/// credentials need refreshing after 1 s (they expire after 31 s, refreshed 30 s early).
async fn short_tokens(
    seed: u64,
    repo: &str,
    method: &str,
    path: &str,
) -> (TestRegistry, TestImage, FaultProxy, Arc<CountingProvider>) {
    let reg = TestRegistry::builder()
        .token_auth("u", "p")
        .token_expires_in(Duration::from_secs(2))
        .start();
    let img = TestImage::builder()
        .seed(seed)
        .layers([50_000, 40_000, 30_000, 20_000])
        .build();
    let store = client(&reg.host(), Credentials::basic("u", "p"))
        .repository(repo)
        .unwrap();
    img.push(&store, "v1").await.unwrap();
    reg.token_server().unwrap().reset_stats();
    let proxy = FaultProxy::start(&reg.host());
    proxy.add(Rule::new(
        Some(method),
        path,
        Fault::Delay(Duration::from_millis(1500)),
        100,
    ));
    let provider = Arc::new(CountingProvider {
        calls: Default::default(),
        lifetime: Duration::from_secs(31),
    });
    (reg, img, proxy, provider)
}

#[tokio::test]
async fn a_copy_that_outlives_its_tokens_and_credentials_completes() {
    // Every blob upload takes 1.5 s: the copy takes about 7 s, beyond the 2 s token lifetime;
    // the provider's credentials need refreshing in the middle of it.
    let (reg, img, proxy, provider) = short_tokens(123, "src/app", "PUT", "/blobs/uploads/").await;
    let tokens = reg.token_server().unwrap();
    let dst = RegistryClient::builder(&proxy.host())
        .credential_provider(provider.clone())
        .retry(retry())
        .build()
        .unwrap()
        .repository("dst/app")
        .unwrap();
    let src = client(&reg.host(), Credentials::basic("u", "p"))
        .repository("src/app")
        .unwrap();
    let options = CopyOptions {
        concurrency: 1,
        ..CopyOptions::default()
    };
    let t = Instant::now();
    let r = copy(&src, "v1", &dst, "v1", &options).await.unwrap();
    assert_eq!(&r.digest, img.digest());
    assert_refreshed_during_copy(t, tokens, &provider, "destination");
}

/// The copy started at `started` outlived its 2 s tokens, and both the tokens and the
/// credentials (`provider`, refreshed after 1 s) were renewed on the way.
fn assert_refreshed_during_copy(
    started: Instant,
    tokens: &mirror_core::testing::TokenServer,
    provider: &CountingProvider,
    side: &str,
) {
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "the copy outlived its tokens"
    );
    let issued = tokens.stats().issued;
    assert!(
        issued >= 3,
        "{side} tokens were refreshed during the copy ({issued} issued)"
    );
    let calls = provider.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        calls >= 2,
        "{side} credentials were refreshed before expiry ({calls} calls)"
    );
}

#[tokio::test]
async fn a_deploy_from_a_source_whose_tokens_and_credentials_expire_mid_copy_completes() {
    // The source side of the test above: the source's token server issues 2 s tokens, its
    // credential provider (given to `Sources`) refreshes after 1 s, every blob GET takes 1.5 s.
    let (reg, img, proxy, provider) = short_tokens(124, "team/app", "GET", "/blobs/").await;
    let tokens = reg.token_server().unwrap();
    let dst = TestRegistry::start();
    let mirror = Mirror::builder(
        Arc::new(GenericRegistry::new(client(
            &dst.host(),
            Credentials::Anonymous,
        ))),
        "prod",
    )
    .sources(Sources::new().with_provider(&proxy.host(), provider.clone()))
    .copy_options(CopyOptions {
        concurrency: 1,
        ..CopyOptions::default()
    })
    .build()
    .unwrap();
    let source = Source::parse(&format!("{}/team/app:v1", proxy.host())).unwrap();
    let t = Instant::now();
    let d = mirror.mirror("api", &source).await.unwrap();
    assert_eq!(&d.digest, img.digest());
    assert_refreshed_during_copy(t, tokens, &provider, "source");
}
