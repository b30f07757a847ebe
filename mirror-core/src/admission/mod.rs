//! A mutating admission webhook's core (feature `admission`): every pod of the cluster, not
//! only the deployer's, runs its images from the mirror registry, pinned by digest.
//!
//! [`AdmissionController::review`] takes the body of an `AdmissionReview` of a Pod as the API
//! server sends it and answers the `AdmissionReview` to send back (`kube`'s admission
//! types): a JSON patch replacing the image of each container, init container and ephemeral
//! container with its digest-pinned mirror reference (`mirror-host/<cluster>/mirror@sha256:…`)
//! through a [`Mirror`] in **Cluster mode** (one repository per cluster: an admission request
//! carries no service identity).
//!
//! # The budget
//!
//! The API server waits at most the webhook's `timeoutSeconds` (≤ 30 s, 10 s by default).
//!
//! - An image already mirrored is rewritten at once (the [`Mirror`]'s skip: manifest HEADs).
//! - A miss starts the copy in the background, one at a time per image whatever the number
//!   of concurrent admissions of it (a single flight per image and credential set; within
//!   it the [`Mirror`] single-flights per digest too), and the admission waits for it up to
//!   [`AdmissionConfig::budget`] (lowered to the API server's `?timeout=` minus a second). A
//!   copy not done by then leaves the image unchanged ([`Outcome::Pending`]): the pod pulls
//!   from the source this once, the copy goes on, and the next pod gets the mirror.
//! - [`AdmissionConfig::strict`] denies such pods instead, with a message saying why
//!   ([`Denial`]), for clusters that cannot reach the sources.
//! - Nothing blocks past the budget, and any failure (source, mirror registry, Kubernetes
//!   API, a malformed review, a panic) answers `allowed` with no patch for what failed
//!   ([`Outcome::Failed`]), or the typed denial in strict mode.
//!
//! # Private sources
//!
//! A pod's `imagePullSecrets` and its service account's, read through the Kubernetes API
//! (`get` on `secrets` and `serviceaccounts`; only the `auths` of `kubernetes.io/dockerconfigjson`
//! and `kubernetes.io/dockercfg` secrets, so no credential helper is ever run), are the source
//! credentials of that pod's images and of nobody else's: each credential set has its own
//! source clients and flights. The webhook's own [`Sources`] serve the hosts a pod has no
//! credentials for; give them only credentials every pod of the cluster may use.
//!
//! Before a pod is given the mirror's copy, the source is asked (a manifest HEAD, its answer
//! kept [`AdmissionConfig::access_ttl`]) whether the pod's credentials can read it: a pod
//! that could not pull an image from its source does not get it from the mirror either
//! ([`ImageOutcome::NotReadable`]). A source that cannot be reached does not count as a
//! refusal: the mirror serves what it holds (that is what it is for). A registry that
//! answers "not found" to hide a private repository is a refusal too.
//!
//! [`AdmissionConfig::inject_pull_secret`] adds the mirror registry's own pull secret to the
//! `imagePullSecrets` of rewritten pods (on creation; the secret must exist in the pod's
//! namespace), for registries that need one.
//!
//! # Safety
//!
//! - Excluded: the webhook's own namespace and `kube-system` (unless asked), listed
//!   namespaces, pods labelled or annotated [`OPT_OUT`]` = "true"`, images matching an
//!   [`ImagePattern`], images of loopback hosts (the node's own registry).
//! - Images already on the mirror registry pass through ([`ImageOutcome::OnMirror`]), so a
//!   reinvocation changes nothing.
//! - A pod naming an image by digest keeps that digest: the mirror's copy of exactly it.
//! - `dryRun` requests copy nothing and rewrite nothing.
//! - Updates rewrite only the images the update changes (an added ephemeral container, a
//!   changed image), never restart a container by rewriting an image it already runs.
//!
//! # Service mode from the owning workload
//!
//! Not supported: the admission request names no service. One could be derived from the
//! pod's owner chain (`metadata.ownerReferences`: a ReplicaSet's Deployment needs one `get`
//! per admission, cached) or from a label such as `app.kubernetes.io/name` (free), and
//! passed as the service of [`Mirror::mirror_from`] on a Service-mode `Mirror`. But
//! Service mode evicts the service's older images after each deploy, and a webhook sees
//! every pod of a rollout, of a rollback and of a scale-up: the eviction would have to keep
//! whatever the workload's ReplicaSets still name, which is what Cluster mode's retention
//! with in-use discovery and `sweep` already does, for every pod.
//!
//! # Metrics and logs
//!
//! Counters [`ADMISSIONS`] and [`ADMISSION_IMAGES`] by `outcome` (`rewritten`,
//! `unchanged`, `pending`, `excluded`, `failed`, `denied`), the histogram
//! [`ADMISSION_SECONDS`], [`LOOKUPS_STARTED`], [`LOOKUPS_FINISHED`] by `result` (`copied`:
//! a copy an admission started) and the gauge [`LOOKUPS_IN_PROGRESS`]; one `info` event per
//! image (namespace, pod, container, image, outcome, pinned reference, digest) and one per
//! admission, target `mirror_core::admission`.

mod config;
mod credentials;
mod flight;
mod pod;
mod report;
mod review;

use std::sync::Arc;

pub use config::{AdmissionConfig, ImagePattern, DEFAULT_BUDGET, DEFAULT_MAX_BODY, OPT_OUT};
pub use report::{
    AdmissionReport, ContainerKind, Denial, Exclusion, ImageOutcome, ImageReport, Outcome,
    ADMISSIONS, ADMISSION_IMAGES, ADMISSION_SECONDS, LOOKUPS_FINISHED, LOOKUPS_IN_PROGRESS,
    LOOKUPS_STARTED,
};
pub use review::Answer;

