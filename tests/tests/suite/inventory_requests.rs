//! What an inventory, a refresh and a sweep cost in requests (issue 25), counted from the
//! access log of the real registry (ECR's data plane too; a proxy in front of the Artifact
//! Registry and Scaleway fakes' data planes, which read their registry with the library's
//! client to answer their APIs) and from the emulators' control-plane call logs:
//!
//! - a cold inventory sends one request per distinct manifest, the tag listings, the
//!   catalog and one referrers-API probe: no manifest is asked twice, and no tag the tag
//!   listing does not show (a cosign tag, a tag-schema index) is asked at all;
//! - a refresh of the same `Mirror` with nothing changed reads no manifest: one HEAD per tag
//!   and per untagged referrer, the listings; after one new image, one manifest read;
//! - what the inventory shows is what the image-by-image reading showed before;
//! - a sweep asks no tag the listing does not show and deletes each manifest once; on ECR
//!   and Artifact Registry (the provider kit's `CloudRegistry`) through the control plane,
//!   ECR in `BatchDeleteImage` calls of up to 100 digests, Artifact Registry one
//!   `versions.delete` per digest.
//!
//! `cargo test -p tests --test suite -- inventory_requests --nocapture` prints the counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mirror_core::kit::image::referrers::parse_referrer_tag;
use mirror_core::kit::image::{children, image_details};
use mirror_core::registry::Repository;
use mirror_core::testing::{TestImage, TestIndex, TestRegistry};
use mirror_core::{ClusterStrategy, Digest, ImageStore, Inventory, Mirror, Registry, Source};
use tests::referrers::{generic, store, Signed};

/// A request of an access log: method, and what it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    /// `HEAD`/`GET` of `/v2/<repository>/manifests/<reference>`.
    Manifest {
        method: String,
        repository: String,
        reference: String,
    },
    /// `DELETE` of a manifest.
    Delete {
        repository: String,
        reference: String,
    },
    /// `GET /v2/<repository>/tags/list`.
    Tags,
    /// `GET /v2/<repository>/referrers/<digest>`.
    Referrers,
    /// `GET /v2/_catalog`.
    Catalog,
    /// Anything else (the `/v2/` ping, blobs).
    Other(String),
}

fn asked(line: &str) -> Asked {
    let (method, rest) = line.split_once(' ').unwrap_or((line, ""));
    let path = rest.split('?').next().unwrap_or(rest);
    let Some(tail) = path.strip_prefix("/v2/") else {
        return Asked::Other(line.to_string());
    };
    if tail.starts_with("_catalog") {
        return Asked::Catalog;
    }
    if let Some((repository, reference)) = tail.split_once("/manifests/") {
        if method == "DELETE" {
            return Asked::Delete {
                repository: repository.to_string(),
                reference: reference.to_string(),
            };
        }
        return Asked::Manifest {
            method: method.to_string(),
            repository: repository.to_string(),
            reference: reference.to_string(),
        };
    }
    if tail.ends_with("/tags/list") {
        return Asked::Tags;
    }
    if tail.contains("/referrers/") {
        return Asked::Referrers;
    }
    Asked::Other(line.to_string())
}

/// What the repositories held before the call: every tag with its digest, and every
/// manifest reachable (tagged roots, children of indexes, entries of tag-schema indexes).
#[derive(Debug, Default)]
struct Held {
    tags: BTreeMap<String, BTreeMap<String, Digest>>,
    manifests: BTreeMap<String, BTreeSet<Digest>>,
}

