//! Provider scenarios every cloud provider crate instantiates against its emulator: anchors
//! under a native retention document ([`AnchorHarness`]) and the provider's registries as
//! image sources ([`SourceHarness`]). A provider writes the harness (how its own API lists
//! tags, how its retention document would judge a listing, how its emulator refuses or
//! expires credentials); [`provider_suite!`](crate::provider_suite) turns each scenario into
//! its own `#[tokio::test]`.
//!
//! | scenario | proves |
//! |---|---|
//! | [`anchored_while_in_use`] | an image in use gets an anchor tag the native retention keeps, listings show it anchored and never show the tag, a sweep releases it once unused (the image stays), `protect` anchors it again |
//! | [`handed_out_survives_retention`] | an old image a fresh deployer just handed out again (a skip) carries a mark the native retention keeps, hidden from listings, removed once the grace has passed |
//! | [`mirrored_with_source_credentials`] | an image in the provider's registry is mirrored with its source credentials; refused credentials are an error naming the source registry |
//! | [`tokens_renewed_mid_copy`] | a source token expiring in the middle of a long copy is renewed |

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::{Fault, FaultProxy, Rule, TestImage, TestRegistry};
use crate::image::{anchor_tag, ANCHOR_TAG_PREFIX, HANDED_OUT_TAG_PREFIX};
use crate::inuse::References;
use crate::mirror::{Mirror, Source, SourceCredentials, Sources};
use crate::registry::{GenericRegistry, Registry, Repository};
use crate::retry::{Clock, ManualClock};
use crate::store::http::credentials::Credentials;
use crate::store::http::RegistryClient;
use crate::strategy::ClusterStrategy;
use crate::{Action, CopyOptions, Error};

/// A provider's registry with a native retention document, on its emulator.
#[async_trait]
pub trait AnchorHarness: Send + Sync {
    /// The registry under test (its retention document on).
    fn registry(&self) -> Arc<dyn Registry>;

    /// Every manifest of `repository` with all its tags (anchors and marks included), as
    /// the provider's own API lists them: (digest, tags).
    async fn native_tags(&self, repository: &str) -> Vec<(String, Vec<String>)>;

    /// The digests the retention document of `repository` would delete, every image of
    /// `listing` being `days` old (the provider's documented rules).
    async fn expired_after(
        &self,
        repository: &str,
        listing: &[(String, Vec<String>)],
        days: u64,
    ) -> BTreeSet<String>;

    /// Calls that removed a tag alone so far, when the provider counts them apart.
    fn tag_removals(&self) -> Option<usize> {
        None
    }
}

fn layout_source(dir: &std::path::Path, name: &str, seed: u64) -> Source {
    let path = dir.join(name);
    let image = TestImage::builder().seed(seed).layers([3000]).build();
    image.write_layout(&path, "1.0").expect("write a layout");
    Source::parse(&format!("oci:{}:1.0", path.display())).expect("a layout source")
}

fn cluster_mirror(registry: Arc<dyn Registry>, clock: Option<Arc<ManualClock>>) -> Mirror {
    let retention = Duration::from_secs(2 * 24 * 3600);
    let b = Mirror::builder(registry, "prod").strategy(Arc::new(ClusterStrategy::new(retention)));
    let b = match clock {
        Some(c) => b.clock(c),
        None => b,
    };
    b.build().expect("a mirror")
}

