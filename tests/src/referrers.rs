//! Referrer fixtures and helpers shared by the referrer tests (`tests/tests/suite/referrers*.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mirror_core::kit::image::referrers::{
    add_to_schema_index, discover, schema_tag, FoundBy, ReferrerOptions,
};
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::{HttpStore, RegistryClient};
use mirror_core::testing::{require_tool, TestArtifact, TestIndex};
use mirror_core::{Digest, GenericRegistry, ImageStore, Mirror, ServiceStrategy};

/// The artifact type of the OCI 1.1 signatures of the fixtures (a sigstore bundle).
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The artifact type of the SBOMs of the fixtures.
pub const SPDX: &str = "application/spdx+json";

/// The artifact type of the attestations of the fixtures.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The repository `repo` of the registry at `host`, anonymous.
pub fn store(host: &str, repo: &str) -> HttpStore {
    RegistryClient::new(host, Credentials::Anonymous)
        .unwrap()
        .repository(repo)
        .unwrap()
}

/// A `GenericRegistry` over the registry at `host`, anonymous.
pub fn generic(host: &str) -> Arc<GenericRegistry> {
    Arc::new(GenericRegistry::new(
        RegistryClient::new(host, Credentials::Anonymous).unwrap(),
    ))
}

/// A Service-mode `Mirror` of cluster `prod` on `host`, no eviction grace.
pub fn service_mirror(host: &str, keep_previous: usize) -> Mirror {
    Mirror::builder(generic(host), "prod")
        .strategy(Arc::new(ServiceStrategy { keep_previous }))
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap()
}

/// A two-platform image with everything a signed supply chain attaches to it: a classic
/// cosign signature (tag `sha256-<hex>.sig`), an OCI 1.1 signature and SBOM of the index, an
/// attestation of each platform manifest, and a signature of the SBOM (two levels).
pub struct Signed {
    /// The image.
    pub index: TestIndex,
    /// Its classic cosign signature (tag `sha256-<hex>.sig`).
    pub cosign: TestArtifact,
    /// An OCI 1.1 signature of the index.
    pub signature: TestArtifact,
    /// An SBOM of the index.
    pub sbom: TestArtifact,
    /// One attestation per platform manifest.
    pub attestations: Vec<TestArtifact>,
    /// A signature of the SBOM.
    pub sbom_signature: TestArtifact,
}

impl Signed {
    /// The fixture set of `seed`.
    pub fn new(seed: u64) -> Self {
        let index = TestIndex::linux_amd64_arm64(seed);
        let sbom = TestArtifact::builder(SPDX)
            .payload(
                SPDX,
                format!("{{\"spdxVersion\":\"SPDX-2.3\",\"seed\":{seed}}}"),
            )
            .subject(index.manifest())
            .annotation("org.opencontainers.image.created", "2026-12-01T00:00:00Z")
            .build();
        Signed {
            cosign: TestArtifact::cosign_signature(index.manifest(), seed),
            signature: TestArtifact::builder(BUNDLE)
                .payload(BUNDLE, format!("{{\"bundle\":{seed}}}"))
                .subject(index.manifest())
                .build(),
            attestations: index
                .images()
                .iter()
                .map(|img| {
                    TestArtifact::builder(IN_TOTO)
                        .payload(IN_TOTO, format!("{{\"predicate\":\"{}\"}}", img.digest()))
                        .subject(img.manifest())
                        .build()
                })
                .collect(),
            sbom_signature: TestArtifact::builder(BUNDLE)
                .payload(BUNDLE, format!("{{\"bundle-of-sbom\":{seed}}}"))
                .subject(sbom.manifest())
                .build(),
            sbom,
            index,
        }
    }

    /// The referrers that name a subject (all but the cosign signature).
    pub fn with_subject(&self) -> Vec<&TestArtifact> {
        let mut v = vec![&self.signature, &self.sbom, &self.sbom_signature];
        v.extend(&self.attestations);
        v
    }

    /// Every referrer.
    pub fn all(&self) -> Vec<&TestArtifact> {
        let mut v = self.with_subject();
        v.push(&self.cosign);
        v
    }

    /// The digests of every referrer.
    pub fn digests(&self) -> BTreeSet<Digest> {
        self.all().iter().map(|a| a.digest().clone()).collect()
    }

    /// Pushes the image under `tag` and its referrers. With `tag_schema`, also writes the
    /// referrers tag-schema indexes, as a client does on a registry without the API.
    pub async fn push(&self, store: &dyn ImageStore, tag: &str, tag_schema: bool) {
        self.index.push(store, tag).await.unwrap();
        self.cosign
            .push(
                store,
                Some(&format!("{}.sig", schema_tag(self.index.digest()))),
            )
            .await
            .unwrap();
        for a in self.with_subject() {
            a.push(store, None).await.unwrap();
        }
        if tag_schema {
            add_to_schema_index(
                store,
                self.index.digest(),
                &[self.signature.descriptor(), self.sbom.descriptor()],
            )
            .await
            .unwrap();
            add_to_schema_index(
                store,
                self.sbom.digest(),
                &[self.sbom_signature.descriptor()],
            )
            .await
            .unwrap();
            for (img, att) in self.index.images().iter().zip(&self.attestations) {
                add_to_schema_index(store, img.digest(), &[att.descriptor()])
                    .await
                    .unwrap();
            }
        }
    }

    /// The subjects a discovery starts from: the index and its platform manifests.
    pub fn subjects(&self) -> Vec<Digest> {
        let mut v = vec![self.index.digest().clone()];
        v.extend(self.index.images().iter().map(|i| i.digest().clone()));
        v
    }
}

/// `skopeo inspect --raw` of `host/repo@digest`.
pub fn skopeo_raw(host: &str, repo: &str, digest: &Digest) -> Vec<u8> {
    let skopeo = require_tool("skopeo", "apt-get install -y skopeo");
    let out = Command::new(skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo}@{digest}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect --raw {host}/{repo}@{digest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub use crate::access_lines;

/// Every referrer of `subjects` in `store` (no bound reached), by digest.
pub async fn discovered(store: &dyn ImageStore, subjects: &[Digest]) -> BTreeMap<Digest, FoundBy> {
    let (found, truncated) = discover(store, subjects, &ReferrerOptions::all())
        .await
        .unwrap();
    assert!(!truncated);
    found
        .into_iter()
        .map(|r| (r.descriptor.digest, r.found_by))
        .collect()
}

/// The digests the tag-schema index of `subject` in `store` lists.
pub async fn schema_index_digests(store: &dyn ImageStore, subject: &Digest) -> BTreeSet<Digest> {
    let index = store
        .get_manifest(&schema_tag(subject))
        .await
        .unwrap_or_else(|e| panic!("the tag-schema index of {subject}: {e}"));
    let doc: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
    doc["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no `manifests` in the index of {subject}: {doc}"))
        .iter()
        .map(|e| Digest::parse(e["digest"].as_str().unwrap_or_default()).unwrap())
        .collect()
}

/// Whether `store` holds the manifest `digest`.
pub async fn present(store: &dyn ImageStore, digest: &Digest) -> bool {
    store
        .head_manifest(&digest.to_string())
        .await
        .unwrap_or_else(|e| panic!("HEAD {digest}: {e}"))
        .is_some()
}
