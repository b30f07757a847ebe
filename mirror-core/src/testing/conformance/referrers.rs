//! The referrers scenario: referrers are part of their image in every registry.

use std::time::SystemTime;

use super::super::{TestArtifact, TestImage, TestIndex};
use super::scenarios::{ensure, list, service_repo, settings_a, store_of};
use super::who;
use crate::copy::CopyOptions;
use crate::digest::Digest;
use crate::image::referrers::{discover, schema_tag, ReferrerOptions};
use crate::image::{place, PushTimes, SourceImage};
use crate::registry::Registry;
use crate::store::layout::LayoutStore;

/// The artifact type of the signatures of this scenario (a sigstore bundle).
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Referrers belong to their image: an index `a` with a cosign signature tag, an OCI 1.1
/// signature and SBOM, an attestation of a platform manifest and a signature of the SBOM, and
/// an image `b` with one signature, are placed as [`crate::Mirror`] places them (referrers
/// before the tag, through the registry's referrers API or the tag schema), then `a` again
/// with a signature added since (its tag-schema index rewritten). `list_images` lists
/// exactly the two images (no previous version of an index shows as an image), no referrer tag among their tags, and at least one referrer
/// folded into `a`; `delete_image(a)` leaves only `b`: none of `a`'s referrers and no
/// tag-schema index or cosign tag of `a` is left, and `b`'s signature is still found.
pub async fn referrers(registry: &dyn Registry, cluster: &str) {
    let who = who(registry);
    let repo = service_repo(registry, cluster, "referrers");
    ensure(registry, &repo, &settings_a(), "before pushing").await;
    let dst = store_of(registry, &repo).await;

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary layout: {e}"));
    let src = LayoutStore::create(dir.path())
        .unwrap_or_else(|e| panic!("a layout in {}: {e}", dir.path().display()));
    let a = TestIndex::linux_amd64_arm64(0x5e1);
    let b = TestImage::builder().seed(0x5e2).layer(512).build();
    let cosign = TestArtifact::cosign_signature(a.manifest(), 1);
    let signature = TestArtifact::builder(BUNDLE).subject(a.manifest()).build();
    let sbom = TestArtifact::builder("application/spdx+json")
        .subject(a.manifest())
        .build();
    let sbom_signature = TestArtifact::builder(BUNDLE)
        .payload(BUNDLE, "{\"of\":\"sbom\"}")
        .subject(sbom.manifest())
        .build();
    let attestation = TestArtifact::builder("application/vnd.in-toto+json")
        .subject(a.images()[0].manifest())
        .build();
    let b_signature = TestArtifact::builder(BUNDLE)
        .payload(BUNDLE, "{\"of\":\"b\"}")
        .subject(b.manifest())
        .build();
    let fill = async {
        a.push(&src, "a").await?;
        b.push(&src, "b").await?;
        cosign
            .push(&src, Some(&format!("{}.sig", schema_tag(a.digest()))))
            .await?;
        for r in [
            &signature,
            &sbom,
            &sbom_signature,
            &attestation,
            &b_signature,
        ] {
            r.push(&src, None).await?;
        }
        Ok::<_, crate::Error>(())
    };
    fill.await
        .unwrap_or_else(|e| panic!("filling the source layout failed: {e}"));

    let options = CopyOptions {
        referrers: ReferrerOptions::all(),
        ..CopyOptions::default()
    };
    for (tag, digest) in [("a", a.digest()), ("b", b.digest())] {
        let push_times = if registry.capabilities().records_push_time {
            PushTimes::Recorded
        } else {
            PushTimes::Bookkeeping(SystemTime::now())
        };
        let source = SourceImage {
            store: &src,
            reference: tag,
            digest: Some(digest),
        };
        let report = place(source, dst.as_ref(), tag, &options, push_times)
            .await
            .unwrap_or_else(|e| panic!("{who} placing {tag} with its referrers in {repo}: {e}"));
        let expected = if tag == "a" { 5 } else { 1 };
        assert_eq!(
            report.referrers.copied_total(),
            expected,
            "{who} referrers of {tag} copied into {repo}: {:?}",
            report.referrers
        );
    }

    // A signature added at the source later, and `a` placed again: the tag-schema index is
    // rewritten (registries listing untagged manifests then hold its previous version).
    let late = TestArtifact::builder(BUNDLE)
        .payload(BUNDLE, "{\"late\":true}")
        .subject(a.manifest())
        .build();
    late.push(&src, None)
        .await
        .unwrap_or_else(|e| panic!("pushing a late signature into the layout: {e}"));
    let again = SourceImage {
        store: &src,
        reference: "a",
        digest: Some(a.digest()),
    };
    let report = place(again, dst.as_ref(), "a", &options, PushTimes::Recorded)
        .await
        .unwrap_or_else(|e| panic!("{who} placing a again in {repo}: {e}"));
    assert_eq!(
        report.referrers.copied_total(),
        6,
        "{who} a's referrers, the late one included: {:?}",
        report.referrers
    );

    let images = list(registry, &repo).await;
    let mut digests: Vec<&Digest> = images.iter().map(|r| &r.digest).collect();
    digests.sort();
    let mut expected = vec![a.digest(), b.digest()];
    expected.sort();
    assert_eq!(
        digests, expected,
        "{who} {repo} lists its two images and no referrer as an image of its own: {images:#?}"
    );
    for rec in &images {
        assert!(
            rec.tags.iter().all(|t| !t.starts_with("sha256-")),
            "{who} referrer tags are hidden from the tags of {}: {:?}",
            rec.digest,
            rec.tags
        );
    }
    let rec_a = images.iter().find(|r| &r.digest == a.digest());
    assert!(
        rec_a.is_some_and(|r| !r.referrers.is_empty()),
        "{who} the listing folds a's referrers into it: {rec_a:?}"
    );

    if let Err(e) = registry.delete_image(&repo, a.digest()).await {
        panic!("{who} delete_image({repo}, {}) failed: {e}", a.digest());
    }
    let images = list(registry, &repo).await;
    assert!(
        images.len() == 1 && &images[0].digest == b.digest(),
        "{who} after deleting a, only b is left in {repo}: {images:#?}"
    );
    for r in [
        &cosign,
        &signature,
        &sbom,
        &sbom_signature,
        &attestation,
        &late,
    ] {
        let head = dst.head_manifest(&r.digest().to_string()).await;
        assert!(
            matches!(head, Ok(None)),
            "{who} a's referrer {} is left in {repo} after delete_image: {head:?}",
            r.digest()
        );
    }
    let tags = dst
        .list_tags()
        .await
        .unwrap_or_else(|e| panic!("{who} list_tags of {repo} failed: {e}"));
    let a_subjects = [
        a.digest(),
        a.images()[0].digest(),
        a.images()[1].digest(),
        sbom.digest(),
    ];
    for s in a_subjects {
        assert!(
            !tags.iter().any(|t| t.starts_with(&schema_tag(s))),
            "{who} a tag-schema index or cosign tag of {s} is left in {repo}: {tags:?}"
        );
    }
    let (found, _) = discover(
        dst.as_ref(),
        std::slice::from_ref(b.digest()),
        &ReferrerOptions::all(),
    )
    .await
    .unwrap_or_else(|e| panic!("{who} discovering b's referrers in {repo} failed: {e}"));
    assert!(
        found
            .iter()
            .any(|r| &r.descriptor.digest == b_signature.digest()),
        "{who} b's signature survives the deletion of a: {found:?}"
    );
}
