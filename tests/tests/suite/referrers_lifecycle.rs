//! Referrers are part of their image after the copy: folded into it in listings and the
//! inventory (never an image of their own, never a "previous image"), deleted with it by
//! eviction and sweep, orphans swept, a shared platform manifest keeps its own; concurrent
//! writers of one tag-schema index; the CLI. Against real distribution 2.8 registries.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mirror_core::copy::CopyOptions;
use mirror_core::kit::image::referrers::{
    add_to_schema_index, schema_tag, ReferrerKind, ReferrerOptions,
};
use mirror_core::testing::{TestArtifact, TestRegistry};
use mirror_core::{ClusterStrategy, Digest, ImageStore, Mirror};
use tests::referrers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_deletes_the_old_images_referrers_and_the_inventory_shows_one_image_each() {
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let src_store = src.store("team/app");
    let v1 = Signed::new(10);
    let v2 = Signed::new(11);
    let v3 = Signed::new(12);
    v1.push(&src_store, "1", true).await;
    v2.push(&src_store, "2", true).await;
    v3.push(&src_store, "3", true).await;
    let source = |t: &str| src.source("team/app", t);
    let repo = "prod/services/api";
    let dst_store = dst.store(repo);

    // keep_previous 1: referrers are not images, so v1 stays the one previous image.
    let mirror = service_mirror(&dst.host(), 1);
    mirror.mirror("api", &source("1")).await.unwrap();
    let d = mirror.mirror("api", &source("2")).await.unwrap();
    assert!(
        d.evicted.is_empty(),
        "nothing to evict yet: {:?}",
        d.evicted
    );

    let inv = mirror.inventory().await.unwrap();
    let images = &inv
        .repositories
        .iter()
        .find(|r| r.repository == repo)
        .unwrap()
        .images;
    assert_eq!(
        images.len(),
        2,
        "two images, not their referrers: {images:#?}"
    );
    for img in images {
        assert!(
            img.tags.iter().all(|t| !t.starts_with("sha256-")),
            "referrer tags hidden: {:?}",
            img.tags
        );
        assert_eq!(img.count(ReferrerKind::Signature), 3, "{img:#?}");
        assert_eq!(img.count(ReferrerKind::Sbom), 1);
        assert_eq!(img.count(ReferrerKind::Attestation), 2);
        let own = mirror_core::kit::image::image_size(&dst_store, &img.digest)
            .await
            .unwrap();
        assert!(img.size.unwrap() > own, "referrers counted in the size");
    }

    // v3 evicts v1 with everything that belonged to it; v2 and v3 keep theirs.
    let d = mirror.mirror("api", &source("3")).await.unwrap();
    assert_eq!(d.evicted, vec![v1.index.digest().clone()]);
    for a in v1.all() {
        assert!(
            !present(&dst_store, a.digest()).await,
            "v1's referrer {} left behind",
            a.digest()
        );
    }
    let tags = dst_store.list_tags().await.unwrap();
    for s in v1.subjects().iter().chain([v1.sbom.digest()]) {
        assert!(
            !tags.iter().any(|t| t.starts_with(&schema_tag(s))),
            "v1's index or cosign tag {s} left behind: {tags:?}"
        );
    }
    for v in [&v2, &v3] {
        let found = discovered(&dst_store, &v.subjects()).await;
        assert_eq!(found.keys().cloned().collect::<BTreeSet<_>>(), v.digests());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_tag_schema_index_keep_each_others_entries() {
    let reg = TestRegistry::start();
    let s = reg.store("race/app");
    for round in 0..4u64 {
        let image = mirror_core::testing::TestImage::builder()
            .seed(100 + round)
            .build();
        image.push(&s, &format!("r{round}")).await.unwrap();
        let mut artifacts = Vec::new();
        for i in 0..6 {
            let a = TestArtifact::builder(BUNDLE)
                .payload(BUNDLE, format!("{{\"round\":{round},\"writer\":{i}}}"))
                .subject(image.manifest())
                .build();
            a.push(&s, None).await.unwrap();
            artifacts.push(a);
        }
        let writers = artifacts.iter().map(|a| {
            let s = &s;
            let subject = image.digest();
            async move { add_to_schema_index(s, subject, &[a.descriptor()]).await }
        });
        for r in futures::future::join_all(writers).await {
            r.unwrap();
        }
        let index = s.get_manifest(&schema_tag(image.digest())).await.unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
        let listed: BTreeSet<String> = doc["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["digest"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = artifacts.iter().map(|a| a.digest().to_string()).collect();
        assert_eq!(listed, expected, "round {round}: an entry was lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployers_bringing_different_referrers_of_one_image_both_land_in_its_index() {
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let signed = Signed::new(20);
    signed.push(&src.store("team/app"), "1.0", true).await;
    let source = src.source("team/app", "1.0");
    let deployer = |types: &[&str]| {
        Mirror::builder(generic(&dst.host()), "prod")
            .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(3600))))
            .referrers(ReferrerOptions::all().with_types(types.iter().copied()))
            .build()
            .unwrap()
    };
    let (sigs, sboms) = (deployer(&[BUNDLE]), deployer(&[SPDX]));
    let (a, b) = tokio::join!(sigs.mirror("web", &source), sboms.mirror("worker", &source));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.pull_reference, b.pull_reference, "one cluster repository");
    let repo = "prod/mirror";
    let listed = schema_index_digests(&dst.store(repo), signed.index.digest()).await;
    assert_eq!(
        listed,
        [signed.signature.digest(), signed.sbom.digest()]
            .into_iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        "both deployers' referrers are in the index"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_deploys_referrers_by_default_and_ls_shows_one_image_with_them() {
    let bin = tokio::task::spawn_blocking(tests::cli::build_cli)
        .await
        .expect("build task");
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let signed = Signed::new(50);
    signed.push(&src.store("team/app"), "1.0", true).await;
    let source = format!("{}/team/app:1.0", src.host());
    let cli = tests::cli::Cli::new(bin, &[], &["--registry", &dst.host(), "--cluster", "prod"]);

    let out = cli.run(&["deploy", "--service", "api", &source]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("; 6 referrers;"), "{stdout}");
    let off = cli.json(&[
        "deploy",
        "--service",
        "bare",
        "--no-referrers",
        "--json",
        &source,
    ]);
    assert!(
        off["referrers"]["copied"].as_object().unwrap().is_empty(),
        "{off}"
    );
    // A bare copy (no registry arguments) brings them when asked, only the types asked for.
    let copy = |args: &[&str]| -> serde_json::Value {
        let out = cli.command().arg("copy").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "mirror copy {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let copy_dst = format!("{}/copies/app:1.0", dst.host());
    let copied = copy(&["--referrers", "--json", &source, &copy_dst]);
    assert_eq!(
        copied["referrers"]["copied"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        6,
        "{copied}"
    );
    let sboms_dst = format!("{}/sboms/app:1.0", dst.host());
    let sboms = copy(&[
        "--referrers",
        "--referrer-type",
        SPDX,
        "--json",
        &source,
        &sboms_dst,
    ]);
    assert_eq!(
        sboms["referrers"]["copied"],
        serde_json::json!({ SPDX: 1, BUNDLE: 1 }),
        "the SBOM and its signature"
    );

    let out = cli.run(&["ls"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("prod/services/api (1 images, "), "{stdout}");
    assert!(
        stdout.contains("[3 signature, 1 sbom, 2 attestation]"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("sha256-"),
        "referrer tags hidden: {stdout}"
    );
    let inv = cli.json(&["ls", "--json"]);
    let repos = inv["repositories"].as_array().unwrap();
    let api = repos
        .iter()
        .find(|r| r["repository"] == "prod/services/api")
        .unwrap();
    assert_eq!(api["images"].as_array().unwrap().len(), 1, "{api}");
    assert_eq!(api["images"][0]["referrers"].as_array().unwrap().len(), 6);
    let bare = repos
        .iter()
        .find(|r| r["repository"] == "prod/services/bare")
        .unwrap();
    assert!(bare["images"][0].get("referrers").is_none(), "{bare}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_whose_image_was_deleted_elsewhere_are_swept_and_an_in_use_image_keeps_its() {
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let src_store = src.store("team/app");
    let gone = Signed::new(60);
    let kept = Signed::new(61);
    gone.push(&src_store, "gone", true).await;
    kept.push(&src_store, "kept", true).await;
    let mirror = Mirror::builder(generic(&dst.host()), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(3600))))
        .build()
        .unwrap();
    for t in ["gone", "kept"] {
        let source = src.source("team/app", t);
        mirror.mirror("api", &source).await.unwrap();
    }
    // Someone deletes the first image by hand, leaving its referrers behind.
    let dst_store = dst.store("prod/mirror");
    dst_store
        .delete_manifest(gone.index.digest())
        .await
        .unwrap();

    // Both images are younger than the retention: only the orphans go.
    let in_use: std::collections::HashSet<Digest> = [kept.index.digest().clone()].into();
    let report = mirror
        .sweep(std::time::SystemTime::now(), &in_use, false)
        .await
        .unwrap();
    let deleted: usize = report.plans.iter().map(|p| p.delete.len()).sum();
    assert!(deleted > 0, "the orphans are swept: {report:?}");
    for p in &report.plans {
        for d in &p.delete {
            assert!(d.orphan_of.is_some(), "only orphans go: {d:?}");
        }
    }
    let tags = dst_store.list_tags().await.unwrap();
    for s in gone.subjects().iter().chain([gone.sbom.digest()]) {
        assert!(
            !tags.iter().any(|t| t.starts_with(&schema_tag(s))),
            "an orphaned tag of {s} is left: {tags:?}"
        );
    }
    // What the orphaned indexes listed went with them (a plain registry does not list
    // untagged manifests, so the listing alone would never show them).
    for a in gone.with_subject() {
        assert!(
            !present(&dst_store, a.digest()).await,
            "an orphaned referrer {} is left",
            a.digest()
        );
    }
    let found = discovered(&dst_store, &kept.subjects()).await;
    assert_eq!(
        found.keys().cloned().collect::<BTreeSet<_>>(),
        kept.digests()
    );
    let images = mirror.inventory().await.unwrap();
    let listed: Vec<&Digest> = images
        .repositories
        .iter()
        .flat_map(|r| r.images.iter().map(|i| &i.digest))
        .collect();
    assert_eq!(listed, vec![kept.index.digest()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_index_keeps_the_referrers_of_a_platform_manifest_that_is_an_image_too() {
    use mirror_core::kit::image::{place, PushTimes, SourceImage};
    use mirror_core::{PlatformFilter, Registry, Repository};
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let src_store = src.store("team/app");
    let signed = Signed::new(70);
    signed.push(&src_store, "1.0", true).await;
    let registry = generic(&dst.host());
    let repo = Repository::listed("prod/mirror");
    let dst_store = dst.store(repo.name());
    let now = std::time::SystemTime::now();
    let source = SourceImage {
        store: &src_store,
        reference: "1.0",
        digest: None,
    };
    let all = CopyOptions {
        referrers: ReferrerOptions::all(),
        ..CopyOptions::default()
    };
    place(
        source,
        &dst_store,
        "full",
        &all,
        PushTimes::Bookkeeping(now),
    )
    .await
    .unwrap();
    // The same source with one platform selected: the image is the amd64 manifest itself.
    let amd64 = CopyOptions {
        platforms: vec![PlatformFilter::parse("linux/amd64").unwrap()],
        ..all.clone()
    };
    let r = place(
        source,
        &dst_store,
        "amd64",
        &amd64,
        PushTimes::Bookkeeping(now),
    )
    .await
    .unwrap();
    let (amd64_image, amd64_attestation) = (&signed.index.images()[0], &signed.attestations[0]);
    assert_eq!(&r.digest, amd64_image.digest());

    registry
        .delete_image(&repo, signed.index.digest())
        .await
        .unwrap();
    assert!(present(&dst_store, amd64_image.digest()).await);
    assert!(
        present(&dst_store, amd64_attestation.digest()).await,
        "the amd64 image keeps its attestation"
    );
    let found = discovered(&dst_store, &[amd64_image.digest().clone()]).await;
    assert!(found.contains_key(amd64_attestation.digest()), "{found:?}");
    for gone in [
        &signed.signature,
        &signed.sbom,
        &signed.attestations[1],
        &signed.cosign,
    ] {
        assert!(
            !present(&dst_store, gone.digest()).await,
            "{} left",
            gone.digest()
        );
    }
    let images = registry.list_images(&repo).await.unwrap();
    assert_eq!(images.len(), 1, "{images:#?}");
    assert_eq!(images[0].tags, ["amd64"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_indexes_sharing_a_platform_manifest_keep_its_attestation_when_one_goes() {
    use mirror_core::testing::{TestImage, TestIndex};
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let src_store = src.store("team/app");
    // A rebuild where only arm64 changed: both indexes hold the same amd64 manifest.
    let amd64 = TestImage::builder()
        .seed(90)
        .platform("linux/amd64")
        .build();
    let arm_v1 = TestImage::builder()
        .seed(91)
        .platform("linux/arm64")
        .build();
    let arm_v2 = TestImage::builder()
        .seed(92)
        .platform("linux/arm64")
        .build();
    let v1 = TestIndex::from_images(vec![amd64.clone(), arm_v1.clone()]);
    let v2 = TestIndex::from_images(vec![amd64.clone(), arm_v2.clone()]);
    v1.push(&src_store, "1").await.unwrap();
    v2.push(&src_store, "2").await.unwrap();
    let shared = TestArtifact::builder(IN_TOTO)
        .subject(amd64.manifest())
        .build();
    let arm_v1_att = TestArtifact::builder(IN_TOTO)
        .subject(arm_v1.manifest())
        .build();
    for (a, s) in [(&shared, &amd64), (&arm_v1_att, &arm_v1)] {
        a.push(&src_store, None).await.unwrap();
        add_to_schema_index(&src_store, s.digest(), &[a.descriptor()])
            .await
            .unwrap();
    }
    let mirror = service_mirror(&dst.host(), 0);
    let source = |t: &str| src.source("team/app", t);
    mirror.mirror("api", &source("1")).await.unwrap();
    let d = mirror.mirror("api", &source("2")).await.unwrap();
    assert_eq!(d.evicted, vec![v1.digest().clone()]);

    let dst_store = dst.store("prod/services/api");
    assert!(
        present(&dst_store, amd64.digest()).await,
        "v2 still holds amd64"
    );
    assert!(
        present(&dst_store, shared.digest()).await,
        "the attestation of the shared amd64 manifest stays with v2"
    );
    let found = discovered(&dst_store, &[amd64.digest().clone()]).await;
    assert!(found.contains_key(shared.digest()), "{found:?}");
    assert!(
        !present(&dst_store, arm_v1_att.digest()).await,
        "v1's own arm64 attestation goes with v1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrer_of_an_untagged_image_stays_while_that_image_is_in_use() {
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    // Someone pushed an image by digest only (no tag: a registry listed by tags cannot show
    // it; pods may run it by digest) and signed it.
    let dst_store = dst.store("prod/mirror");
    let untagged = mirror_core::testing::TestImage::builder().seed(95).build();
    untagged
        .push(&dst_store, &untagged.digest().to_string())
        .await
        .unwrap();
    let sig = TestArtifact::cosign_signature(untagged.manifest(), 95);
    sig.push(
        &dst_store,
        Some(&format!("{}.sig", schema_tag(untagged.digest()))),
    )
    .await
    .unwrap();
    // And the mirror holds an image of its own there.
    let signed = Signed::new(96);
    signed.push(&src.store("team/app"), "1.0", true).await;
    let mirror = Mirror::builder(generic(&dst.host()), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(3600))))
        .build()
        .unwrap();
    let source = src.source("team/app", "1.0");
    let d = mirror.mirror("api", &source).await.unwrap();

    let inv = mirror.inventory().await.unwrap();
    let listed: Vec<&Digest> = inv
        .repositories
        .iter()
        .flat_map(|r| r.images.iter().map(|i| &i.digest))
        .collect();
    assert_eq!(
        listed,
        vec![&d.digest],
        "the signature is no image of its own"
    );
    // Pods run the untagged image by digest: its signature stays.
    let in_use: std::collections::HashSet<Digest> =
        [d.digest.clone(), untagged.digest().clone()].into();
    let later = std::time::SystemTime::now() + Duration::from_secs(7200);
    // What a sweep two hours later, keeping `in_use`, deletes.
    let sweep = |in_use: std::collections::HashSet<Digest>| {
        let mirror = &mirror;
        async move {
            let report = mirror.sweep(later, &in_use, false).await.unwrap();
            let plans = report.plans.into_iter();
            plans
                .flat_map(|p| p.delete.into_iter().map(|i| i.digest))
                .collect::<Vec<_>>()
        }
    };
    let deleted = sweep(in_use).await;
    assert!(
        deleted.is_empty(),
        "nothing of the untagged image goes: {deleted:?}"
    );
    assert!(present(&dst_store, untagged.digest()).await);
    assert!(
        present(&dst_store, sig.digest()).await,
        "its signature stays"
    );

    // Once nothing runs it, the signature is a leftover and goes; the manifest it signed is
    // nobody's image of this listing and is left alone.
    let in_use: std::collections::HashSet<Digest> = [d.digest.clone()].into();
    let deleted = sweep(in_use).await;
    assert_eq!(deleted, vec![sig.digest().clone()]);
    assert!(present(&dst_store, untagged.digest()).await);
    assert!(
        present(&dst_store, &d.digest).await,
        "the in-use image stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_added_after_the_first_mirror_comes_with_refresh_on_skip() {
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let src_store = src.store("team/app");
    let image = mirror_core::testing::TestImage::builder().seed(97).build();
    image.push(&src_store, "1.0").await.unwrap();
    let source = src.source("team/app", "1.0");
    let plain = service_mirror(&dst.host(), 1);
    let first = plain.mirror("api", &source).await.unwrap();
    assert_eq!(first.referrers.copied_total(), 0);

    // CI signs a moment later.
    let sig = TestArtifact::builder(BUNDLE)
        .subject(image.manifest())
        .build();
    sig.push(&src_store, None).await.unwrap();
    add_to_schema_index(&src_store, image.digest(), &[sig.descriptor()])
        .await
        .unwrap();
    let dst_store = dst.store("prod/services/api");
    let skipped = plain.mirror("api", &source).await.unwrap();
    assert_eq!(skipped.action, mirror_core::Action::Skipped);
    assert!(
        !present(&dst_store, sig.digest()).await,
        "a plain skip costs HEADs only and brings nothing"
    );

    let refreshing = Mirror::builder(generic(&dst.host()), "prod")
        .strategy(Arc::new(mirror_core::ServiceStrategy { keep_previous: 1 }))
        .eviction_grace(Duration::ZERO)
        .referrers(ReferrerOptions {
            refresh_on_skip: true,
            ..ReferrerOptions::all()
        })
        .build()
        .unwrap();
    let refreshed = refreshing.mirror("api", &source).await.unwrap();
    assert_eq!(refreshed.action, mirror_core::Action::Skipped);
    assert_eq!(
        refreshed.referrers.copied_total(),
        1,
        "{:?}",
        refreshed.referrers
    );
    assert!(present(&dst_store, sig.digest()).await);
    let found = discovered(&dst_store, &[image.digest().clone()]).await;
    assert_eq!(found.keys().collect::<Vec<_>>(), vec![sig.digest()]);
}
