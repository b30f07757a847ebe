//! In-use images: what the cluster may pull again, so that eviction, sweep and the native
//! retention policies the library writes never delete it.
//!
//! An [`InUseSource`] says which image references the cluster uses and by which workloads:
//! [`References`] (the caller's list), [`kubernetes::KubernetesInUse`] (feature
//! `kubernetes`: pods and pod templates through the Kubernetes API), or any other. A
//! [`Mirror`](crate::Mirror) configured with one consults it before every eviction, sweep
//! and inventory, together with the digests the caller passes; the façade (`Mirror`) turns references
//! into digests of the mirror registry.
//!
//! A source that cannot tell is an error, never "nothing in use": eviction and sweep then
//! delete nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use async_trait::async_trait;
use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;

#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub mod kubernetes;

/// What kind of thing uses an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkloadKind {
    /// A running or pending pod.
    Pod,
    /// A Deployment's pod template.
    Deployment,
    /// A ReplicaSet's pod template (also scaled to zero: a rollback target).
    ReplicaSet,
    /// A StatefulSet's pod template.
    StatefulSet,
    /// A DaemonSet's pod template.
    DaemonSet,
    /// A Job's pod template.
    Job,
    /// A CronJob's job template.
    CronJob,
    /// A reference the caller passed.
    Reference,
}