impl Held {
    /// Read through plain stores (not counted: taken before the call).
    async fn read(registry: &dyn Registry, repositories: &[Repository]) -> Held {
        let mut held = Held::default();
        for repo in repositories {
            let s = registry.store(repo).await.unwrap();
            let mut tags = BTreeMap::new();
            let mut reachable = BTreeSet::new();
            for t in s.list_tags().await.unwrap() {
                let d = s.head_manifest(&t).await.unwrap().unwrap().digest;
                tags.insert(t, d.clone());
                reachable.insert(d);
            }
            let mut pending: Vec<Digest> = reachable.iter().cloned().collect();
            while let Some(d) = pending.pop() {
                let m = s.get_manifest(&d.to_string()).await.unwrap();
                let mut next = children(&m, "held").unwrap_or_default();
                if mirror_core::kit::image::referrers::is_referrers_index(&m) {
                    let doc: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
                    for e in doc["manifests"].as_array().unwrap() {
                        next.push(Digest::parse(e["digest"].as_str().unwrap()).unwrap());
                    }
                }
                for n in next {
                    if s.head_manifest(&n.to_string()).await.unwrap().is_some()
                        && reachable.insert(n.clone())
                    {
                        pending.push(n);
                    }
                }
            }
            held.tags.insert(repo.name().to_string(), tags);
            held.manifests.insert(repo.name().to_string(), reachable);
        }
        held
    }

    fn manifest_count(&self) -> usize {
        self.manifests.values().map(BTreeSet::len).sum()
    }

    /// Tags that are not bookkeeping (push times, hand-out marks): those a listing asks.
    fn asked_tags(&self) -> usize {
        self.tags
            .values()
            .flat_map(|t| t.keys())
            .filter(|t| !t.starts_with("mirror.pushed.") && !t.starts_with("mirror.anchor.until."))
            .count()
    }

    /// Manifests no tag names (children, referrers pushed by digest).
    fn untagged(&self) -> usize {
        self.manifests
            .iter()
            .map(|(repo, all)| {
                let tagged: BTreeSet<&Digest> = self.tags[repo].values().collect();
                all.iter().filter(|d| !tagged.contains(d)).count()
            })
            .sum()
    }
}

/// Requests of one call, sorted by kind.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    gets: usize,
    heads: usize,
    deletes: usize,
    tag_lists: usize,
    referrers: usize,
    catalog: usize,
    other: usize,
}

/// Counts `lines`, checking what no listing may do: ask a tag the repository does not have
/// (`held` says which it has), ask one manifest twice (by tag or digest, any method;
/// `again` names manifests that may be asked up to `times` times: those a provider's own
/// listing reads besides, a sweep's second look before it deletes), or delete one twice.
fn count(
    what: &str,
    lines: &[String],
    held: &Held,
    (again, times): (&BTreeSet<Digest>, usize),
) -> Counts {
    let mut c = Counts {
        total: lines.len(),
        ..Counts::default()
    };
    let mut seen: BTreeMap<(String, Digest), usize> = BTreeMap::new();
    let mut deleted: BTreeSet<(String, String)> = BTreeSet::new();
    for line in lines {
        match asked(line) {
            Asked::Manifest {
                method,
                repository,
                reference,
            } => {
                if method == "GET" {
                    c.gets += 1;
                } else {
                    c.heads += 1;
                }
                let digest = match Digest::parse(&reference) {
                    Ok(d) => d,
                    Err(_) => match held.tags.get(&repository).and_then(|t| t.get(&reference)) {
                        Some(d) => d.clone(),
                        None => panic!(
                            "{what}: asked the tag {reference} of {repository}, which the tag \
                             listing does not show ({})",
                            if parse_referrer_tag(&reference).is_some() {
                                "a referrer tag"
                            } else {
                                "not a referrer tag"
                            }
                        ),
                    },
                };
                let n = seen
                    .entry((repository.clone(), digest.clone()))
                    .or_default();
                *n += 1;
                let allowed = if again.contains(&digest) { times } else { 1 };
                assert!(
                    *n <= allowed,
                    "{what}: the manifest {digest} of {repository} was asked {n} times:\n{}",
                    lines.join("\n")
                );
            }
            Asked::Delete {
                repository,
                reference,
            } => {
                c.deletes += 1;
                assert!(
                    deleted.insert((repository.clone(), reference.clone())),
                    "{what}: {reference} of {repository} deleted twice:\n{}",
                    lines.join("\n")
                );
            }
            Asked::Tags => c.tag_lists += 1,
            Asked::Referrers => c.referrers += 1,
            Asked::Catalog => c.catalog += 1,
            Asked::Other(_) => c.other += 1,
        }
    }
    c
}

