//! One admission, from the review's bytes to the answer: read, exclude, look up every image
//! within the budget, patch or deny.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;

use super::config::AdmissionConfig;
use super::credentials::{PullSecrets, SourceSets, TtlCache};
use super::flight::{shared, FlightKey, Flights, Joined, Resolved};
use super::pod::{self, PodImage};
use super::report::{AdmissionReport, Denial, Exclusion, ImageOutcome, ImageReport};
use super::SERVICE;
use crate::error::{sanitize, Error, MAX_SHOWN_TEXT};
use crate::mirror::{Action, Mirror, Source, Sources};
use crate::reference::{is_loopback_host, Reference};

/// How long past the budget the answer may come when the work itself hangs (a backstop:
/// every wait inside is bounded by the budget already).
const BACKSTOP: Duration = Duration::from_millis(500);

/// Bytes of a body searched for the request's uid when the body cannot be read whole.
const UID_SNIFF: usize = 64 << 10;

/// The answer to one review.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response (`uid`, `allowed`, the JSON patch, the denial's status, warnings).
    pub response: AdmissionResponse,
    /// What was decided and why.
    pub report: AdmissionReport,
}

impl Answer {
    /// The `AdmissionReview` to send back, as JSON. The patch is base64 text, as the
    /// API documents it (Go's encoding of `[]byte`; kube's types write an array of numbers,
    /// which the API server also reads).
    pub fn to_json(&self) -> Vec<u8> {
        let review = serde_json::to_value(self.response.clone().into_review()).map(|mut v| {
            if let Some(patch) = self.response.patch.as_deref() {
                v["response"]["patch"] = serde_json::Value::String(
                    base64::engine::general_purpose::STANDARD.encode(patch),
                );
            }
            v
        });
        review.and_then(|v| serde_json::to_vec(&v)).unwrap_or_else(|_| {
            // Serialising plain strings and bytes cannot fail; still, never answer nothing.
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":{},"allowed":{}}}}}"#,
                serde_json::Value::String(self.response.uid.clone()),
                self.response.allowed
            )
            .into_bytes()
        })
    }
}

/// The controller's shared state.
pub(crate) struct Inner {
    pub mirror: Arc<Mirror>,
    pub config: AdmissionConfig,
    pub mirror_host: String,
    cluster_repository: String,
    sources: SourceSets,
    secrets: PullSecrets,
    /// (credential set, registry, repository) the source said may be read.
    readable: TtlCache<(String, String, String), ()>,
    pub flights: Flights,
}

impl Inner {
    pub fn new(
        mirror: Arc<Mirror>,
        config: AdmissionConfig,
        sources: Arc<Sources>,
        kubernetes: Option<kube::Client>,
        mirror_host: String,
        cluster_repository: String,
    ) -> Self {
        Inner {
            sources: SourceSets::new(sources, config.source_retry.clone()),
            secrets: PullSecrets::new(kubernetes, config.secret_ttl),
            readable: TtlCache::new(config.access_ttl),
            flights: Flights::new(config.max_flights, config.failure_backoff),
            mirror,
            config,
            mirror_host,
            cluster_repository,
        }
    }
}

/// The admission of `body` (see [`super::AdmissionController::review`]): run in a task of its
/// own, so that a panic is an answer too, and bounded by the budget plus a backstop.
pub(crate) async fn review(
    inner: &Arc<Inner>,
    body: &[u8],
    api_timeout: Option<Duration>,
) -> Answer {
    let started = Instant::now();
    let budget = inner.config.effective_budget(api_timeout);
    let deadline = tokio::time::Instant::now() + budget;
    if body.len() > inner.config.max_body {
        let why = format!("the review is more than {} bytes", inner.config.max_body);
        return malformed(&inner.config, &sniff_uid(body), why, started);
    }
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let why = format!("not an AdmissionReview: {}", sanitize(&e.to_string(), 200));
            return malformed(&inner.config, &sniff_uid(body), why, started);
        }
    };
    let uid = review
        .request
        .as_ref()
        .map(|r| r.uid.clone())
        .unwrap_or_default();
    let work = tokio::spawn(admit(inner.clone(), review, deadline, started));
    let answer = match tokio::time::timeout_at(deadline + BACKSTOP, work).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => failed(
            &inner.config,
            &uid,
            format!("the admission ended early: {e}"),
            started,
        ),
        Err(_) => failed(
            &inner.config,
            &uid,
            "the admission took longer than its budget".to_string(),
            started,
        ),
    };
    answer
}

