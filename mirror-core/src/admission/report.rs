//! What an admission decided: per image ([`ImageReport`], [`ImageOutcome`]) and for the pod
//! ([`AdmissionReport`], [`Outcome`], [`Denial`]), its metrics and its log lines.

use std::time::Duration;

use serde::Serialize;

use crate::digest::Digest;

/// Admissions, by [`Outcome`].
pub const ADMISSIONS: &str = "mirror_admissions_total";
/// Images looked at by admissions, by [`Outcome`].
pub const ADMISSION_IMAGES: &str = "mirror_admission_images_total";
/// How long admissions took, in seconds, by [`Outcome`].
pub const ADMISSION_SECONDS: &str = "mirror_admission_duration_seconds";
/// Background lookups started (one per image at a time, whatever the number of concurrent
/// admissions of it): a copy, or a skip when the image is mirrored already.
pub const LOOKUPS_STARTED: &str = "mirror_admission_lookups_started_total";
/// Background lookups finished, by `result`: `copied` (a copy started by an admission),
/// `skipped` (already mirrored), `refused` (the pod's credentials cannot read the source),
/// `failed`.
pub const LOOKUPS_FINISHED: &str = "mirror_admission_lookups_finished_total";
/// Background lookups under way (copies still running after their admission answered).
pub const LOOKUPS_IN_PROGRESS: &str = "mirror_admission_lookups_in_progress";

/// What an admission did, for a pod or one of its images: the label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Rewritten to its digest-pinned mirror reference.
    Rewritten,
    /// Passed unchanged: already on the mirror registry, not readable with the pod's
    /// credentials, no image to look at.
    Unchanged,
    /// Its copy did not finish within the budget: admitted unchanged, the copy goes on.
    Pending,
    /// Left alone by configuration: namespace, opt-out, image pattern, dry run.
    Excluded,
    /// Something failed (source, mirror registry, malformed review): admitted unchanged.
    Failed,
    /// Denied (strict mode only).
    Denied,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rewritten => "rewritten",
            Outcome::Unchanged => "unchanged",
            Outcome::Pending => "pending",
            Outcome::Excluded => "excluded",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a pod or an image was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Exclusion {
    /// The pod's namespace is excluded (the webhook's own, `kube-system`, or listed).
    Namespace,
    /// The pod carries the [`OPT_OUT`](super::OPT_OUT) label or annotation.
    OptOut,
    /// A `dryRun` request: nothing is copied, nothing rewritten.
    DryRun,
    /// Neither a pod creation nor a pod update.
    Operation,
    /// The image matches an excluded pattern.
    Pattern,
    /// The image is on a loopback host (its node's, not the webhook's).
    Loopback,
}

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContainerKind {
    /// `spec.containers`.
    Container,
    /// `spec.initContainers`.
    InitContainer,
    /// `spec.ephemeralContainers`.
    EphemeralContainer,
}

impl ContainerKind {
    /// The field of the pod spec (`containers`, `initContainers`, `ephemeralContainers`).
    pub fn field(self) -> &'static str {
        match self {
            ContainerKind::Container => "containers",
            ContainerKind::InitContainer => "initContainers",
            ContainerKind::EphemeralContainer => "ephemeralContainers",
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageOutcome {
    /// Rewritten to `pinned` (`mirror-host/repository@digest`).
    Rewritten {
        /// The digest-pinned mirror reference the pod now names.
        pinned: String,
        /// Its digest: the source's (the digest the pod named, when it named one).
        digest: Digest,
        /// Whether this admission's lookup copied it (else it was mirrored already).
        copied: bool,
    },
    /// The image already names the mirror registry.
    OnMirror,
    /// Left alone by configuration.
    Excluded {
        /// Why.
        why: Exclusion,
    },
    /// The source refused the pod's credentials (or has no such image for them): the pod is
    /// not given the mirror's copy, which it could not pull from the source either.
    NotReadable {
        /// What the source said.
        reason: String,
    },
    /// The copy did not finish within the budget; it goes on in the background.
    Pending,
    /// The lookup or copy failed, or the image is no valid reference.
    Failed {
        /// Why.
        error: String,
    },
}

impl ImageOutcome {
    /// The metric label of this outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            ImageOutcome::Rewritten { .. } => Outcome::Rewritten,
            ImageOutcome::OnMirror | ImageOutcome::NotReadable { .. } => Outcome::Unchanged,
            ImageOutcome::Excluded { .. } => Outcome::Excluded,
            ImageOutcome::Pending => Outcome::Pending,
            ImageOutcome::Failed { .. } => Outcome::Failed,
        }
    }

    /// Whether strict mode denies a pod with this image: it is not served from the mirror
    /// and was not excluded.
    pub fn denied_in_strict_mode(&self) -> bool {
        matches!(
            self,
            ImageOutcome::Pending | ImageOutcome::Failed { .. } | ImageOutcome::NotReadable { .. }
        )
    }
}

/// One image of the pod and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageReport {
    /// The list the container is in.
    pub kind: ContainerKind,
    /// The container's name.
    pub container: String,
    /// The image as the pod named it.
    pub image: String,
    /// What happened.
    pub outcome: ImageOutcome,
}

