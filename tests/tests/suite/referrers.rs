//! Referrers travel with their image: signatures (cosign tags and OCI 1.1), SBOMs and
//! attestations, found at the source through the referrers API, the tag schema or cosign's
//! tags, copied byte for byte before the deploy tag and discoverable at the destination;
//! bounds, cycles, stale lists and hostile answers. Against real distribution 2.8 registries
//! (no referrers API), and an in-process proxy adding the API in front of one. Listing,
//! eviction and sweep: `referrers_lifecycle.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use mirror_core::kit::image::referrers::{
    add_to_schema_index, schema_tag, FoundBy, ReferrerOptions, COSIGN_SIGNATURE,
};
use mirror_core::testing::{Fault, FaultProxy, Rule, TestArtifact, TestIndex, TestRegistry};
use mirror_core::{copy, CopyOptions};
use mirror_core::{Action, Digest, Error, ImageStore, Source};
use tests::referrers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_brings_every_referrer_byte_identical_and_discoverable_through_the_tag_schema() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let signed = Signed::new(1);
    signed
        .push(&store(&src.host(), "team/app"), "1.0", true)
        .await;

    let source = Source::parse(&format!("{}/team/app:1.0", src.host())).unwrap();
    let d = service_mirror(&dst.host(), 1)
        .mirror("api", &source)
        .await
        .unwrap();
    assert_eq!(d.action, Action::Copied);
    assert_eq!(&d.digest, signed.index.digest());
    let expected: BTreeMap<String, usize> = [
        (COSIGN_SIGNATURE.to_string(), 1),
        (BUNDLE.to_string(), 2),
        (SPDX.to_string(), 1),
        (IN_TOTO.to_string(), 2),
    ]
    .into();
    assert_eq!(d.referrers.found, expected, "found, by artifact type");
    assert_eq!(d.referrers.copied, expected, "copied, by artifact type");
    assert!(!d.referrers.truncated);

    // Every referrer is at the destination, byte for byte (as skopeo reads it).
    let repo = "prod/services/api";
    let dst_store = store(&dst.host(), repo);
    for a in signed.all() {
        assert_eq!(
            skopeo_raw(&dst.host(), repo, a.digest()),
            skopeo_raw(&src.host(), "team/app", a.digest()),
            "{} differs",
            a.digest()
        );
        assert_eq!(
            skopeo_raw(&dst.host(), repo, a.digest()),
            a.manifest().bytes
        );
    }
    // A client finds them all there: the registry has no API, so through the tag schema
    // (and cosign's tag).
    let found = discovered(&dst_store, &signed.subjects()).await;
    assert_eq!(
        found.keys().cloned().collect::<BTreeSet<_>>(),
        signed.digests()
    );
    assert_eq!(
        found[signed.cosign.digest()],
        FoundBy::CosignTag(format!("{}.sig", schema_tag(signed.index.digest())))
    );
    for a in signed.with_subject() {
        assert_eq!(found[a.digest()], FoundBy::TagSchema, "{}", a.digest());
    }

    // An independent client reading the tag schema as the spec has it: `GET` of the tag
    // `sha256-<hex>` with an OCI index `Accept`, entries with `artifactType`.
    let raw = reqwest::Client::new()
        .get(format!(
            "http://{}/v2/{repo}/manifests/{}",
            dst.host(),
            schema_tag(signed.index.digest())
        ))
        .header("accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let doc: serde_json::Value = raw.json().await.unwrap();
    let mut types: Vec<&str> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["artifactType"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, [SPDX, BUNDLE]);

    // Order: every referrer manifest was written before the deploy tag.
    let lines = access_lines(&dst);
    let tag_put = lines
        .iter()
        .position(|l| l.starts_with(&format!("PUT /v2/{repo}/manifests/1.0")))
        .expect("the deploy tag was written");
    let mut written: Vec<String> = signed
        .with_subject()
        .iter()
        .map(|a| a.digest().to_string())
        .collect();
    written.push(format!("{}.sig", schema_tag(signed.index.digest())));
    for reference in written {
        let put = lines
            .iter()
            .position(|l| l.starts_with(&format!("PUT /v2/{repo}/manifests/{reference}")))
            .unwrap_or_else(|| panic!("{reference} was never written: {lines:#?}"));
        assert!(put < tag_put, "{reference} written after the tag");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_referrers_api_at_both_ends_the_destination_indexes_them_itself() {
    let src_reg = TestRegistry::start();
    let dst_reg = TestRegistry::start();
    let src = FaultProxy::with_referrers_api(&src_reg.host());
    let dst = FaultProxy::with_referrers_api(&dst_reg.host());
    // One descriptor per page: discovery follows `Link` pagination.
    src.set_referrers_page_size(Some(1));
    let signed = Signed::new(2);
    signed
        .push(&store(&src.host(), "team/app"), "1.0", false)
        .await;
    assert_eq!(
        src.referrers_recorded(),
        5,
        "the source API saw every subject"
    );

    let source = Source::parse(&format!("{}/team/app:1.0", src.host())).unwrap();
    let d = service_mirror(&dst.host(), 1)
        .mirror("api", &source)
        .await
        .unwrap();
    assert_eq!(d.referrers.copied.values().sum::<usize>(), 6);
    assert!(
        src.requests()
            .iter()
            .any(|r| r.contains("/referrers/") && r.contains("last=")),
        "pagination followed: {:#?}",
        src.requests()
    );

    // The destination answered OCI-Subject: it indexes them, no tag-schema index is written.
    let repo = "prod/services/api";
    let dst_store = store(&dst.host(), repo);
    let tags = dst_store.list_tags().await.unwrap();
    assert!(
        tags.iter()
            .all(|t| !t.starts_with("sha256-") || t.ends_with(".sig")),
        "no tag-schema index at an API registry: {tags:?}"
    );
    let found = discovered(&dst_store, &signed.subjects()).await;
    assert_eq!(
        found.keys().cloned().collect::<BTreeSet<_>>(),
        signed.digests()
    );
    for a in signed.with_subject() {
        assert_eq!(found[a.digest()], FoundBy::Api, "{}", a.digest());
    }
    // An independent client reads the API as the spec has it (`+` percent-encoded: in a
    // query it would read as a space).
    let listed: serde_json::Value = reqwest::get(format!(
        "http://{}/v2/{repo}/referrers/{}?artifactType={}",
        dst.host(),
        signed.index.digest(),
        SPDX.replace('+', "%2B")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        listed["manifests"][0]["digest"],
        signed.sbom.digest().to_string()
    );
    assert_eq!(listed["manifests"].as_array().unwrap().len(), 1);
    for a in signed.all() {
        assert_eq!(
            skopeo_raw(&dst.host(), repo, a.digest()),
            a.manifest().bytes,
            "{}",
            a.digest()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_an_api_registry_to_one_without_the_tag_schema_index_is_written() {
    let src_reg = TestRegistry::start();
    let dst = TestRegistry::start();
    let src = FaultProxy::with_referrers_api(&src_reg.host());
    let signed = Signed::new(3);
    signed
        .push(&store(&src.host(), "team/app"), "1.0", false)
        .await;
    let opts = CopyOptions {
        referrers: ReferrerOptions::all(),
        ..CopyOptions::default()
    };
    let dst_store = store(&dst.host(), "copy/app");
    let report = copy(
        &store(&src.host(), "team/app"),
        "1.0",
        &dst_store,
        "1.0",
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(report.referrers.copied.values().sum::<usize>(), 6);
    let listed = schema_index_digests(&dst_store, signed.index.digest()).await;
    assert_eq!(
        listed,
        [signed.signature.digest(), signed.sbom.digest()]
            .into_iter()
            .cloned()
            .collect::<BTreeSet<_>>()
    );
    // Each entry carries the artifact type, as the tag schema requires.
    let index = dst_store
        .get_manifest(&schema_tag(signed.index.digest()))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
    for e in doc["manifests"].as_array().unwrap() {
        assert!(e["artifactType"].is_string(), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_copy_leaves_referrers_unless_asked_and_filters_by_type() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let signed = Signed::new(4);
    let src_store = store(&src.host(), "team/app");
    signed.push(&src_store, "1.0", true).await;

    let plain = store(&dst.host(), "plain/app");
    let r = copy(&src_store, "1.0", &plain, "1.0", &CopyOptions::default())
        .await
        .unwrap();
    assert!(r.referrers.copied.is_empty());
    for a in signed.all() {
        assert!(!present(&plain, a.digest()).await);
    }

    // Only signatures: the cosign one and the OCI 1.1 bundle of the index. The SBOM stays,
    // and with it its signature.
    let sigs = store(&dst.host(), "sigs/app");
    let opts = CopyOptions {
        referrers: ReferrerOptions::all().with_types([COSIGN_SIGNATURE, BUNDLE]),
        ..CopyOptions::default()
    };
    let r = copy(&src_store, "1.0", &sigs, "1.0", &opts).await.unwrap();
    let expected: BTreeMap<String, usize> =
        [(COSIGN_SIGNATURE.to_string(), 1), (BUNDLE.to_string(), 1)].into();
    assert_eq!(r.referrers.copied, expected);
    assert!(present(&sigs, signed.signature.digest()).await);
    assert!(!present(&sigs, signed.sbom.digest()).await);

    // Only SBOMs: the SBOM, and the signature of the SBOM with it.
    let sboms = store(&dst.host(), "sboms/app");
    let opts = CopyOptions {
        referrers: ReferrerOptions::all().with_types([SPDX]),
        ..CopyOptions::default()
    };
    let r = copy(&src_store, "1.0", &sboms, "1.0", &opts).await.unwrap();
    let expected: BTreeMap<String, usize> = [(SPDX.to_string(), 1), (BUNDLE.to_string(), 1)].into();
    assert_eq!(r.referrers.copied, expected);
    assert!(present(&sboms, signed.sbom_signature.digest()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyclic_and_unbounded_referrer_graphs_terminate_within_the_bounds() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let src_store = store(&src.host(), "team/app");
    let image = mirror_core::testing::TestImage::builder().seed(5).build();
    image.push(&src_store, "1.0").await.unwrap();
    let a = TestArtifact::builder(BUNDLE)
        .subject(image.manifest())
        .build();
    a.push(&src_store, None).await.unwrap();
    // A hostile or confused tag schema: the image's index lists the referrer and the image
    // itself; the referrer's index lists the image back.
    let image_desc = mirror_core::media::Descriptor {
        media_type: image.manifest().media_type.clone(),
        digest: image.digest().clone(),
        size: image.manifest().bytes.len() as u64,
        artifact_type: Some(BUNDLE.into()),
        platform: None,
        annotations: None,
    };
    add_to_schema_index(
        &src_store,
        image.digest(),
        &[a.descriptor(), image_desc.clone()],
    )
    .await
    .unwrap();
    add_to_schema_index(&src_store, a.digest(), &[image_desc])
        .await
        .unwrap();
    let opts = CopyOptions {
        referrers: ReferrerOptions::all(),
        ..CopyOptions::default()
    };
    let dst_store = store(&dst.host(), "cycle/app");
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        copy(&src_store, "1.0", &dst_store, "1.0", &opts),
    )
    .await
    .expect("a cyclic graph terminates")
    .unwrap();
    assert_eq!(
        r.referrers.found.values().sum::<usize>(),
        1,
        "{:?}",
        r.referrers
    );
    assert!(present(&dst_store, a.digest()).await);

    // A loop between two referrers (b's index lists a back), and a referrer that is also a
    // child of the index holding its subject.
    let looped = mirror_core::testing::TestImage::builder().seed(8).build();
    looped.push(&src_store, "looped").await.unwrap();
    let ra = TestArtifact::builder(BUNDLE)
        .payload(BUNDLE, "{\"ra\":1}")
        .subject(looped.manifest())
        .build();
    let rb = TestArtifact::builder(BUNDLE)
        .payload(BUNDLE, "{\"rb\":1}")
        .subject(ra.manifest())
        .build();
    for r in [&ra, &rb] {
        r.push(&src_store, None).await.unwrap();
    }
    add_to_schema_index(&src_store, looped.digest(), &[ra.descriptor()])
        .await
        .unwrap();
    add_to_schema_index(&src_store, ra.digest(), &[rb.descriptor()])
        .await
        .unwrap();
    add_to_schema_index(&src_store, rb.digest(), &[ra.descriptor()])
        .await
        .unwrap();
    let r = copy(&src_store, "looped", &dst_store, "looped", &opts)
        .await
        .unwrap();
    assert_eq!(r.referrers.copied_total(), 2, "{:?}", r.referrers);
    let (p1, p2) = (
        mirror_core::testing::TestImage::builder()
            .seed(9)
            .platform("linux/amd64")
            .build(),
        mirror_core::testing::TestImage::builder()
            .seed(10)
            .platform("linux/arm64")
            .build(),
    );
    let child_att = TestArtifact::builder(IN_TOTO)
        .subject(p1.manifest())
        .build();
    let index = tests::oci_index(vec![
        tests::descriptor(p1.manifest(), Some("linux/amd64")),
        tests::descriptor(p2.manifest(), Some("linux/arm64")),
        tests::descriptor(child_att.manifest(), None),
    ]);
    p1.push(&src_store, &p1.digest().to_string()).await.unwrap();
    p2.push(&src_store, &p2.digest().to_string()).await.unwrap();
    child_att.push(&src_store, None).await.unwrap();
    add_to_schema_index(&src_store, p1.digest(), &[child_att.descriptor()])
        .await
        .unwrap();
    src_store.put_manifest("withchild", &index).await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        copy(&src_store, "withchild", &dst_store, "withchild", &opts),
    )
    .await
    .expect("a referrer that is also a child terminates")
    .unwrap();
    assert!(!r.referrers.truncated);
    assert!(present(&dst_store, child_att.digest()).await);

    // A chain of 6 signatures of signatures: depth 4 is followed, the rest reported.
    let deep_image = mirror_core::testing::TestImage::builder().seed(6).build();
    deep_image.push(&src_store, "deep").await.unwrap();
    let mut subject = deep_image.manifest().clone();
    let mut chain = Vec::new();
    for i in 0..6 {
        let sig = TestArtifact::builder(BUNDLE)
            .payload(BUNDLE, format!("{{\"level\":{i}}}"))
            .subject(&subject)
            .build();
        sig.push(&src_store, None).await.unwrap();
        add_to_schema_index(&src_store, &subject.digest, &[sig.descriptor()])
            .await
            .unwrap();
        subject = sig.manifest().clone();
        chain.push(sig);
    }
    let r = copy(&src_store, "deep", &dst_store, "deep", &opts)
        .await
        .unwrap();
    assert!(r.referrers.truncated, "the depth bound is reported");
    assert_eq!(r.referrers.copied[BUNDLE], 4);
    for (i, sig) in chain.iter().enumerate() {
        let there = present(&dst_store, sig.digest()).await;
        assert_eq!(there, i < 4, "level {i}");
    }

    // Many referrers of one image: the count bound.
    let wide_image = mirror_core::testing::TestImage::builder().seed(7).build();
    wide_image.push(&src_store, "wide").await.unwrap();
    let mut entries = Vec::new();
    for i in 0..5 {
        let sig = TestArtifact::builder(BUNDLE)
            .payload(BUNDLE, format!("{{\"n\":{i}}}"))
            .subject(wide_image.manifest())
            .build();
        sig.push(&src_store, None).await.unwrap();
        entries.push(sig.descriptor());
    }
    add_to_schema_index(&src_store, wide_image.digest(), &entries)
        .await
        .unwrap();
    let mut bounded = opts.clone();
    bounded.referrers.max_count = 3;
    let r = copy(&src_store, "wide", &dst_store, "wide", &bounded)
        .await
        .unwrap();
    assert!(r.referrers.truncated);
    assert_eq!(r.referrers.copied[BUNDLE], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrer_that_cannot_be_copied_fails_the_deploy_and_nothing_is_tagged() {
    let src_reg = TestRegistry::start();
    let dst = TestRegistry::start();
    let src = FaultProxy::start(&src_reg.host());
    let signed = Signed::new(30);
    signed
        .push(&store(&src.host(), "team/app"), "1.0", true)
        .await;
    // The SBOM's manifest arrives corrupted, every time.
    src.add(Rule::new(
        Some("GET"),
        &format!("/manifests/{}", signed.sbom.digest()),
        Fault::FlipByte(10),
        1000,
    ));
    let source = Source::parse(&format!("{}/team/app:1.0", src.host())).unwrap();
    let err = service_mirror(&dst.host(), 1)
        .mirror("api", &source)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DigestMismatch { ref expected, .. } if expected == signed.sbom.digest()),
        "{err:?}"
    );
    let tags = store(&dst.host(), "prod/services/api")
        .list_tags()
        .await
        .unwrap();
    assert!(
        !tags.contains(&"1.0".to_string()),
        "tagged without its SBOM: {tags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_pushed_by_oras_with_a_subject_travels_with_the_image() {
    let python = oras_python();
    let src_reg = TestRegistry::start();
    let dst = TestRegistry::start();
    let src = FaultProxy::with_referrers_api(&src_reg.host());
    let index = TestIndex::linux_amd64_arm64(40);
    let src_store = store(&src.host(), "team/app");
    index.push(&src_store, "1.0").await.unwrap();

    // oras (a third-party client) pushes an SBOM whose subject is the index.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("sbom.spdx.json"),
        br#"{"spdxVersion":"SPDX-2.3"}"#,
    )
    .unwrap();
    let script = format!(
        r#"
import oras.client, oras.oci
c = oras.client.OrasClient(hostname="{host}", insecure=True)
subject = oras.oci.Subject(mediaType="{media}", digest="{digest}", size={size})
r = c.push(target="{host}/team/app:sbom", files=["sbom.spdx.json:{spdx}"],
           manifest_config="/dev/null:application/vnd.example.sbom.config.v1+json",
           subject=subject, disable_path_validation=True, quiet=True)
print(r.headers.get("Docker-Content-Digest"))
"#,
        host = src.host(),
        media = index.manifest().media_type,
        digest = index.digest(),
        size = index.manifest().bytes.len(),
        spdx = SPDX,
    );
    let out = Command::new(&python)
        .current_dir(work.path())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed = Digest::parse(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(
        src.referrers_recorded(),
        1,
        "the source API indexed oras's artifact"
    );

    let source = Source::parse(&format!("{}/team/app:1.0", src.host())).unwrap();
    let d = service_mirror(&dst.host(), 1)
        .mirror("api", &source)
        .await
        .unwrap();
    assert_eq!(
        d.referrers.copied.values().sum::<usize>(),
        1,
        "{:?}",
        d.referrers
    );
    let repo = "prod/services/api";
    assert_eq!(
        skopeo_raw(&dst.host(), repo, &pushed),
        skopeo_raw(&src_reg.host(), "team/app", &pushed),
        "oras's manifest is copied byte for byte"
    );
    let found = discovered(&store(&dst.host(), repo), &[index.digest().clone()]).await;
    assert_eq!(found.keys().cloned().collect::<Vec<_>>(), vec![pushed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_tag_schema_entry_is_skipped_and_reported_not_fatal() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let src_store = store(&src.host(), "team/app");
    let image = mirror_core::testing::TestImage::builder().seed(80).build();
    image.push(&src_store, "1.0").await.unwrap();
    let kept = TestArtifact::builder(BUNDLE)
        .subject(image.manifest())
        .build();
    let deleted = TestArtifact::builder(SPDX)
        .subject(image.manifest())
        .build();
    kept.push(&src_store, None).await.unwrap();
    deleted.push(&src_store, None).await.unwrap();
    add_to_schema_index(
        &src_store,
        image.digest(),
        &[kept.descriptor(), deleted.descriptor()],
    )
    .await
    .unwrap();
    // Deleted at the source by a client that leaves the index as it was.
    src_store.delete_manifest(deleted.digest()).await.unwrap();

    let source = Source::parse(&format!("{}/team/app:1.0", src.host())).unwrap();
    let d = service_mirror(&dst.host(), 1)
        .mirror("api", &source)
        .await
        .unwrap();
    assert_eq!(d.referrers.missing, vec![deleted.digest().clone()]);
    assert_eq!(d.referrers.copied_total(), 1);
    let dst_store = store(&dst.host(), "prod/services/api");
    let found = discovered(&dst_store, &[image.digest().clone()]).await;
    assert_eq!(
        found.keys().cloned().collect::<Vec<_>>(),
        vec![kept.digest().clone()],
        "the destination lists only what it holds"
    );
    // The same at the destination (an untagged-image rule of a registry removed the
    // referrer, its index stayed): the inventory still reads, without it.
    let mirror = service_mirror(&dst.host(), 1);
    dst_store.delete_manifest(kept.digest()).await.unwrap();
    let inv = mirror.inventory().await.unwrap();
    let img = &inv.repositories[0].images[0];
    assert_eq!(&img.digest, image.digest());
    assert!(img.referrers.is_empty(), "{img:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_referrers_answers_are_clear_errors_and_nothing_is_tagged() {
    let dst = TestRegistry::start();
    let image = mirror_core::testing::TestImage::builder().seed(90).build();
    let opts = CopyOptions {
        referrers: ReferrerOptions::all(),
        ..CopyOptions::default()
    };
    let cases: Vec<(u16, &'static str, Option<String>, &str)> = vec![
        (200, "this is not json", None, "unreadable page"),
        (
            200,
            r#"{"manifests": [{"digest": 7}]}"#,
            None,
            "unreadable `manifests`",
        ),
        (
            200,
            r#"{"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "size": 2, "artifactType": "x"}]}"#,
            Some("http://127.0.0.1:1/v2/app/referrers/x".into()),
            "another origin",
        ),
        (500, "{}", None, "500"),
    ];
    for (i, (status, body, link, expect)) in cases.into_iter().enumerate() {
        let host = hostile_referrers(&image, status, body, link).await;
        let mut no_retry = opts.clone();
        no_retry.retry = mirror_core::kit::retry::RetryConfig::none();
        let dst_store = store(&dst.host(), &format!("hostile/case{i}"));
        let err = tokio::time::timeout(
            Duration::from_secs(60),
            copy(&store(&host, "app"), "1.0", &dst_store, "1.0", &no_retry),
        )
        .await
        .expect("no hang")
        .unwrap_err();
        assert!(
            err.to_string().contains(expect),
            "case {i}: expected {expect:?} in {err}"
        );
        assert!(
            dst_store.head_manifest("1.0").await.unwrap().is_none(),
            "case {i}: tagged despite the failure"
        );
    }
}

/// The Python of a virtualenv holding the `oras` package (PyPI), from `ORAS_PYTHON`.
fn oras_python() -> String {
    match std::env::var("ORAS_PYTHON") {
        Ok(p) if std::path::Path::new(&p).is_file() => p,
        _ => panic!(
            "ORAS_PYTHON must name a python with the `oras` package; set it up with: \
             ORAS_PYTHON=\"$(scripts/oras.sh)\" (scripts/test.sh does this)"
        ),
    }
}

/// A registry answering the referrers API with `answer` (status, body, extra headers), and
/// serving one image manifest under `/manifests/`, for hostile-answer tests.
async fn hostile_referrers(
    image: &mirror_core::testing::TestImage,
    status: u16,
    body: &'static str,
    link: Option<String>,
) -> String {
    use axum::response::IntoResponse;
    tests::hostile::HostileRegistry::open()
        .image("app", image)
        .route(
            "/v2/app/referrers/{digest}",
            axum::routing::get(move || {
                let link = link.clone();
                async move {
                    let mut resp = (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/vnd.oci.image.index.v1+json")],
                        body,
                    )
                        .into_response();
                    if let Some(l) = link {
                        resp.headers_mut()
                            .insert("link", format!("<{l}>; rel=\"next\"").parse().unwrap());
                    }
                    resp
                }
            }),
        )
        .serve()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_filter_says_that_the_index_referrers_stay_behind() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let signed = Signed::new(110);
    signed
        .push(&store(&src.host(), "team/app"), "1.0", true)
        .await;
    let mirror = mirror_core::Mirror::builder(generic(&dst.host()), "prod")
        .strategy(std::sync::Arc::new(mirror_core::ServiceStrategy {
            keep_previous: 1,
        }))
        .copy_options(CopyOptions {
            platforms: vec![mirror_core::PlatformFilter::parse("linux/amd64").unwrap()],
            ..CopyOptions::default()
        })
        .build()
        .unwrap();
    let source = Source::parse(&format!("{}/team/app:1.0", src.host())).unwrap();
    let d = mirror.mirror("api", &source).await.unwrap();
    let amd64 = &signed.index.images()[0];
    assert_eq!(
        &d.digest,
        amd64.digest(),
        "one platform: its manifest is the image"
    );
    assert_eq!(d.referrers.index_referrers_left, 3, "{:?}", d.referrers);
    assert!(
        d.warnings.iter().any(
            |w| matches!(w, mirror_core::Warning::IndexReferrersLeft { .. })
                && w.to_string().contains("platform filter")
        ),
        "{:?}",
        d.warnings
    );
    let dst_store = store(&dst.host(), "prod/services/api");
    assert!(
        present(&dst_store, signed.attestations[0].digest()).await,
        "the amd64 attestation travels"
    );
    assert!(!present(&dst_store, signed.signature.digest()).await);
}