/// A review that could not be read: allowed unchanged, denied in strict mode.
fn malformed(config: &AdmissionConfig, uid: &str, why: String, started: Instant) -> Answer {
    let mut report = AdmissionReport::new(uid);
    report.malformed = Some(why.clone());
    if config.strict {
        report.denial = Some(Denial::Malformed { reason: why });
    }
    finish(response_for(uid), report, started)
}

/// An admission whose work failed as a whole: allowed unchanged, denied in strict mode.
fn failed(config: &AdmissionConfig, uid: &str, why: String, started: Instant) -> Answer {
    let mut report = AdmissionReport::new(uid);
    if config.strict {
        report.denial = Some(Denial::Failed {
            image: "*".to_string(),
            error: why.clone(),
        });
    }
    report.malformed = Some(why);
    finish(response_for(uid), report, started)
}

/// An allowed response without a patch for request `uid`.
fn response_for(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.allowed = true;
    response.uid = uid.to_string();
    response.result = Default::default();
    response
}

/// Settles the report, applies its denial to `response`, records metrics and logs.
fn finish(
    mut response: AdmissionResponse,
    mut report: AdmissionReport,
    started: Instant,
) -> Answer {
    if let Some(denial) = &report.denial {
        response = response.deny(denial.to_string());
        response.patch = None;
        response.result.code = 403;
        response.result.reason = "Forbidden".to_string();
    }
    report.settle();
    report.elapsed = started.elapsed();
    report.record();
    Answer { response, report }
}

/// The request's uid from the first bytes of a body that cannot be read whole, so that the
/// API server still matches the answer to its request. Only a uid of the usual characters.
pub(super) fn sniff_uid(body: &[u8]) -> String {
    let head = String::from_utf8_lossy(&body[..body.len().min(UID_SNIFF)]);
    let Some(request) = head.find("\"request\"") else {
        return String::new();
    };
    let rest = &head[request..];
    let Some(at) = rest.find("\"uid\"") else {
        return String::new();
    };
    let rest = rest[at + 5..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return String::new();
    };
    let Some(rest) = rest.trim_start().strip_prefix('"') else {
        return String::new();
    };
    let uid: String = rest.chars().take_while(|c| *c != '"').collect();
    let plain = !uid.is_empty()
        && uid.len() <= 128
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if plain {
        uid
    } else {
        String::new()
    }
}