/// The requests of the library's own clients (an emulator reading its registry to answer
/// its control plane is no request of ours): the access log's lines with our user agent.
fn ours(reg: &TestRegistry) -> Vec<String> {
    reg.log()
        .lines()
        .filter(|l| l.contains("\"mirror-core/"))
        .filter_map(|l| {
            let rest = &l[l.find('"')? + 1..];
            Some(rest[..rest.find(" HTTP/")?].to_string())
        })
        .collect()
}

fn layout_source(dir: &Path, seed: u64) -> Source {
    let path = dir.join(format!("img{seed}"));
    TestImage::builder()
        .seed(seed)
        .layers([1000 + seed, 2000])
        .build()
        .write_layout(&path, "1.0")
        .unwrap();
    Source::parse(&format!("oci:{}:1.0", path.display())).unwrap()
}

fn index_source(dir: &Path, seed: u64) -> Source {
    let path = dir.join(format!("index{seed}"));
    TestIndex::linux_amd64_arm64(seed)
        .write_layout(&path, "1.0")
        .unwrap();
    Source::parse(&format!("oci:{}:1.0", path.display())).unwrap()
}

/// A signed two-platform index pushed to `src` and mirrored for the service `signed`: a
/// cosign tag, OCI 1.1 referrers in tag-schema indexes (distribution 2.8 has no referrers
/// API), a referrer of a referrer.
async fn mirror_signed(mirror: &Mirror, src: &TestRegistry, seed: u64) -> Signed {
    let signed = Signed::new(seed);
    signed
        .push(&store(&src.host(), "team/signed"), "1", true)
        .await;
    let source = Source::parse(&format!("{}/team/signed:1", src.host())).unwrap();
    mirror.mirror("signed", &source).await.unwrap();
    signed
}

/// The registry `dst` of cluster `prod`, its `n` repositories and what they hold.
async fn listed(dst: &TestRegistry, n: usize) -> (Arc<dyn Registry>, Vec<Repository>, Held) {
    let registry: Arc<dyn Registry> = generic(&dst.host());
    let repositories = registry.list_repositories("prod").await.unwrap();
    assert_eq!(repositories.len(), n);
    let held = Held::read(registry.as_ref(), &repositories).await;
    (registry, repositories, held)
}

fn images(inv: &Inventory) -> usize {
    inv.repositories.iter().map(|r| r.images.len()).sum()
}

/// The same inventory, but for when it was taken (nothing else may differ).
fn content(inv: &Inventory) -> serde_json::Value {
    serde_json::to_value(inv).unwrap()
}

fn row(provider: &str, call: &str, images: usize, manifests: usize, c: &Counts, control: &str) {
    println!(
        "| {provider} | {call} | {images} | {manifests} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {control} |",
        c.total,
        c.total as f64 / images.max(1) as f64,
        c.gets,
        c.heads,
        c.deletes,
        c.tag_lists,
        c.referrers,
        c.catalog + c.other,
    );
}