/// Something that uses an image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    /// What it is.
    pub kind: WorkloadKind,
    /// Its namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl Workload {
    /// A workload of `kind` named `name` in `namespace`.
    pub fn new(kind: WorkloadKind, namespace: Option<&str>, name: &str) -> Self {
        Workload {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// One image reference a workload uses, as the cluster wrote it: `host/repo:tag`,
/// `host/repo@sha256:…`, or a container runtime's image id (`docker-pullable://…@sha256:…`,
/// `sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The reference.
    pub reference: String,
    /// Who uses it.
    pub workload: Workload,
}

/// Where in-use images come from.
///
/// # Contract
///
/// - Returns every image reference the cluster may pull again (running pods, and the pod
///   templates that can start new ones), with the workload using it.
/// - A failure to find out (unreachable, refused, a listing that cannot be completed) is an
///   `Err`, never a shorter list: a missing reference lets its image be deleted.
/// - May be called concurrently and repeatedly; each call reflects the cluster at that time.
#[async_trait]
pub trait InUseSource: Send + Sync + fmt::Debug {
    /// The image references in use (see the contract).
    async fn image_uses(&self) -> Result<Vec<ImageUse>>;
}

/// The caller's references, as an [`InUseSource`] (workload kind
/// [`WorkloadKind::Reference`], named after the reference). Clones share the list, which
/// [`References::set`] replaces: a deployer that knows what it runs keeps it current.
#[derive(Debug, Clone, Default)]
pub struct References(std::sync::Arc<std::sync::RwLock<Vec<ImageUse>>>);

impl References {
    /// These references.
    pub fn new<I, S>(references: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let r = References::default();
        r.set(references);
        r
    }

    /// From now on, these references.
    pub fn set<I, S>(&self, references: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let uses = references
            .into_iter()
            .map(|r| {
                let reference = r.into();
                ImageUse {
                    workload: Workload::new(WorkloadKind::Reference, None, &reference),
                    reference,
                }
            })
            .collect();
        match self.0.write() {
            Ok(mut list) => *list = uses,
            Err(poisoned) => *poisoned.into_inner() = uses,
        }
    }
}

#[async_trait]
impl InUseSource for References {
    async fn image_uses(&self) -> Result<Vec<ImageUse>> {
        Ok(match self.0.read() {
            Ok(list) => list.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

/// Digests in use, each with the workloads using it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InUse {
    users: BTreeMap<Digest, BTreeSet<Workload>>,
}

impl InUse {
    /// Nothing in use.
    pub fn new() -> Self {
        InUse::default()
    }

    /// `digest` is used by `workload`.
    pub fn insert(&mut self, digest: Digest, workload: Workload) {
        self.users.entry(digest).or_default().insert(workload);
    }

    /// The caller's digests (workload kind [`WorkloadKind::Reference`]).
    pub fn with_digests<'a>(mut self, digests: impl IntoIterator<Item = &'a Digest>) -> Self {
        for d in digests {
            let w = Workload::new(WorkloadKind::Reference, None, &d.to_string());
            self.insert(d.clone(), w);
        }
        self
    }

    /// Whether `digest` is in use.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.users.contains_key(digest)
    }

    /// Who uses `digest` (empty when nobody does).
    pub fn users(&self, digest: &Digest) -> Vec<Workload> {
        self.users
            .get(digest)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every digest in use.
    pub fn digests(&self) -> HashSet<Digest> {
        self.users.keys().cloned().collect()
    }

    /// How many digests are in use.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether nothing is in use.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The digest a reference or an image id names, if it names one: `…@sha256:<hex>`,
/// `sha256:<hex>`, `docker-pullable://…@sha256:<hex>`.
pub(crate) fn digest_in(reference: &str) -> Option<Digest> {
    let tail = reference.rsplit_once('@').map_or(reference, |(_, d)| d);
    let tail = tail.rsplit_once("://").map_or(tail, |(_, d)| d);
    Digest::parse(tail).ok()
}

/// The uses that name a digest, as an [`InUse`], and the others (by tag).
pub fn pinned(uses: &[ImageUse]) -> (InUse, Vec<&ImageUse>) {
    let mut out = InUse::new();
    let mut by_tag = Vec::new();
    for u in uses {
        match digest_in(&u.reference) {
            Some(d) => out.insert(d, u.workload.clone()),
            None => by_tag.push(u),
        }
    }
    (out, by_tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_read_from_references_and_image_ids() {
        let d = Digest::sha256_of(b"x");
        for r in [
            format!("registry.example/app@{d}"),
            format!("docker-pullable://registry.example/app@{d}"),
            d.to_string(),
            format!("docker://{d}"),
            format!("registry.example:5000/team/app:v1@{d}"),
        ] {
            assert_eq!(digest_in(&r), Some(d.clone()), "{r}");
        }
        for r in ["registry.example/app:v1", "app", "sha256:short"] {
            assert_eq!(digest_in(r), None, "{r}");
        }
    }
}

#[cfg(test)]
mod cluster_properties {
    //! Random clusters (workloads of every kind naming images by digest, by image id or by
    //! tags of other registries) over random listings: no eviction or sweep plan deletes an
    //! image any workload references.

    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use super::*;
    use crate::eviction::{plan_retention, plan_service_eviction};
    use crate::image::ImageRecord;

    const KINDS: [WorkloadKind; 7] = [
        WorkloadKind::Pod,
        WorkloadKind::Deployment,
        WorkloadKind::ReplicaSet,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
    ];

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    /// How a workload names image `n`.
    fn reference(n: u8, form: u8) -> String {
        let d = digest(n);
        match form % 4 {
            0 => format!("mirror.example/prod/mirror@{d}"),
            1 => format!("docker-pullable://mirror.example/prod/mirror@{d}"),
            2 => d.to_string(),
            // A tag of another registry: names nothing in the mirror.
            _ => format!("docker.io/library/app:{n}"),
        }
    }

    fn listing() -> impl Strategy<Value = Vec<(u8, Option<u64>, bool, Option<u8>)>> {
        // (image, age in hours, anchored, orphan of)
        proptest::collection::vec(
            (
                0u8..24,
                proptest::option::of(0u64..500),
                any::<bool>(),
                proptest::option::of(0u8..24),
            ),
            0..24,
        )
    }

    proptest! {
        #[test]
        fn no_plan_deletes_an_image_a_workload_references(
            workloads in proptest::collection::vec((0usize..7, 0u8..24, 0u8..4, 0u8..3), 0..30),
            images in listing(),
            keep in 0usize..3,
            retention_hours in 0u64..200,
            deployed in 0u8..24,
        ) {
            let uses: Vec<ImageUse> = workloads
                .iter()
                .enumerate()
                .map(|(i, (kind, image, form, ns))| ImageUse {
                    reference: reference(*image, *form),
                    workload: Workload::new(KINDS[*kind], Some(&format!("ns{ns}")), &format!("w{i}")),
                })
                .collect();
            let (in_use, _) = pinned(&uses);
            let referenced: HashSet<Digest> = workloads
                .iter()
                .filter(|(_, _, form, _)| form % 4 != 3)
                .map(|(_, image, _, _)| digest(*image))
                .collect();
            prop_assert_eq!(in_use.digests(), referenced.clone());

            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
            let mut seen = HashSet::new();
            let records: Vec<ImageRecord> = images
                .iter()
                .filter(|(n, ..)| seen.insert(*n))
                .map(|(n, age, anchored, orphan_of)| {
                    let mut r = ImageRecord::new("prod/mirror", digest(*n));
                    r.pushed_at = age.map(|h| now - Duration::from_secs(h * 3600));
                    r.anchored = *anchored;
                    r.orphan_of = orphan_of.filter(|o| o != n).map(digest);
                    r
                })
                .collect();
            let service = plan_service_eviction(
                "prod/mirror",
                &records,
                &digest(deployed),
                &in_use.digests(),
                keep,
                now,
                Duration::ZERO,
            );
            let sweep = plan_retention(
                "prod/mirror",
                &records,
                &in_use.digests(),
                now,
                Duration::from_secs(retention_hours * 3600),
                Duration::ZERO,
            );
            for plan in [&service, &sweep] {
                for gone in &plan.delete {
                    prop_assert!(!referenced.contains(&gone.digest), "{} is referenced", gone.digest);
                    prop_assert!(!gone.anchored, "{} is anchored", gone.digest);
                    if let Some(subject) = &gone.orphan_of {
                        prop_assert!(!referenced.contains(subject), "a referrer of the referenced {subject}");
                    }
                }
            }
            // Not vacuous: an unreferenced, unanchored, old image that is no previous image
            // the service keeps goes in the sweep.
            for r in &records {
                let old = r.pushed_at.is_some_and(|t| now.duration_since(t).unwrap_or_default() > Duration::from_secs(retention_hours * 3600));
                if old && !r.anchored && !referenced.contains(&r.digest)
                    && r.orphan_of.as_ref().is_none_or(|s| !referenced.contains(s))
                {
                    prop_assert!(sweep.delete.iter().any(|d| d.digest == r.digest), "{} should expire", r.digest);
                }
            }
        }
    }
}