async fn admit(
    inner: Arc<Inner>,
    review: AdmissionReview<DynamicObject>,
    deadline: tokio::time::Instant,
    started: Instant,
) -> Answer {
    let config = &inner.config;
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            return malformed(config, "", "the review holds no request".into(), started);
        }
    };
    let mut response = AdmissionResponse::from(&request);
    let mut report = AdmissionReport::new(&request.uid);
    report.dry_run = request.dry_run;
    report.namespace = request.namespace.clone().unwrap_or_default();
    report.pod = request.name.clone();
    let kind = &request.kind;
    if !(kind.group.is_empty() && kind.kind == "Pod") {
        let why = format!(
            "the review is of a {}{}{}, not a Pod",
            kind.group,
            if kind.group.is_empty() { "" } else { "/" },
            kind.kind
        );
        return malformed(
            config,
            &request.uid,
            sanitize(&why, MAX_SHOWN_TEXT),
            started,
        );
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        report.excluded = Some(Exclusion::Operation);
        return finish(response, report, started);
    }
    let read = |o: &Option<DynamicObject>| -> Result<Option<Pod>, String> {
        match o {
            None => Ok(None),
            Some(o) => serde_json::to_value(o)
                .and_then(serde_json::from_value::<Pod>)
                .map(Some)
                .map_err(|e| sanitize(&format!("the object is no Pod: {e}"), MAX_SHOWN_TEXT)),
        }
    };
    let (pod, old) = match (read(&request.object), read(&request.old_object)) {
        (Ok(Some(pod)), Ok(old)) => (pod, old),
        (Ok(None), _) => {
            return malformed(
                config,
                &request.uid,
                "the review holds no object".into(),
                started,
            )
        }
        (Err(why), _) | (_, Err(why)) => return malformed(config, &request.uid, why, started),
    };
    report.pod = pod::display_name(&pod, &request.name);
    if report.namespace.is_empty() {
        report.namespace = pod.metadata.namespace.clone().unwrap_or_default();
    }
    let namespace = report.namespace.clone();
    report.excluded = if config.namespace_excluded(&namespace) {
        Some(Exclusion::Namespace)
    } else if pod::opted_out(&pod) {
        Some(Exclusion::OptOut)
    } else if request.dry_run {
        Some(Exclusion::DryRun)
    } else {
        None
    };
    if report.excluded.is_some() {
        return finish(response, report, started);
    }

    let images = match request.operation {
        Operation::Update => pod::changed_images(&pod, old.as_ref()),
        _ => pod::images(&pod),
    };
    let mut outcomes: Vec<Option<ImageOutcome>> = vec![None; images.len()];
    // The images still to look up: their position and reference.
    let mut candidates: Vec<(usize, Reference)> = Vec::new();
    for (i, image) in images.iter().enumerate() {
        match classify(&inner, image) {
            Ok(reference) => candidates.push((i, reference)),
            Err(outcome) => outcomes[i] = Some(outcome),
        }
    }

    if !candidates.is_empty() {
        let hosts: BTreeSet<String> = candidates
            .iter()
            .map(|(_, r)| r.registry().to_string())
            .collect();
        let credentials =
            tokio::time::timeout_at(deadline, inner.secrets.for_pod(&namespace, &pod, &hosts))
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!(namespace, "reading the pull secrets took the whole budget");
                    Default::default()
                });
        // One lookup per distinct image and credential set of this pod.
        let mut lookups: BTreeMap<FlightKey, (Source, Arc<Sources>)> = BTreeMap::new();
        let mut keys = Vec::new();
        for (_, reference) in &candidates {
            let host = reference.registry();
            let (set, sources) = inner.sources.for_host(host, credentials.get(host));
            let key = FlightKey {
                image: reference.to_string(),
                sources: set,
            };
            lookups
                .entry(key.clone())
                .or_insert_with(|| (Source::Registry(reference.clone()), sources));
            keys.push(key);
        }
        let waits = lookups.into_iter().map(|(key, (source, sources))| {
            let joined = join(&inner, key.clone(), source, sources);
            async move {
                let outcome = match joined {
                    Joined::Waiting(flight) => match tokio::time::timeout_at(deadline, flight).await {
                        Ok(resolved) => outcome_of(resolved),
                        Err(_) => ImageOutcome::Pending,
                    },
                    Joined::RecentlyFailed(error) => ImageOutcome::Failed { error },
                    Joined::Busy => {
                        tracing::warn!(image = %key.image, "too many lookups under way; not started");
                        ImageOutcome::Pending
                    }
                };
                (key, outcome)
            }
        });
        let resolved: BTreeMap<FlightKey, ImageOutcome> =
            futures::future::join_all(waits).await.into_iter().collect();
        for ((i, _), key) in candidates.iter().zip(&keys) {
            outcomes[*i] = resolved.get(key).cloned();
        }
    }

    report.images = images
        .iter()
        .zip(outcomes)
        .map(|(image, outcome)| ImageReport {
            kind: image.kind,
            container: image.container.clone(),
            image: image.image.clone(),
            outcome: outcome.unwrap_or(ImageOutcome::Failed {
                error: "not looked up".to_string(),
            }),
        })
        .collect();

    if config.strict {
        report.denial = report.images.iter().find_map(Denial::for_image);
        if report.denial.is_some() {
            return finish(response, report, started);
        }
    }
    let rewrites: Vec<(&PodImage, &str)> = images
        .iter()
        .zip(&report.images)
        .filter_map(|(image, r)| match &r.outcome {
            ImageOutcome::Rewritten { pinned, .. } => Some((image, pinned.as_str())),
            _ => None,
        })
        .collect();
    let inject = config
        .inject_pull_secret
        .as_deref()
        .filter(|_| !rewrites.is_empty() && matches!(request.operation, Operation::Create));
    let patch = pod::patch(&pod, &rewrites, inject);
    report.pull_secret_injected = patch
        .0
        .iter()
        .any(|op| op.path().to_string().starts_with("/spec/imagePullSecrets"));
    if !patch.0.is_empty() {
        match response.clone().with_patch(patch) {
            Ok(patched) => response = patched,
            Err(e) => {
                return failed(config, &request.uid, format!("the patch: {e}"), started);
            }
        }
    }
    let pending: Vec<String> = report
        .images
        .iter()
        .filter(|i| i.outcome == ImageOutcome::Pending)
        .map(|i| {
            format!(
                "image {} is being mirrored; pulled from its source this time",
                i.image
            )
        })
        .collect();
    if !pending.is_empty() {
        response.warnings = Some(pending);
    }
    finish(response, report, started)
}