/// Why strict mode denied a pod. Its `Display` is the message the API server shows
/// (`kubectl` prints it; a controller records it in its events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Denial {
    /// The image's copy into the mirror is under way.
    #[error(
        "image {image} is not in the mirror registry yet: its copy is under way; this cluster \
         runs mirrored images only, create the pod again in a minute"
    )]
    Pending {
        /// The image.
        image: String,
    },
    /// The image could not be mirrored.
    #[error(
        "image {image} could not be mirrored ({error}); this cluster runs mirrored images only"
    )]
    Failed {
        /// The image.
        image: String,
        /// Why.
        error: String,
    },
    /// The pod's pull secrets do not let it read the image at its source.
    #[error(
        "image {image} is not readable with this pod's pull secrets ({reason}); this cluster \
         runs mirrored images only"
    )]
    NotReadable {
        /// The image.
        image: String,
        /// What the source said.
        reason: String,
    },
    /// The review could not be read.
    #[error("the admission review could not be read: {reason}")]
    Malformed {
        /// Why.
        reason: String,
    },
}

impl Denial {
    /// The denial for `report`'s image, when strict mode denies it.
    pub(crate) fn for_image(report: &ImageReport) -> Option<Denial> {
        let image = report.image.clone();
        match &report.outcome {
            ImageOutcome::Pending => Some(Denial::Pending { image }),
            ImageOutcome::Failed { error } => Some(Denial::Failed {
                image,
                error: error.clone(),
            }),
            ImageOutcome::NotReadable { reason } => Some(Denial::NotReadable {
                image,
                reason: reason.clone(),
            }),
            _ => None,
        }
    }
}

/// What one admission decided.
#[derive(Debug, Clone, Serialize)]
pub struct AdmissionReport {
    /// The request's uid (empty when the review could not be read).
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name (its `generateName` prefix when it has no name yet).
    pub pod: String,
    /// Whether the request was a dry run.
    pub dry_run: bool,
    /// The pod's outcome: [`Outcome::Denied`] when denied, else the first of failed,
    /// pending, rewritten, unchanged, excluded that one of its images had (excluded when the
    /// pod itself was).
    pub outcome: Outcome,
    /// Why the whole pod was left alone, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Exclusion>,
    /// Why the review could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
    /// Each image looked at (updates: only the images the update changes).
    pub images: Vec<ImageReport>,
    /// Whether the mirror registry's pull secret was added to the pod.
    pub pull_secret_injected: bool,
    /// Strict mode: why the pod was denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    /// How long the admission took.
    pub elapsed: Duration,
}

impl AdmissionReport {
    /// An empty report for request `uid`.
    pub(crate) fn new(uid: &str) -> Self {
        AdmissionReport {
            uid: uid.to_string(),
            namespace: String::new(),
            pod: String::new(),
            dry_run: false,
            outcome: Outcome::Unchanged,
            excluded: None,
            malformed: None,
            images: Vec::new(),
            pull_secret_injected: false,
            denial: None,
            elapsed: Duration::ZERO,
        }
    }

    /// The pod's outcome from its images (see [`outcome`](Self::outcome)).
    pub(crate) fn settle(&mut self) {
        self.outcome = if self.denial.is_some() {
            Outcome::Denied
        } else if self.malformed.is_some() {
            Outcome::Failed
        } else if self.excluded.is_some() {
            Outcome::Excluded
        } else {
            let has = |o: Outcome| self.images.iter().any(|i| i.outcome.outcome() == o);
            [
                Outcome::Failed,
                Outcome::Pending,
                Outcome::Rewritten,
                Outcome::Unchanged,
            ]
            .into_iter()
            .find(|o| has(*o))
            .unwrap_or(if self.images.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Excluded
            })
        };
    }

    /// Records the metrics and writes the log lines of this admission: one per image
    /// (namespace, pod, container, image, outcome, pinned reference and digest, reason) and
    /// one for the pod.
    pub(crate) fn record(&self) {
        let outcome = self.outcome.as_str();
        metrics::counter!(ADMISSIONS, "outcome" => outcome).increment(1);
        metrics::histogram!(ADMISSION_SECONDS, "outcome" => outcome)
            .record(self.elapsed.as_secs_f64());
        for image in &self.images {
            let o = image.outcome.outcome().as_str();
            metrics::counter!(ADMISSION_IMAGES, "outcome" => o).increment(1);
            let (pinned, digest, detail) = match &image.outcome {
                ImageOutcome::Rewritten {
                    pinned,
                    digest,
                    copied,
                } => (
                    Some(pinned.as_str()),
                    Some(digest.to_string()),
                    Some(if *copied { "copied" } else { "mirrored" }.to_string()),
                ),
                ImageOutcome::Excluded { why } => (
                    None,
                    None,
                    serde_json::to_value(why)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string)),
                ),
                ImageOutcome::NotReadable { reason } => (None, None, Some(reason.clone())),
                ImageOutcome::Failed { error } => (None, None, Some(error.clone())),
                ImageOutcome::OnMirror => (None, None, Some("on the mirror".to_string())),
                ImageOutcome::Pending => (None, None, Some("copy under way".to_string())),
            };
            tracing::info!(
                target: "mirror_core::admission",
                uid = %self.uid,
                namespace = %self.namespace,
                pod = %self.pod,
                container = %image.container,
                image = %image.image,
                outcome = o,
                pinned = pinned.unwrap_or(""),
                digest = digest.as_deref().unwrap_or(""),
                detail = detail.as_deref().unwrap_or(""),
                "admission image"
            );
        }
        tracing::info!(
            target: "mirror_core::admission",
            uid = %self.uid,
            namespace = %self.namespace,
            pod = %self.pod,
            outcome,
            dry_run = self.dry_run,
            images = self.images.len(),
            excluded = self.excluded.map(|e| format!("{e:?}")).unwrap_or_default(),
            malformed = self.malformed.as_deref().unwrap_or(""),
            denial = self.denial.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            elapsed_ms = self.elapsed.as_millis() as u64,
            "admission"
        );
    }
}