/// See the module docs.
pub async fn anchored_while_in_use<H: AnchorHarness>(h: &H) {
    let registry = h.registry();
    let running = References::default();
    let retention = Duration::from_secs(2 * 24 * 3600);
    let mirror = Mirror::builder(registry.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(retention)))
        .in_use_source(Arc::new(running.clone()))
        .build()
        .expect("a mirror");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let deploy = |name: &'static str, seed| {
        let (mirror, source) = (&mirror, layout_source(dir.path(), name, seed));
        async move { mirror.mirror("ops", &source).await.expect("a deploy") }
    };
    let (backup, report) = (deploy("backup", 1).await, deploy("report", 2).await);
    let repo = backup.repository.clone();

    // The cluster starts to use `backup`: the next deploy anchors it.
    running.set([backup.pull_reference.clone()]);
    let third = deploy("third", 3).await;
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
    let anchor = anchor_tag(&backup.digest);
    let tags = h.native_tags(&repo).await;
    let with_anchor: Vec<_> = tags.iter().filter(|(_, t)| t.contains(&anchor)).collect();
    assert_eq!(with_anchor.len(), 1, "{tags:?}");
    assert_eq!(with_anchor[0].0, backup.digest.to_string());

    // Listings show it anchored and never show the tag.
    let images = registry.list_images(&Repository::listed(&repo)).await;
    let images = images.expect("a listing");
    assert_eq!(images.len(), 3);
    for image in &images {
        assert_eq!(image.anchored, image.digest == backup.digest, "{image:?}");
        let shown = image.tags.iter().any(|t| t.starts_with(ANCHOR_TAG_PREFIX));
        assert!(!shown, "{image:?}");
    }

    // The document the registry holds, as if ten days had passed: all but the anchored go.
    let expired = h.expired_after(&repo, &tags, 10).await;
    assert!(!expired.contains(&backup.digest.to_string()));
    assert!(expired.contains(&report.digest.to_string()));
    assert!(expired.contains(&third.digest.to_string()));

    // Nobody uses it any more: the sweep releases the anchor; the image stays.
    running.set(Vec::<String>::new());
    let none = Default::default();
    let swept = mirror.sweep(SystemTime::now(), &none, false).await;
    let swept = swept.expect("a sweep");
    assert!(swept.deleted.is_empty(), "nothing has expired yet");
    let released = vec![(repo.clone(), backup.digest.clone())];
    assert_eq!(swept.protected.released, released);
    if let Some(n) = h.tag_removals() {
        assert_eq!(n, 1);
    }
    let tags = h.native_tags(&repo).await;
    assert!(tags.iter().all(|(_, t)| !t.contains(&anchor)), "{tags:?}");
    let digest = backup.digest.to_string();
    assert!(tags.iter().any(|(d, _)| *d == digest), "the image stays");
    let images = registry.list_images(&Repository::listed(&repo)).await;
    let images = images.expect("a listing");
    assert!(images.iter().all(|i| !i.anchored));
    assert!(images.iter().any(|i| i.digest == backup.digest));
    // And it can be read whole from the data plane.
    let store = registry
        .store(&Repository::listed(&repo))
        .await
        .expect("a store");
    assert!(store.get_manifest(&digest).await.is_ok());

    // In use again: anchored again (the tag pushed anew).
    running.set([backup.pull_reference.clone()]);
    let in_use = mirror.in_use(&Default::default()).await.expect("in use");
    let again = mirror.protect(&in_use).await.expect("protect");
    assert_eq!(again.anchored.len(), 1);
    let tags = h.native_tags(&repo).await;
    let anchored = tags
        .iter()
        .any(|(d, t)| *d == digest && t.contains(&anchor));
    assert!(anchored, "{tags:?}");
}