use crate::mirror::{Mirror, Sources};
use crate::reference::Reference;
use crate::registry::RepositoryScope;

/// The service id the admissions' deploys carry (Cluster mode does not use it).
pub const SERVICE: &str = "admission";

/// Why an [`AdmissionController`] cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// A setting is invalid.
    #[error("admission configuration: {0}")]
    Config(String),
    /// The mirror registry cannot serve pods.
    #[error("the mirror registry cannot serve pods: {0}")]
    Registry(#[from] crate::Error),
}

/// Counts since the controller was built (the metrics say the same, per process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionStats {
    /// Background lookups started (single flights).
    pub lookups_started: u64,
    /// Lookups that copied an image.
    pub copies: u64,
    /// Lookups that failed.
    pub failures: u64,
}

/// Builds an [`AdmissionController`].
pub struct AdmissionControllerBuilder {
    mirror: Arc<Mirror>,
    config: AdmissionConfig,
    sources: Option<Arc<Sources>>,
    kubernetes: Option<kube::Client>,
}

impl std::fmt::Debug for AdmissionControllerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionControllerBuilder")
            .field("cluster", &self.mirror.cluster())
            .field("config", &self.config)
            .field("kubernetes", &self.kubernetes.is_some())
            .finish()
    }
}

impl AdmissionControllerBuilder {
    /// The configuration (default [`AdmissionConfig::default`]).
    pub fn config(mut self, config: AdmissionConfig) -> Self {
        self.config = config;
        self
    }

    /// The webhook's own source credentials, for hosts a pod has none for (default
    /// [`Sources::new`]: the process's docker config, else anonymous). Every pod of the
    /// cluster gets what these can read.
    pub fn sources(mut self, sources: Sources) -> Self {
        self.sources = Some(Arc::new(sources));
        self
    }

    /// The Kubernetes API the pods' pull secrets are read from (without it, only
    /// [`sources`](Self::sources) open sources).
    pub fn kubernetes(mut self, client: kube::Client) -> Self {
        self.kubernetes = Some(client);
        self
    }

    /// Checks the configuration and the mirror registry (it must hand out registry
    /// references: not an OCI layout) and builds.
    pub fn build(self) -> Result<AdmissionController, AdmissionError> {
        self.config.validate()?;
        let registry = self.mirror.registry();
        let repository = registry.repository(&RepositoryScope::Cluster {
            cluster: self.mirror.cluster().to_string(),
        })?;
        let sample = registry.pull_reference(&repository, &crate::Digest::sha256_of(b""));
        let mirror_host = Reference::parse(&sample)
            .map_err(|_| {
                AdmissionError::Config(format!(
                    "the {} registry hands out {sample}, which no kubelet can pull",
                    registry.provider()
                ))
            })?
            .registry()
            .to_string();
        let sources = self.sources.unwrap_or_else(|| Arc::new(Sources::new()));
        let inner = review::Inner::new(
            self.mirror,
            self.config,
            sources,
            self.kubernetes,
            mirror_host,
            repository.name().to_string(),
        );
        Ok(AdmissionController {
            inner: Arc::new(inner),
        })
    }
}

/// Answers AdmissionReviews of Pods (see the [module docs](self)). Cheap to clone (one
/// shared state: flights, caches, clients).
///
/// ```no_run
/// # async fn demo(registry: std::sync::Arc<mirror_core::GenericRegistry>, body: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mirror_core::admission::{AdmissionConfig, AdmissionController};
/// use mirror_core::{ClusterStrategy, Mirror};
///
/// let mirror = Mirror::builder(registry, "prod-eu")
///     .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(30 * 86_400))))
///     .build()?;
/// let webhook = AdmissionController::builder(Arc::new(mirror))
///     .config(AdmissionConfig::default().with_own_namespace("mirror"))
///     .build()?;
/// // `body`: the POST body the API server sent; `?timeout=10s` from its URL.
/// let answer = webhook.review(&body, Some(Duration::from_secs(10))).await;
/// println!("{}", answer.report.outcome);
/// let reply: Vec<u8> = answer.to_json(); // the body to answer with (200, application/json)
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AdmissionController {
    inner: Arc<review::Inner>,
}

impl std::fmt::Debug for AdmissionController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionController")
            .field("cluster", &self.inner.mirror.cluster())
            .field("mirror_host", &self.inner.mirror_host)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl AdmissionController {
    /// A builder around `mirror`, which must be in Cluster mode (a `Mirror` whose deploys
    /// land elsewhere than the cluster repository fails every admission, unchanged).
    pub fn builder(mirror: Arc<Mirror>) -> AdmissionControllerBuilder {
        AdmissionControllerBuilder {
            mirror,
            config: AdmissionConfig::default(),
            sources: None,
            kubernetes: None,
        }
    }

    /// Answers the review in `body` within the budget (lowered to fit `api_timeout`, the
    /// API server's `?timeout=`). Never fails: what cannot be done is admitted unchanged,
    /// or denied in strict mode.
    pub async fn review(&self, body: &[u8], api_timeout: Option<std::time::Duration>) -> Answer {
        review::review(&self.inner, body, api_timeout).await
    }

    /// The configuration.
    pub fn config(&self) -> &AdmissionConfig {
        &self.inner.config
    }

    /// The mirror registry's host: images there pass through.
    pub fn mirror_host(&self) -> &str {
        &self.inner.mirror_host
    }

    /// Counts since the controller was built.
    pub fn stats(&self) -> AdmissionStats {
        self.inner.flights.stats()
    }

    /// Background lookups under way (copies that outlived their admission among them).
    pub fn lookups_in_progress(&self) -> usize {
        self.inner.flights.in_progress()
    }
}

#[cfg(test)]
mod tests;
