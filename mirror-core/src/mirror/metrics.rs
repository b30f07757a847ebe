//! The recorders that read [`Mirror`](super::Mirror)'s reports (deploys, sweeps,
//! inventories) into the metrics named in [`crate::telemetry`], and a deploy span's outcome.

use std::time::Duration;

use tracing::Span;

use super::{Action, Deployment, Inventory, SweepReport, Warning};
use crate::telemetry::*;

fn action(a: Action) -> &'static str {
    match a {
        Action::Skipped => "skipped",
        Action::Copied => "copied",
        Action::Recopied => "recopied",
        Action::Built => "built",
    }
}

fn warnings(list: &[Warning]) {
    for w in list {
        metrics::counter!(WARNINGS, "kind" => w.kind()).increment(1);
    }
}

/// Records a finished deploy or build (`mode`: `service`, `cluster`, `build`).
pub(super) fn deploy(d: &Deployment, mode: &'static str, took: Duration) {
    let a = action(d.action);
    metrics::counter!(DEPLOYS, "action" => a, "mode" => mode).increment(1);
    metrics::histogram!(DEPLOY_SECONDS, "action" => a, "mode" => mode).record(took.as_secs_f64());
    if d.warnings.iter().any(Warning::served_from_mirror) {
        metrics::counter!(SERVED_FROM_MIRROR, "mode" => mode).increment(1);
    }
    metrics::counter!(BLOBS, "outcome" => "mounted").increment(d.blobs_mounted as u64);
    metrics::counter!(BLOBS, "outcome" => "uploaded").increment(d.blobs_uploaded as u64);
    metrics::counter!(BYTES_UPLOADED).increment(d.bytes_uploaded);
    metrics::counter!(REFERRERS_COPIED).increment(d.referrers.copied_total() as u64);
    metrics::counter!(EVICTIONS).increment(d.evicted.len() as u64);
    warnings(&d.warnings);
}

/// Records a deploy or build that returned an error.
pub(super) fn deploy_failed(mode: &'static str) {
    metrics::counter!(DEPLOY_FAILURES, "mode" => mode).increment(1);
}

/// Records a finished sweep.
pub(super) fn sweep(r: &SweepReport) {
    metrics::counter!(SWEEP_DELETIONS).increment(r.deleted.len() as u64);
    warnings(&r.warnings);
}

/// Records a deploy's outcome on its span (see [`crate::telemetry::deploy_span`]) and logs it.
pub(super) fn deployed(span: &Span, d: &Deployment) {
    span.record("repository", d.repository.as_str());
    span.record("digest", tracing::field::display(&d.digest));
    span.record("action", action(d.action));
    span.in_scope(|| {
        tracing::info!(
            blobs_uploaded = d.blobs_uploaded,
            blobs_mounted = d.blobs_mounted,
            bytes_uploaded = d.bytes_uploaded,
            evicted = d.evicted.len(),
            warnings = d.warnings.len(),
            "done"
        )
    });
}

/// Records the storage totals of an inventory.
pub(super) fn inventory(inv: &Inventory) {
    let t = inv.totals();
    metrics::gauge!(INVENTORY_REPOSITORIES).set(t.repositories as f64);
    metrics::gauge!(INVENTORY_IMAGES).set(t.images as f64);
    metrics::gauge!(INVENTORY_IMAGES_IN_USE).set(t.in_use as f64);
    metrics::gauge!(INVENTORY_STORED_BYTES).set(t.stored_bytes as f64);
    for r in &inv.repositories {
        metrics::gauge!(REPOSITORY_STORED_BYTES, "repository" => r.repository.clone())
            .set(r.stored_bytes as f64);
    }
}