/// See the module docs.
pub async fn handed_out_survives_retention<H: AnchorHarness>(h: &H) {
    let registry = h.registry();
    let clock = ManualClock::new(SystemTime::now());
    let cluster = || cluster_mirror(registry.clone(), Some(clock.clone()));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let old = layout_source(dir.path(), "old", 7);
    let first = cluster().mirror("ops", &old).await.expect("a deploy");
    let other = layout_source(dir.path(), "other", 8);
    let other = cluster().mirror("ops", &other).await.expect("a deploy");
    let repo = first.repository.clone();

    // A fresh deployer process hands the (by now old) image out again: a skip. It cannot
    // tell the push time without a control-plane call, so it marks the image.
    let skip = cluster().mirror("web", &old).await.expect("a skip");
    assert_eq!(skip.action, Action::Skipped);
    assert!(skip.warnings.is_empty(), "{:?}", skip.warnings);
    let tags = h.native_tags(&repo).await;
    let marked = |t: &[String]| t.iter().any(|t| t.starts_with(HANDED_OUT_TAG_PREFIX));
    let with_mark: Vec<_> = tags.iter().filter(|(_, t)| marked(t)).collect();
    assert_eq!(with_mark.len(), 1, "{tags:?}");
    assert_eq!(with_mark[0].0, first.digest.to_string());

    // The document the registry holds, every image ten days old (the handed-out one too):
    // the other image goes, never the one just handed out.
    let expired = h.expired_after(&repo, &tags, 10).await;
    assert!(!expired.contains(&first.digest.to_string()), "{expired:?}");
    assert!(expired.contains(&other.digest.to_string()), "{expired:?}");

    // Listings hide the mark and show the protection.
    let images = registry.list_images(&Repository::listed(&repo)).await;
    let images = images.expect("a listing");
    let handed = images
        .iter()
        .find(|i| i.digest == first.digest)
        .expect("listed");
    assert!(handed.protected_until.is_some_and(|u| u > clock.now()));
    assert!(!marked(&handed.tags));

    // Once the grace has passed, the next protect removes the mark.
    clock.advance(Duration::from_secs(30 * 60));
    let report = cluster()
        .protect(&Default::default())
        .await
        .expect("protect");
    let released = (repo.clone(), first.digest.clone());
    assert!(report.released.contains(&released), "{report:?}");
    let tags = h.native_tags(&repo).await;
    assert!(tags.iter().all(|(_, t)| !marked(t)), "{tags:?}");
}

/// A provider's registry as an image source, on its emulator.
#[async_trait]
pub trait SourceHarness: Send + Sync {
    /// The registry host sources are pulled from.
    fn host(&self) -> String;

    /// Pushes `image` as `tag` into a repository of the registry: the source without its tag
    /// (`<host>/<repository>`).
    async fn push(&self, image: &TestImage, tag: &str) -> String;

    /// The provider's source credentials, serving `extra_host` too (a proxy in front).
    fn sources(&self, extra_host: &str) -> Arc<dyn SourceCredentials>;

    /// Makes the registry or its token endpoint refuse from now on: the credentials to try.
    fn refuse(&self) -> Arc<dyn SourceCredentials>;

    /// Whether a refusal reads as `Credentials` (a token endpoint refusing) as well as
    /// `Unauthorized`.
    fn refusal_may_be_credentials(&self) -> bool {
        false
    }

    /// Token fetches so far, when the credentials are tokens the provider counts.
    fn token_fetches(&self) -> Option<usize> {
        None
    }

    /// Tokens handed out from now on live `lifetime` (only for expiring credentials).
    fn expire_tokens(&self, _lifetime: Duration) {}

    /// How long tokens live in [`tokens_renewed_mid_copy`].
    fn token_lifetime(&self) -> Duration {
        Duration::from_secs(2)
    }
}

fn into(
    destination: &TestRegistry,
    sources: Arc<dyn SourceCredentials>,
    copy: CopyOptions,
) -> Mirror {
    let client = RegistryClient::new(&destination.host(), Credentials::Anonymous);
    let registry = GenericRegistry::new(client.expect("a destination client"));
    let b = Mirror::builder(Arc::new(registry), "prod").copy_options(copy);
    let b = b.sources(Sources::new().with_source_credentials(sources));
    b.build().expect("a mirror")
}