fn header() {
    println!(
        "| provider | call | images | manifests | data-plane requests | per image | manifest GET | manifest HEAD | DELETE | tag lists | referrers API | catalog, other | control plane |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_reads_each_manifest_once_and_a_refresh_reads_none() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let mirror = tests::referrers::service_mirror(&dst.host(), 10);
    for s in 0..3u64 {
        for i in 0..3u64 {
            let d = mirror
                .mirror(&format!("svc{s}"), &layout_source(dir.path(), s * 10 + i))
                .await
                .unwrap();
            assert!(d.evicted.is_empty());
        }
    }
    mirror
        .mirror("multi", &index_source(dir.path(), 40))
        .await
        .unwrap();
    let signed = mirror_signed(&mirror, &src, 7).await;
    let (registry, repositories, held) = listed(&dst, 5).await;

    // A fresh process's Mirror: nothing cached.
    let fresh = tests::referrers::service_mirror(&dst.host(), 10);
    let before = ours(&dst).len();
    let cold = fresh.inventory().await.unwrap();
    let lines = ours(&dst)[before..].to_vec();
    let none = BTreeSet::new();
    let c = count("cold inventory", &lines, &held, (&none, 1));
    header();
    row(
        "distribution",
        "cold inventory",
        images(&cold),
        held.manifest_count(),
        &c,
        "none",
    );
    assert_eq!(images(&cold), 11);
    // One request per distinct manifest, the tag listings, the catalog, one probe of the
    // referrers API for the whole inventory.
    assert!(c.gets + c.heads <= held.manifest_count(), "{c:?}");
    assert_eq!(c.tag_lists, repositories.len(), "{c:?}");
    assert_eq!(c.referrers, 1, "one probe: {c:?}");
    assert_eq!(c.catalog, 1);
    assert!(
        c.total <= held.manifest_count() + repositories.len() + 2,
        "{c:?}: {lines:#?}"
    );

    // What the inventory shows is what reading image by image shows.
    for repo in &cold.repositories {
        let plain = store(&dst.host(), &repo.repository);
        for img in &repo.images {
            let d = image_details(&plain, &img.digest).await.unwrap();
            assert_eq!(img.size, Some(d.size + d.referrers_size), "{}", img.digest);
            assert_eq!(img.referrers, d.referrers, "{}", img.digest);
        }
        let roots: Vec<Digest> = repo.images.iter().map(|i| i.digest.clone()).collect();
        assert_eq!(
            repo.stored_bytes,
            mirror_core::kit::image::stored_size(&plain, &roots)
                .await
                .unwrap()
        );
    }
    let signed_image = cold
        .repositories
        .iter()
        .flat_map(|r| &r.images)
        .find(|i| &i.digest == signed.index.digest())
        .unwrap();
    assert_eq!(signed_image.referrers.len(), signed.all().len());

    // Refresh, nothing changed: no manifest read; a HEAD per tag and per untagged referrer.
    let before = ours(&dst).len();
    let warm = fresh.inventory().await.unwrap();
    let lines = ours(&dst)[before..].to_vec();
    let c = count("refresh", &lines, &held, (&none, 1));
    row(
        "distribution",
        "refresh, no change",
        images(&warm),
        held.manifest_count(),
        &c,
        "none",
    );
    assert_eq!(c.gets, 0, "no manifest read: {lines:#?}");
    assert!(c.heads <= held.asked_tags() + held.untagged(), "{c:?}");
    assert_eq!(content(&warm), content(&cold), "the same inventory");

    // One new image: one manifest read.
    mirror
        .mirror("svc0", &layout_source(dir.path(), 99))
        .await
        .unwrap();
    let held = Held::read(registry.as_ref(), &repositories).await;
    let before = ours(&dst).len();
    let changed = fresh.inventory().await.unwrap();
    let lines = ours(&dst)[before..].to_vec();
    let c = count("refresh after a change", &lines, &held, (&none, 1));
    row(
        "distribution",
        "refresh, 1 new image",
        images(&changed),
        held.manifest_count(),
        &c,
        "none",
    );
    assert_eq!(images(&changed), 12);
    assert_eq!(c.gets, 1, "the new image's manifest alone: {lines:#?}");
    let stats = fresh.manifest_cache();
    assert!(
        stats.bytes <= stats.max_bytes && stats.manifests > 0,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_asks_no_tag_the_listing_does_not_show_and_deletes_each_manifest_once() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let cluster = |reg: Arc<dyn Registry>| {
        Mirror::builder(reg, "prod")
            .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(86_400))))
            .eviction_grace(Duration::ZERO)
            .build()
            .unwrap()
    };
    let mirror = cluster(generic(&dst.host()));
    for i in 0..12u64 {
        mirror
            .mirror(&format!("svc{}", i % 3), &layout_source(dir.path(), i))
            .await
            .unwrap();
    }
    let signed = mirror_signed(&mirror, &src, 8).await;
    let (_, repositories, held) = listed(&dst, 1).await;
    let later = SystemTime::now() + Duration::from_secs(2 * 86_400);

    header();
    let fresh = cluster(generic(&dst.host()));
    let before = ours(&dst).len();
    let plan = fresh.sweep(later, &Default::default(), true).await.unwrap();
    let lines = ours(&dst)[before..].to_vec();
    // A listing that needs no manifest HEADs the tags; the fold of referrers reads the
    // images that platform manifests' referrers lead to.
    let all: BTreeSet<Digest> = held.manifests.values().flatten().cloned().collect();
    let c = count("dry-run sweep", &lines, &held, (&all, 2));
    row(
        "distribution",
        "sweep, dry run",
        13,
        held.manifest_count(),
        &c,
        "none",
    );
    assert_eq!(plan.plans[0].delete.len(), 13);
    assert_eq!(c.deletes, 0);
    assert!(c.heads <= held.asked_tags(), "{c:?}: {lines:#?}");
    assert!(c.gets <= held.manifest_count(), "{c:?}: {lines:#?}");

    let before = ours(&dst).len();
    let swept = fresh
        .sweep(later, &Default::default(), false)
        .await
        .unwrap();
    let lines = ours(&dst)[before..].to_vec();
    // The listing, then the deletions' own look at what the other images hold (fresh:
    // nothing is deleted on what an older listing said) may each ask a tag and read it.
    let c = count("sweep", &lines, &held, (&all, 4));
    row(
        "distribution",
        "sweep",
        13,
        held.manifest_count(),
        &c,
        "none",
    );
    assert_eq!(swept.deleted.len(), 13, "{:?}", swept.warnings);
    assert!(swept.warnings.is_empty(), "{:?}", swept.warnings);
    // Every manifest but the platform manifests (left to the registry's garbage collection).
    let children = signed.index.images().len();
    assert_eq!(c.deletes, held.manifest_count() - children, "{lines:#?}");
    assert!(
        c.heads + c.gets <= 2 * held.asked_tags() + held.manifest_count(),
        "{c:?}: {lines:#?}"
    );
    let s = store(&dst.host(), repositories[0].name());
    let left = s.list_tags().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// A provider's emulator: its registry, its data-plane registry, and its control-plane
