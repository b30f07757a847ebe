//! Metrics through the [`metrics`] facade: the library records, the application chooses the
//! exporter (none is forced on it; without a recorder installed these calls do nothing).
//!
//! A leaf: metric names, the recorders of registry requests, and the span helpers; the
//! recorders that read the façade's reports live with it (`mirror::metrics`).
//!
//! Label values are bounded: actions, modes, outcomes, operations, status classes and
//! warning kinds, never digests or tags; [`REPOSITORY_STORED_BYTES`] carries the repository
//! and [`RATE_LIMIT_REMAINING`] the registry host (bounded by the cluster's services and
//! sources).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `mirror_deploys_total` | counter | `action` (`skipped`, `copied`, `recopied`, `built`), `mode` (`service`, `cluster`, `build`) | finished deploys and builds |
//! | `mirror_deploy_duration_seconds` | histogram | `action`, `mode` | their duration |
//! | `mirror_deploy_failures_total` | counter | `mode` | deploys and builds that returned an error |
//! | `mirror_served_from_mirror_total` | counter | `mode` | deploys answered from the mirror because the source could not tell |
//! | `mirror_blobs_total` | counter | `outcome` (`mounted`, `uploaded`) | blobs a deploy placed |
//! | `mirror_bytes_uploaded_total` | counter | | bytes uploaded by deploys |
//! | `mirror_referrers_copied_total` | counter | | referrers copied with images |
//! | `mirror_evictions_total` | counter | | images deleted by Service-mode eviction |
//! | `mirror_sweep_deletions_total` | counter | | images deleted by sweeps |
//! | `mirror_warnings_total` | counter | `kind` (a warning's `kind()`) | warnings of deploys and sweeps |
//! | `mirror_registry_requests_total` | counter | `operation`, `status` (`2xx`…`5xx`, `error`) | every HTTP request to a registry |
//! | `mirror_registry_retries_total` | counter | `operation` (`blob_transfer`: a blob restarted) | requests sent again |
//! | `mirror_rate_limit_remaining` | gauge | `registry` | what a pull limit has left |
//! | `mirror_inventory_repositories`, `_images`, `_images_in_use`, `_stored_bytes` | gauge | | the last inventory's totals |
//! | `mirror_repository_stored_bytes` | gauge | `repository` | one repository's storage, by the last inventory |
//!
//! Spans: `deploy`/`build` > `copy` > `blob`, `deploy` > `evict`, `sweep`, `inventory`, each
//! with the fields an operator filters on (cluster, service, repository, digest, action);
//! never a credential.

use crate::error::Operation;
use tracing::field::Empty;
use tracing::Span;

/// Finished deploys and builds.
pub const DEPLOYS: &str = "mirror_deploys_total";
/// Their duration, in seconds.
pub const DEPLOY_SECONDS: &str = "mirror_deploy_duration_seconds";
/// Deploys and builds that failed (returned an error), by mode.
pub const DEPLOY_FAILURES: &str = "mirror_deploy_failures_total";
/// Deploys served from the mirror because the source could not tell.
pub(crate) const SERVED_FROM_MIRROR: &str = "mirror_served_from_mirror_total";
/// Blobs placed by deploys, by outcome.
pub const BLOBS: &str = "mirror_blobs_total";
/// Bytes uploaded by deploys.
pub const BYTES_UPLOADED: &str = "mirror_bytes_uploaded_total";
/// Referrers copied with images.
pub(crate) const REFERRERS_COPIED: &str = "mirror_referrers_copied_total";
/// Images deleted by Service-mode eviction.
pub const EVICTIONS: &str = "mirror_evictions_total";
/// Images deleted by sweeps.
pub(crate) const SWEEP_DELETIONS: &str = "mirror_sweep_deletions_total";
/// Warnings, by kind.
pub(crate) const WARNINGS: &str = "mirror_warnings_total";

/// The span of a deploy or a build (`name`), its outcome fields empty until the façade
/// records them.
pub(crate) fn deploy_span(name: &'static str, cluster: &str, service: &str, mode: &str) -> Span {
    // A span's name must be a literal: one expansion per name, the same fields.
    macro_rules! span {
        ($name:literal) => {
            tracing::info_span!(
                $name,
                cluster,
                service,
                mode,
                source = Empty,
                repository = Empty,
                digest = Empty,
                action = Empty,
                error = Empty
            )
        };
    }
    match name {
        "build" => span!("build"),
        _ => span!("deploy"),
    }
}

/// Runs `work` in `span`, then records its outcome there: `record` on success, the field
/// `error` on failure (the span must declare it, or it is dropped).
pub(crate) async fn traced<T>(
    span: Span,
    work: impl std::future::Future<Output = crate::Result<T>>,
    record: impl FnOnce(&Span, &T),
) -> crate::Result<T> {
    use tracing::Instrument;
    let result = work.instrument(span.clone()).await;
    match &result {
        Ok(value) => record(&span, value),
        Err(e) => {
            span.record("error", tracing::field::display(e));
        }
    }
    result
}

/// Registry requests, by operation and status class.
pub const REQUESTS: &str = "mirror_registry_requests_total";
/// Registry requests sent again after a failure or a retryable answer, by operation.
pub const RETRIES: &str = "mirror_registry_retries_total";
/// What a registry's pull limit has left (`ratelimit-remaining`), by registry host.
pub const RATE_LIMIT_REMAINING: &str = "mirror_rate_limit_remaining";
/// Repositories of the cluster, as the last inventory found them.
pub const INVENTORY_REPOSITORIES: &str = "mirror_inventory_repositories";
/// Images of the cluster (build cache entries included), as the last inventory found them.
pub const INVENTORY_IMAGES: &str = "mirror_inventory_images";
/// Images in use, as the last inventory found them.
pub(crate) const INVENTORY_IMAGES_IN_USE: &str = "mirror_inventory_images_in_use";
/// Bytes the cluster's repositories store (each blob once per repository), by the last
/// inventory.
pub const INVENTORY_STORED_BYTES: &str = "mirror_inventory_stored_bytes";
/// Bytes one repository stores, by the last inventory (label `repository`).
pub const REPOSITORY_STORED_BYTES: &str = "mirror_repository_stored_bytes";

/// The status class of an answer (`2xx` … `5xx`), `error` when none came.
fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "error",
    }
}

/// Records one registry request (`status` `None`: no answer came).
pub(crate) fn request(op: &Operation, status: Option<u16>) {
    metrics::counter!(REQUESTS, "operation" => op.label(), "status" => status_class(status))
        .increment(1);
}

/// Records `n` retries of a registry request (or of a whole blob transfer).
pub(crate) fn retries(op: &Operation, n: u64) {
    if n > 0 {
        metrics::counter!(RETRIES, "operation" => op.label()).increment(n);
    }
}

/// Records what a registry's pull limit has left.
pub(crate) fn rate_limit(registry: &str, remaining: u64) {
    metrics::gauge!(RATE_LIMIT_REMAINING, "registry" => registry.to_string()).set(remaining as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_are_bounded() {
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(404)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(Some(999)), "error");
        assert_eq!(status_class(None), "error");
    }
}
