//! Progress events, for progress bars and logs.

use std::sync::Arc;

use serde::Serialize;

use crate::digest::Digest;

/// What happened to one blob during a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobAction {
    /// Already present at the destination (one HEAD).
    Skipped,
    /// Mounted from another repository of the destination registry (no upload).
    Mounted,
    /// Streamed from the source to the destination.
    Uploaded,
}

/// A progress event of a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CopyEvent {
    /// A blob is about to be transferred.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size from the manifest.
        size: u64,
    },
    /// Bytes of a blob passed through (a delta, not a total).
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes since the previous event for this blob.
        bytes: u64,
    },
    /// A blob is at the destination.
    BlobDone {
        /// The blob.
        digest: Digest,
        /// How it got there.
        action: BlobAction,
        /// Its size.
        size: u64,
    },
    /// A blob transfer failed and starts again from scratch (bytes already reported for it
    /// will be reported again).
    BlobRetry {
        /// The blob.
        digest: Digest,
        /// The attempt that failed (1 = the first).
        attempt: u32,
        /// Why.
        error: String,
    },
    /// A manifest was written to the destination.
    ManifestPushed {
        /// The manifest digest.
        digest: Digest,
        /// The tag or digest it was pushed under.
        reference: String,
    },
}

/// Receives progress events. Must be cheap and must not block: it is called on the copy's
/// tasks.
pub type EventSink = Arc<dyn Fn(&CopyEvent) + Send + Sync>;