/// call count so far.
struct Emulated {
    name: &'static str,
    registry: Arc<dyn Registry>,
    data: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    control: Box<dyn Fn() -> BTreeMap<String, usize> + Send + Sync>,
    /// Control-plane deletions by digest so far, the digests of each call in order (ECR's
    /// `BatchDeleteImage`, Artifact Registry's `versions.delete`), with the most digests
    /// one call may carry; `None` where the control plane deletes by other names (Scaleway's
    /// image ids) or not at all.
    deletes: Option<(ControlDeletes, usize)>,
}

/// Each control-plane deletion call so far, with the digests it named.
type ControlDeletes = Box<dyn Fn() -> Vec<Vec<String>> + Send + Sync>;

fn delta(after: &BTreeMap<String, usize>, before: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| format!("{k} ×{d}"))
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

async fn on_emulator(e: Emulated, dir: &Path) {
    let mirror = Mirror::builder(e.registry.clone(), "prod")
        .eviction_grace(Duration::ZERO)
        .strategy(Arc::new(mirror_core::ServiceStrategy { keep_previous: 10 }))
        .build()
        .unwrap();
    for i in 0..4u64 {
        mirror
            .mirror(&format!("svc{}", i % 2), &layout_source(dir, 100 + i))
            .await
            .unwrap();
    }
    mirror
        .mirror("svc0", &index_source(dir, 140))
        .await
        .unwrap();
    let repositories = e.registry.list_repositories("prod").await.unwrap();
    assert_eq!(repositories.len(), 2, "{}", e.name);
    let held = Held::read(e.registry.as_ref(), &repositories).await;
    // Every provider lists through the inventory's store (the kit's `CloudRegistry` for
    // ECR and Artifact Registry): no manifest is asked twice, none on a refresh.
    let none = BTreeSet::new();

    let fresh = Mirror::builder(e.registry.clone(), "prod").build().unwrap();
    let (calls, before) = ((e.control)(), (e.data)().len());
    let cold = fresh.inventory().await.unwrap();
    let lines = (e.data)()[before..].to_vec();
    let c = count(e.name, &lines, &held, (&none, 1));
    let control = delta(&(e.control)(), &calls);
    row(
        e.name,
        "cold inventory",
        images(&cold),
        held.manifest_count(),
        &c,
        &control,
    );
    assert_eq!(images(&cold), 5, "{}", e.name);
    assert!(
        c.gets + c.heads <= held.manifest_count(),
        "{}: {c:?}",
        e.name
    );

    let (calls, before) = ((e.control)(), (e.data)().len());
    let warm = fresh.inventory().await.unwrap();
    let lines = (e.data)()[before..].to_vec();
    let c = count(e.name, &lines, &held, (&none, 1));
    let control = delta(&(e.control)(), &calls);
    row(
        e.name,
        "refresh, no change",
        images(&warm),
        held.manifest_count(),
        &c,
        &control,
    );
    assert_eq!(c.gets, 0, "{}: no manifest read: {lines:#?}", e.name);
    assert!(c.heads <= held.asked_tags(), "{}: {c:?}", e.name);
    assert_eq!(content(&warm), content(&cold), "{}", e.name);

    // A sweep of a Cluster-mode repository, everything expired.
    let cluster = || {
        Mirror::builder(e.registry.clone(), "sweep")
            .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(86_400))))
            .eviction_grace(Duration::ZERO)
            .build()
            .unwrap()
    };
    let mirror = cluster();
    for i in 0..6u64 {
        mirror
            .mirror(&format!("svc{i}"), &layout_source(dir, 200 + i))
            .await
            .unwrap();
    }
    let repositories = e.registry.list_repositories("sweep").await.unwrap();
    let held = Held::read(e.registry.as_ref(), &repositories).await;
    let all: BTreeSet<Digest> = held.manifests.values().flatten().cloned().collect();
    let later = SystemTime::now() + Duration::from_secs(2 * 86_400);
    let fresh = cluster();
    for dry_run in [true, false] {
        let (calls, before) = ((e.control)(), (e.data)().len());
        let deletes_before = e.deletes.as_ref().map_or(0, |(d, _)| d().len());
        let report = fresh
            .sweep(later, &Default::default(), dry_run)
            .await
            .unwrap();
        let lines = (e.data)()[before..].to_vec();
        // The listing, then the deletions' own look at what the other images hold.
        let c = count(e.name, &lines, &held, (&all, 4));
        let control = delta(&(e.control)(), &calls);
        let call = if dry_run { "sweep, dry run" } else { "sweep" };
        row(e.name, call, 6, held.manifest_count(), &c, &control);
        assert_eq!(report.plans[0].delete.len(), 6, "{}", e.name);
        let Some((deletes, batch)) = &e.deletes else {
            if !dry_run {
                assert_eq!(report.deleted.len(), 6, "{}: {:?}", e.name, report.warnings);
            }
            continue;
        };
        let calls: Vec<Vec<String>> = deletes()[deletes_before..].to_vec();
        if dry_run {
            assert!(calls.is_empty(), "{}: a dry run deleted {calls:?}", e.name);
            assert_eq!(c.deletes, 0, "{}", e.name);
            continue;
        }
        assert_eq!(report.deleted.len(), 6, "{}: {:?}", e.name, report.warnings);
        assert!(
            report.warnings.is_empty(),
            "{}: {:?}",
            e.name,
            report.warnings
        );
        // Every manifest once, through the control plane alone, in as few calls as the
        // batch allows (these images have no children or referrers: one kind of call).
        assert_eq!(c.deletes, 0, "{}: data-plane deletes: {lines:#?}", e.name);
        let named: Vec<&String> = calls.iter().flatten().collect();
        let once: BTreeSet<&String> = named.iter().copied().collect();
        assert_eq!(
            once.len(),
            named.len(),
            "{}: deleted twice: {calls:?}",
            e.name
        );
        let expected: BTreeSet<String> = all.iter().map(Digest::to_string).collect();
        assert_eq!(
            once.into_iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{}: each manifest deleted once",
            e.name
        );
        assert!(
            calls.iter().all(|c| c.len() <= *batch),
            "{}: {calls:?}",
            e.name
        );
        assert_eq!(
            calls.len(),
            named.len().div_ceil(*batch),
            "{}: deletes batched by {batch}: {calls:?}",
            e.name
        );
    }
}

