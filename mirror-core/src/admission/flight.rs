//! Background lookups, one per image and credential set at a time: concurrent admissions of
//! one image join the lookup under way; it runs to its end whether or not anyone still
//! waits (a copy outlives the admission that started it); a failure is remembered for a
//! while so that a broken source is not asked by every admission.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};

use super::credentials::TtlCache;
use super::report::{LOOKUPS_FINISHED, LOOKUPS_IN_PROGRESS, LOOKUPS_STARTED};
use super::AdmissionStats;
use crate::digest::Digest;

/// What names a lookup: the normalised image reference and the credential set it is read
/// with (never the credentials themselves).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FlightKey {
    pub image: String,
    pub sources: String,
}

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The image's digest-pinned mirror reference.
    Pinned {
        reference: String,
        digest: Digest,
        copied: bool,
    },
    /// The credentials cannot read the source.
    NotReadable(String),
    /// The lookup failed.
    Failed(String),
}

/// A lookup to wait for.
pub(crate) type Flight = Shared<BoxFuture<'static, Resolved>>;

/// What joining a lookup gave.
pub(crate) enum Joined {
    /// The lookup under way (just started, or joined).
    Waiting(Flight),
    /// The last lookup failed not long ago.
    RecentlyFailed(String),
    /// Too many lookups under way: none started.
    Busy,
}

/// The lookups under way and the recent failures.
pub(crate) struct Flights {
    running: Mutex<HashMap<FlightKey, (u64, Flight)>>,
    failed: TtlCache<FlightKey, String>,
    max: usize,
    next_id: AtomicU64,
    started: AtomicU64,
    copies: AtomicU64,
    failures: AtomicU64,
}

impl Flights {
    pub fn new(max: usize, failure_backoff: Duration) -> Self {
        Flights {
            running: Mutex::default(),
            failed: TtlCache::new(failure_backoff),
            max: max.max(1),
            next_id: AtomicU64::new(0),
            started: AtomicU64::new(0),
            copies: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Forgets lookup `id` of `key` once it ended, and counts how.
    pub fn finish(&self, key: &FlightKey, id: u64, result: &Resolved) {
        if let Ok(mut running) = self.running.lock() {
            if running.get(key).is_some_and(|(i, _)| *i == id) {
                running.remove(key);
            }
            metrics::gauge!(LOOKUPS_IN_PROGRESS).set(running.len() as f64);
        }
        let label = match result {
            Resolved::Pinned { copied: true, .. } => {
                self.copies.fetch_add(1, Ordering::Relaxed);
                "copied"
            }
            Resolved::Pinned { .. } => "skipped",
            Resolved::NotReadable(_) => "refused",
            Resolved::Failed(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.failed.put(key.clone(), error.clone());
                "failed"
            }
        };
        metrics::counter!(LOOKUPS_FINISHED, "result" => label).increment(1);
    }

    /// Joins the lookup of `key` under way, or starts one with `spawn` (given the lookup's
    /// id, it spawns the task that ends with [`finish`](Self::finish)). The map is held
    /// while spawning, so two admissions never both start one.
    pub fn start(&self, key: &FlightKey, spawn: impl FnOnce(u64) -> Flight) -> Joined {
        if let Some(error) = self.failed.get(key) {
            return Joined::RecentlyFailed(error);
        }
        let Ok(mut running) = self.running.lock() else {
            return Joined::Busy;
        };
        if let Some((_, flight)) = running.get(key) {
            return Joined::Waiting(flight.clone());
        }
        if running.len() >= self.max {
            return Joined::Busy;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let flight = spawn(id);
        running.insert(key.clone(), (id, flight.clone()));
        self.started.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(LOOKUPS_STARTED).increment(1);
        metrics::gauge!(LOOKUPS_IN_PROGRESS).set(running.len() as f64);
        Joined::Waiting(flight)
    }

    pub fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            lookups_started: self.started.load(Ordering::Relaxed),
            copies: self.copies.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    pub fn in_progress(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }
}

/// A spawned task as a flight: a panic or a cancelled task is a failed lookup.
pub(crate) fn shared(task: tokio::task::JoinHandle<Resolved>) -> Flight {
    async move {
        task.await
            .unwrap_or_else(|e| Resolved::Failed(format!("the lookup task ended early: {e}")))
    }
    .boxed()
    .shared()
}