/// The reference to look up for `image`, or why there is none.
fn classify(inner: &Inner, image: &PodImage) -> Result<Reference, ImageOutcome> {
    let config = &inner.config;
    let excluded = |why| Err(ImageOutcome::Excluded { why });
    if config
        .excluded_images
        .iter()
        .any(|p| p.matches(&image.image))
    {
        return excluded(Exclusion::Pattern);
    }
    let reference = Reference::parse(image.image.trim()).map_err(|e| ImageOutcome::Failed {
        error: sanitize(&e.to_string(), MAX_SHOWN_TEXT),
    })?;
    let normalised = reference.to_string();
    if config
        .excluded_images
        .iter()
        .any(|p| p.matches(&normalised))
    {
        return excluded(Exclusion::Pattern);
    }
    if reference.registry() == inner.mirror_host {
        return Err(ImageOutcome::OnMirror);
    }
    let host = reference.registry();
    let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if !config.loopback_sources && (is_loopback_host(host) || is_loopback_host(bare)) {
        return excluded(Exclusion::Loopback);
    }
    Ok(reference)
}

/// Joins or starts the lookup of `key`.
fn join(inner: &Arc<Inner>, key: FlightKey, source: Source, sources: Arc<Sources>) -> Joined {
    let task_inner = inner.clone();
    let task_key = key.clone();
    inner.flights.start(&key, move |id| {
        shared(tokio::spawn(async move {
            let resolved = lookup(&task_inner, &task_key.sources, &source, &sources).await;
            task_inner.flights.finish(&task_key, id, &resolved);
            resolved
        }))
    })
}

fn outcome_of(resolved: Resolved) -> ImageOutcome {
    match resolved {
        Resolved::Pinned {
            reference,
            digest,
            copied,
        } => ImageOutcome::Rewritten {
            pinned: reference,
            digest,
            copied,
        },
        Resolved::NotReadable(reason) => ImageOutcome::NotReadable { reason },
        Resolved::Failed(error) => ImageOutcome::Failed { error },
    }
}

/// The lookup itself: may these credentials read the source? Then mirror (a skip when
/// mirrored already) and check that the result is the image asked for.
async fn lookup(inner: &Inner, set: &str, source: &Source, sources: &Sources) -> Resolved {
    if let Err(refusal) = readable(inner, set, source, sources).await {
        return refusal;
    }
    let deployed = inner
        .mirror
        .mirror_from(SERVICE, source, &HashSet::new(), sources)
        .await;
    match deployed {
        Ok(d) if d.repository != inner.cluster_repository => Resolved::Failed(format!(
            "the Mirror put the image into {}, not the cluster repository {}: build it in \
             Cluster mode",
            d.repository, inner.cluster_repository
        )),
        Ok(d) if source.pinned().is_some_and(|p| *p != d.digest) => Resolved::Failed(format!(
            "the mirror answered {} for a pod pinned to another digest",
            d.digest
        )),
        Ok(d) => Resolved::Pinned {
            reference: d.pull_reference,
            copied: d.action != Action::Skipped,
            digest: d.digest,
        },
        Err(e) => Resolved::Failed(sanitize(&e.to_string(), MAX_SHOWN_TEXT)),
    }
}

/// Whether the credential set `set` may read `source` (see the module docs): the source's
/// own answer to a manifest HEAD, kept a while when yes. Unreachable is not a refusal.
async fn readable(
    inner: &Inner,
    set: &str,
    source: &Source,
    sources: &Sources,
) -> Result<(), Resolved> {
    let Source::Registry(r) = source else {
        return Err(Resolved::Failed("not a registry image".into()));
    };
    let key = (
        set.to_string(),
        r.registry().to_string(),
        r.repository().to_string(),
    );
    if inner.readable.get(&key).is_some() {
        return Ok(());
    }
    let store = sources
        .open(source)
        .await
        .map_err(|e| Resolved::Failed(sanitize(&e.to_string(), MAX_SHOWN_TEXT)))?;
    let refused = |why: String| Err(Resolved::NotReadable(sanitize(&why, MAX_SHOWN_TEXT)));
    match store.head_manifest(&source.reference()).await {
        Ok(Some(_)) => {
            inner.readable.put(key, ());
            Ok(())
        }
        Ok(None) => refused(format!(
            "{} has no such image for these credentials",
            r.registry()
        )),
        Err(e @ (Error::Unauthorized { .. } | Error::Denied { .. })) => refused(e.to_string()),
        Err(e) if e.is_not_found() => refused(e.to_string()),
        Err(e) => {
            tracing::debug!(image = %r, error = %e, "the source cannot say; the mirror decides");
            Ok(())
        }
    }
}