/// ECR's `BatchDeleteImage` calls by digest (a tag's removal names a tag alone).
fn ecr_deletes(ecr: &provider_aws::testing::EcrEmulator) -> Vec<Vec<String>> {
    ecr.requests("BatchDeleteImage")
        .iter()
        .map(|body| {
            let ids = body["imageIds"].as_array().cloned().unwrap_or_default();
            ids.iter()
                .filter_map(|id| id["imageDigest"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .filter(|digests| !digests.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_requests_on_the_emulators() {
    let dir = tempfile::tempdir().unwrap();
    header();
    let ecr = provider_aws::testing::EcrEmulator::start().await;
    let ecr = Arc::new(ecr);
    let (d, c, x) = (ecr.clone(), ecr.clone(), ecr.clone());
    on_emulator(
        Emulated {
            name: "ECR (moto)",
            registry: Arc::new(ecr.ecr().await),
            data: Box::new(move || ours(d.registry())),
            control: Box::new(move || c.all_calls()),
            deletes: Some((Box::new(move || ecr_deletes(&x)), 100)),
        },
        dir.path(),
    )
    .await;

    // The fake reads its registry with the library's client to answer its API (the docker
    // images listing): our requests are counted by a proxy in front of its data plane.
    let gar = Arc::new(provider_gcp::testing::FakeGar::start().await);
    let proxy = Arc::new(mirror_core::testing::FaultProxy::start(&gar.docker_host()));
    let registry = gar
        .builder()
        .docker_host(proxy.host())
        .build()
        .await
        .unwrap();
    let (c, x) = (gar.clone(), gar.clone());
    on_emulator(
        Emulated {
            name: "Artifact Registry (fake)",
            registry: Arc::new(registry),
            data: Box::new(move || proxy.requests()),
            control: Box::new(move || c.all_calls()),
            // No batch call: one `versions.delete` per digest.
            deletes: Some((
                Box::new(move || {
                    let deleted = x.deleted_versions();
                    deleted
                        .iter()
                        .filter_map(|v| v.rsplit_once('@').map(|(_, d)| vec![d.to_string()]))
                        .collect()
                }),
                1,
            )),
        },
        dir.path(),
    )
    .await;

    // The fake reads its registry with the library's client to answer its API: our
    // requests are counted by a proxy in front of the data plane instead.
    let scw = Arc::new(provider_scaleway::testing::FakeScaleway::start().await);
    let proxy = Arc::new(mirror_core::testing::FaultProxy::start(
        &scw.registry().host(),
    ));
    let registry = scw.builder().registry_host(proxy.host()).build().unwrap();
    let c = scw.clone();
    on_emulator(
        Emulated {
            name: "Scaleway (fake)",
            registry: Arc::new(registry),
            data: Box::new(move || proxy.requests()),
            control: Box::new(move || {
                let mut m = BTreeMap::new();
                for call in c.call_log() {
                    *m.entry(call.operation).or_insert(0) += 1;
                }
                m
            }),
            deletes: None,
        },
        dir.path(),
    )
    .await;
}
