//! Metrics through the [`metrics`] facade: the library records, the application chooses the
//! exporter (none is forced on it; without a recorder installed these calls do nothing).
//!
//! Label values are bounded: actions, modes and warning kinds, never digests, tags,
//! repositories or hosts.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `mirror_deploys_total` | counter | `action` (`skipped`, `copied`, `recopied`, `built`), `mode` (`service`, `cluster`, `build`) | finished deploys and builds |
//! | `mirror_deploy_duration_seconds` | histogram | `action`, `mode` | their duration |
//! | `mirror_served_from_mirror_total` | counter | `mode` | deploys answered from the mirror because the source could not tell |
//! | `mirror_blobs_total` | counter | `outcome` (`mounted`, `uploaded`) | blobs a deploy placed |
//! | `mirror_bytes_uploaded_total` | counter | | bytes uploaded by deploys |
//! | `mirror_referrers_copied_total` | counter | | referrers copied with images |
//! | `mirror_evictions_total` | counter | | images deleted by Service-mode eviction |
//! | `mirror_sweep_deletions_total` | counter | | images deleted by sweeps |
//! | `mirror_warnings_total` | counter | `kind` (a [`Warning::kind`]) | warnings of deploys and sweeps |

use std::time::Duration;

use crate::mirror::{Action, Deployment, SweepReport, Warning};

/// Finished deploys and builds.
pub const DEPLOYS: &str = "mirror_deploys_total";
/// Their duration, in seconds.
pub const DEPLOY_SECONDS: &str = "mirror_deploy_duration_seconds";
/// Deploys served from the mirror because the source could not tell.
pub const SERVED_FROM_MIRROR: &str = "mirror_served_from_mirror_total";
/// Blobs placed by deploys, by outcome.
pub const BLOBS: &str = "mirror_blobs_total";
/// Bytes uploaded by deploys.
pub const BYTES_UPLOADED: &str = "mirror_bytes_uploaded_total";
/// Referrers copied with images.
pub const REFERRERS_COPIED: &str = "mirror_referrers_copied_total";
/// Images deleted by Service-mode eviction.
pub const EVICTIONS: &str = "mirror_evictions_total";
/// Images deleted by sweeps.
pub const SWEEP_DELETIONS: &str = "mirror_sweep_deletions_total";
/// Warnings, by kind.
pub const WARNINGS: &str = "mirror_warnings_total";

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
pub(crate) fn deploy(d: &Deployment, mode: &'static str, took: Duration) {
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

/// Records a finished sweep.
pub(crate) fn sweep(r: &SweepReport) {
    metrics::counter!(SWEEP_DELETIONS).increment(r.deleted.len() as u64);
    warnings(&r.warnings);
}
