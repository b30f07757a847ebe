//! Blob transfers that stop moving: a read-idle timeout and a minimum throughput, for both
//! directions.
//!
//! A blob's body has no overall timeout (a layer may take an hour on a slow link), so a peer
//! that sends headers and then nothing, or a byte every few seconds, or reads an upload and
//! never answers, would hold a copy for as long as it likes. The guards here end such a
//! transfer with [`Error::Stalled`], which the retry policy treats as any transfer failure.
//! tokio's timers do the waiting; no crate offers a throughput guard over a byte stream.

use crate::error::Operation;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};

/// The least a transfer must move: `bytes` in every `per` (checked as the bytes come).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throughput {
    /// Bytes.
    pub bytes: u64,
    /// Per this long.
    pub per: Duration,
}

/// The limits of one transfer and what to name in its error.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    pub(super) idle: Duration,
    pub(super) min: Option<Throughput>,
    /// After the last byte of an upload, how long the answer may take.
    pub(super) answer: Duration,
    pub(super) registry: String,
    pub(super) operation: Operation,
    pub(super) location: String,
}

impl Limits {
    pub(super) fn stalled(&self, reason: String) -> Error {
        Error::Stalled {
            registry: self.registry.clone(),
            operation: self.operation.clone(),
            location: self.location.clone(),
            reason,
        }
    }

    fn idle_error(&self) -> Error {
        self.stalled(format!("no byte moved for {:?}", self.idle))
    }

    fn slow_error(&self, moved: u64, min: Throughput) -> Error {
        self.stalled(format!(
            "{moved} bytes in {:?}, below the minimum of {} bytes",
            min.per, min.bytes
        ))
    }
}

/// A downloaded body that fails with [`Error::Stalled`] when the source stops moving it.
///
/// Only the time the consumer waits for the source counts: from a poll that found no data
/// (`Pending`) to the next poll. The time the consumer takes between two chunks (a slow
/// destination, a consumer that has not started yet) is the consumer's, never blamed on the
/// source.
pub(super) struct GuardedDownload<S> {
    inner: S,
    limits: Limits,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Source time since the last chunk.
    waited: Duration,
    /// Source time and bytes in the current throughput window.
    window_time: Duration,
    window_bytes: u64,
    /// When the last poll returned `Pending` (the wait since then is the source's).
    pending_since: Option<Instant>,
    done: bool,
}

impl<S> GuardedDownload<S> {
    pub(super) fn new(inner: S, limits: Limits) -> Self {
        GuardedDownload {
            sleep: Box::pin(tokio::time::sleep(limits.idle)),
            inner,
            limits,
            waited: Duration::ZERO,
            window_time: Duration::ZERO,
            window_bytes: 0,
            pending_since: None,
            done: false,
        }
    }
}

impl<S> Stream for GuardedDownload<S>
where
    S: Stream<Item = Result<Bytes>> + Unpin,
{
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let now = Instant::now();
        if let Some(since) = self.pending_since.take() {
            let waited = now.saturating_duration_since(since);
            self.waited += waited;
            self.window_time += waited;
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.waited = Duration::ZERO;
                self.window_bytes += chunk.len() as u64;
                if let Some(min) = self.limits.min {
                    if self.window_time >= min.per {
                        if self.window_bytes < min.bytes {
                            self.done = true;
                            let e = self.limits.slow_error(self.window_bytes, min);
                            return Poll::Ready(Some(Err(e)));
                        }
                        self.window_time = Duration::ZERO;
                        self.window_bytes = 0;
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => {
                if other.is_none() {
                    self.done = true;
                }
                Poll::Ready(other)
            }
            Poll::Pending => {
                let left = self.limits.idle.saturating_sub(self.waited);
                if left.is_zero() {
                    // Decided here: a timer reset to "now" would only fire on a later tick,
                    // and the next poll would reset it again.
                    self.done = true;
                    return Poll::Ready(Some(Err(self.limits.idle_error())));
                }
                self.sleep.as_mut().reset(now + left);
                match self.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.done = true;
                        Poll::Ready(Some(Err(self.limits.idle_error())))
                    }
                    Poll::Pending => {
                        self.pending_since = Some(now);
                        Poll::Pending
                    }
                }
            }
        }
    }
}

/// What an upload's body has done, shared with its watchdog.
#[derive(Debug)]
pub(super) struct Progress {
    started: Instant,
    /// The body's length: once this much is taken the body is sent (a client may never poll
    /// a body of known length for its end).
    size: u64,
    /// Milliseconds after `started` of the last byte taken.
    last: AtomicU64,
    bytes: AtomicU64,
    finished: AtomicBool,
}

impl Progress {
    pub(super) fn new(size: u64) -> Arc<Self> {
        Arc::new(Progress {
            started: Instant::now(),
            size,
            last: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            finished: AtomicBool::new(size == 0),
        })
    }

    fn record(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        if total >= self.size {
            self.finished.store(true, Ordering::Relaxed);
        }
    }

    fn since_last(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// An upload body that records its progress.
pub(super) struct Recorded<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S> Recorded<S> {
    pub(super) fn new(inner: S, progress: Arc<Progress>) -> Self {
        Recorded { inner, progress }
    }
}

impl<S, E> Stream for Recorded<S>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
{
    type Item = std::result::Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let r = Pin::new(&mut self.inner).poll_next(cx);
        match &r {
            Poll::Ready(Some(Ok(chunk))) => self.progress.record(chunk.len() as u64),
            Poll::Ready(None) => {
                self.progress.record(0);
                self.progress.finished.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
        r
    }
}

/// Runs `request` (an upload whose body records into `progress`) and fails it with
/// [`Error::Stalled`] when the body stops moving ([`Limits::idle`], [`Limits::min`]) or the
/// answer does not come [`Limits::answer`] after the last byte. Dropping the request closes
/// its connection.
pub(super) async fn watch<F, T>(request: F, progress: &Progress, limits: &Limits) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let tick = (limits.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(request);
    let mut window_start = Instant::now();
    let mut window_bytes = progress.bytes.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            r = &mut request => return r,
            _ = interval.tick() => {
                let idle = progress.since_last();
                if progress.finished.load(Ordering::Relaxed) {
                    if idle > limits.answer {
                        return Err(limits.stalled(format!(
                            "no answer {:?} after the last byte was sent",
                            limits.answer
                        )));
                    }
                    continue;
                }
                if idle > limits.idle {
                    return Err(limits.idle_error());
                }
                if let Some(min) = limits.min {
                    if window_start.elapsed() >= min.per {
                        let now = progress.bytes.load(Ordering::Relaxed);
                        let moved = now - window_bytes;
                        if moved < min.bytes {
                            return Err(limits.slow_error(moved, min));
                        }
                        window_start = Instant::now();
                        window_bytes = now;
                    }
                }
            }
        }
    }
}