/// See the module docs.
pub async fn mirrored_with_source_credentials<H: SourceHarness>(h: &H) {
    let image = TestImage::builder().seed(9).layers([5000, 7000]).build();
    let other = TestImage::builder().seed(10).layer(3000).build();
    let repo = h.push(&image, "1.0").await;
    h.push(&other, "2.0").await;
    let (host, before) = (h.host(), h.token_fetches());
    let destination = TestRegistry::start();
    let mirror = into(&destination, h.sources(&host), CopyOptions::default());
    let source = Source::parse(&format!("{repo}:1.0")).expect("a source");
    let d = mirror
        .mirror("api", &source)
        .await
        .expect("a mirrored image");
    assert_eq!(d.action, Action::Copied);
    assert_eq!(&d.digest, image.digest());
    if let (Some(before), Some(after)) = (before, h.token_fetches()) {
        assert_eq!(after - before, 1, "one token for the whole copy");
    }

    // The source refuses now: an error naming the source registry.
    let mirror = into(&destination, h.refuse(), CopyOptions::default());
    let source = Source::parse(&format!("{repo}:2.0")).expect("a source");
    let err = mirror.mirror("web", &source).await.expect_err("a refusal");
    let unauthorized =
        matches!(&err, Error::Unauthorized { registry, .. } if registry.contains(&host));
    let credentials = h.refusal_may_be_credentials()
        && matches!(&err, Error::Credentials { .. } | Error::Unauthorized { .. })
        && err.to_string().contains(&host);
    assert!(
        unauthorized || credentials,
        "names the source registry: {err:?}"
    );
}

/// See the module docs.
pub async fn tokens_renewed_mid_copy<H: SourceHarness>(h: &H) {
    let image = TestImage::builder()
        .seed(11)
        .layers([30_000, 20_000, 10_000])
        .build();
    let repo = h.push(&image, "1.0").await;
    let repository = repo.split_once('/').map_or("", |(_, r)| r).to_string();
    // Tokens live a few seconds from now on; every blob GET takes 1.5 s: the copy outlives
    // its token.
    h.expire_tokens(h.token_lifetime());
    let proxy = FaultProxy::start(&h.host());
    let delay = Fault::Delay(Duration::from_millis(1500));
    proxy.add(Rule::new(Some("GET"), "/blobs/", delay, 100));
    let destination = TestRegistry::start();
    let copy = CopyOptions {
        concurrency: 1,
        ..CopyOptions::default()
    };
    let mirror = into(&destination, h.sources(&proxy.host()), copy);
    let before = h.token_fetches().unwrap_or(0);
    let source = format!("{}/{repository}:1.0", proxy.host());
    let started = Instant::now();
    let d = mirror
        .mirror("api", &Source::parse(&source).expect("a source"))
        .await;
    let d = d.expect("a mirrored image");
    assert_eq!(d.action, Action::Copied);
    assert_eq!(&d.digest, image.digest());
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let fetched = h.token_fetches().unwrap_or(0) - before;
    assert!(
        fetched >= 2,
        "the token was renewed during the copy ({fetched} fetched)"
    );
}

/// Expands to one `#[tokio::test]` per listed provider scenario (see
/// [`testing::providers`](crate::testing::providers)), each named after its scenario. The
/// constructor is an `async fn` (or a closure returning a future) giving the harness.
///
/// ```no_run
/// # mod demo {
/// # use std::sync::Arc;
/// # use std::collections::BTreeSet;
/// # struct H;
/// # #[async_trait::async_trait]
/// # impl mirror_core::testing::providers::AnchorHarness for H {
/// #     fn registry(&self) -> Arc<dyn mirror_core::Registry> { Arc::new(mirror_core::LayoutRegistry::new(std::env::temp_dir())) }
/// #     async fn native_tags(&self, _: &str) -> Vec<(String, Vec<String>)> { vec![] }
/// #     async fn expired_after(&self, _: &str, _: &[(String, Vec<String>)], _: u64) -> BTreeSet<String> { BTreeSet::new() }
/// # }
/// async fn harness() -> H { H }
/// mirror_core::provider_suite!(harness; anchored_while_in_use, handed_out_survives_retention);
/// # }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! provider_suite {
    ($make:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                let harness = ($make)().await;
                $crate::testing::providers::$scenario(&harness).await;
            }
        )*
    };
}
