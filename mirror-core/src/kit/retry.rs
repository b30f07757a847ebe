//! The one retry policy, the clock it reads, and the polling helper for "wait until ready".
//!
//! What is retried: connection errors, HTTP 5xx, 408 and 429 (honouring `Retry-After`), for
//! operations that are safe to repeat: HEAD and GET requests, manifest PUTs, token requests, and
//! blob uploads, which the copy engine restarts from scratch (a new upload session fed by a new
//! read of the source). A blob whose bytes did not match its digest is also transferred again,
//! since a flipped bit in transit looks exactly like that; a source that keeps serving wrong
//! bytes fails after the last attempt with [`Error::DigestMismatch`].
//!
//! What is not retried: other 4xx answers (validation errors), a 401 after the one
//! re-authentication every request gets, and errors of local files.
//!
//! Backoff is exponential with full jitter, bounded by `max_backoff` per wait, by
//! `max_attempts` and by `max_elapsed` in total. The random source and the [`Clock`] are
//! injectable so tests are deterministic.
//!
//! Any operation with any error type runs under the policy through [`RetryConfig::run_with`]
//! and a classifier closure that says, for one failure, whether to try again ([`Retry`]);
//! core errors use [`classify`]. Loops that wait for a state rather than recover from a
//! failure (a repository becoming visible, an operation finishing) use [`Poll`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;

/// A source of randomness in `[0, 1)` for jitter.
pub(crate) type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The time a policy reads and the way it waits: the real clock (`SystemClock`) or a
/// test's ([`ManualClock`]).
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time (token expiries are wall-clock times).
    fn now(&self) -> SystemTime;

    /// A monotonic reading: time since a fixed origin, never going backwards. Deadlines and
    /// budgets are measured on it, so a wall-clock step does not stretch them.
    fn elapsed(&self) -> Duration;

    /// Waits `duration`.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock: [`SystemTime::now`] and `tokio::time::sleep` (which honours
/// `tokio::time::pause`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn elapsed(&self) -> Duration {
        static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
        tokio::time::Instant::now().saturating_duration_since(origin)
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock for tests: time stands still until [`advance`](ManualClock::advance)d, and every
/// sleep returns at once after advancing the clock by its duration (and recording it), so a
/// retry or poll loop runs instantly and its waits can be asserted.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
    elapsed: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: SystemTime) -> Arc<Self> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
            elapsed: Mutex::new(Duration::ZERO),
            sleeps: Mutex::new(Vec::new()),
        })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.now.lock() {
            *t += by;
        }
        if let Ok(mut e) = self.elapsed.lock() {
            *e += by;
        }
    }

    /// Sets the wall clock (a step, forwards or backwards); the monotonic reading does not
    /// move.
    pub fn set(&self, to: SystemTime) {
        if let Ok(mut t) = self.now.lock() {
            *t = to;
        }
    }

    /// Every sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.now
            .lock()
            .map(|t| *t)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn elapsed(&self) -> Duration {
        self.elapsed.lock().map(|e| *e).unwrap_or_default()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        if let Ok(mut s) = self.sleeps.lock() {
            s.push(duration);
        }
        self.advance(duration);
        Box::pin(std::future::ready(()))
    }
}

/// The shared real clock.
pub(crate) fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Time elapsed on `clock`'s monotonic reading since the reading `start`.
fn since(clock: &dyn Clock, start: Duration) -> Duration {
    clock.elapsed().saturating_sub(start)
}

/// A classifier's verdict on one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not worth another attempt: the error is returned.
    No,
    /// Worth another attempt after the policy's backoff.
    Yes,
    /// Worth another attempt, not before this long (the server's `Retry-After`; still capped
    /// by `max_backoff`).
    After(Duration),
}

/// The retry policy.
#[derive(Clone)]
pub struct RetryConfig {
    /// Attempts in total (1 = no retry). Default 5.
    pub max_attempts: u32,
    /// The first backoff. Default 200 ms.
    pub initial_backoff: Duration,
    /// The longest single wait (also caps `Retry-After`). Default 10 s.
    pub max_backoff: Duration,
    /// No new attempt starts after this much time since the first. Default 60 s.
    pub max_elapsed: Duration,
    /// Jitter source; `None` uses a fast internal generator.
    pub jitter: Option<Jitter>,
    /// The clock waits are measured and slept on; `None` is the real clock.
    pub clock: Option<Arc<dyn Clock>>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
            jitter: None,
            clock: None,
        }
    }
}

impl fmt::Debug for RetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryConfig")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_elapsed", &self.max_elapsed)
            .finish()
    }
}

impl RetryConfig {
    /// No retries at all.
    pub fn none() -> Self {
        RetryConfig {
            max_attempts: 1,
            ..RetryConfig::default()
        }
    }

    /// Fast retries for tests: 10 ms initial, 200 ms max, deterministic jitter of 1.0.
    pub fn fast() -> Self {
        RetryConfig {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(30),
            jitter: Some(Arc::new(|| 1.0)),
            clock: None,
        }
    }

    /// The same policy on another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The clock waits are measured and slept on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone().unwrap_or_else(system_clock)
    }

    /// The wait before attempt `attempt + 1` of an operation started at `started` (a reading
    /// of this policy's clock's [`Clock::elapsed`]), for a failure read as `verdict`.
    pub fn wait_since(&self, attempt: u32, verdict: Retry, started: Duration) -> Option<Duration> {
        self.backoff(attempt, verdict, since(&*self.clock(), started))
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1) of an operation that
    /// has run for `elapsed`, given the classifier's verdict; `None` when the verdict is
    /// [`Retry::No`] or the budget (attempts, total time) is spent.
    pub fn backoff(&self, attempt: u32, verdict: Retry, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.max_attempts || verdict == Retry::No {
            return None;
        }
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << (attempt.max(1) - 1).min(16))
            .min(self.max_backoff);
        let jitter = match &self.jitter {
            Some(j) => j().clamp(0.0, 1.0),
            None => internal_random(),
        };
        // Full jitter, but never less than half the exponential step.
        let mut wait = exp.mul_f64(0.5 + 0.5 * jitter);
        if let Retry::After(ra) = verdict {
            // A registry asking for more than one backoff step (Docker Hub's pull limit
            // answers hours) is not waited for: the caller gets `RateLimited` with the
            // `Retry-After` now, and may serve what it has.
            if ra > self.max_backoff {
                return None;
            }
            wait = wait.max(ra);
        }
        if elapsed + wait > self.max_elapsed {
            return None;
        }
        Some(wait)
    }

    /// [`backoff`](Self::backoff) for a core error classified by [`classify`], for an
    /// operation started at `started` (measured on the real monotonic clock, not on
    /// [`RetryConfig::clock`]; [`wait_since`](Self::wait_since) uses the policy's clock).
    pub fn next_wait(&self, attempt: u32, error: &Error, started: Instant) -> Option<Duration> {
        self.backoff(attempt, classify(error), started.elapsed())
    }

    /// Runs `op` until it succeeds, fails with an error `classify` does not retry, or the
    /// budget is spent (then its last error is returned), sleeping on the policy's clock
    /// between attempts.
    pub async fn run_with<T, E, F, Fut, C>(&self, mut op: F, classify: C) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Fn(&E) -> Retry,
    {
        let clock = self.clock();
        let started = clock.elapsed();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(t) => return Ok(t),
                Err(e) => match self.backoff(attempt, classify(&e), since(&*clock, started)) {
                    Some(wait) => clock.sleep(wait).await,
                    None => return Err(e),
                },
            }
        }
    }

    /// [`run_with`](Self::run_with) for operations failing with core errors, classified by
    /// [`classify`].
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.run_with(op, classify).await
    }
}

/// How a core error reads to the policy (see the module docs).
pub fn classify(e: &Error) -> Retry {
    match e {
        Error::RateLimited {
            retry_after: Some(ra),
            ..
        } => Retry::After(*ra),
        _ if is_transient(e) => Retry::Yes,
        _ => Retry::No,
    }
}

/// Whether an error is worth another attempt (see the module docs).
pub fn is_transient(e: &Error) -> bool {
    match e {
        Error::Connect { .. } | Error::RateLimited { .. } | Error::Stalled { .. } => true,
        Error::Http { status, .. } => *status >= 500 || *status == 408,
        Error::DigestMismatch { .. }
        | Error::DigestRejected { .. }
        | Error::SizeMismatch { .. } => true,
        _ => false,
    }
}

/// How to wait for a state (a repository visible after its creation, an operation done, a
/// namespace ready): checks spaced from `first` doubling up to `max`, until `timeout`.
#[derive(Debug, Clone)]
pub struct Poll {
    /// The first pause. Default 100 ms.
    pub first: Duration,
    /// The longest pause. Default 2 s.
    pub max: Duration,
    /// No check starts after this long. Default 30 s.
    pub timeout: Duration,
    /// No more checks than this, whatever the time (`None`: only the timeout bounds them).
    pub max_checks: Option<usize>,
    /// The clock; `None` is the real clock.
    pub clock: Option<Arc<dyn Clock>>,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            first: Duration::from_millis(100),
            max: Duration::from_secs(2),
            timeout: Duration::from_secs(30),
            max_checks: None,
            clock: None,
        }
    }
}

impl Poll {
    /// Polls for at most `timeout`, with the default pauses.
    pub fn until(timeout: Duration) -> Self {
        Poll {
            timeout,
            ..Poll::default()
        }
    }

    /// Sets the first pause (and the longest, when it was shorter).
    pub fn every(mut self, first: Duration) -> Self {
        self.first = first;
        self.max = self.max.max(first);
        self
    }

    /// Sets the longest pause.
    pub fn at_most(mut self, max: Duration) -> Self {
        self.max = max.max(self.first);
        self
    }

    /// At most `n` checks (and at most the timeout).
    pub fn checks(mut self, n: usize) -> Self {
        self.max_checks = Some(n.max(1));
        self
    }

    /// The same polling on another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Calls `check` until it returns `Ok(Some(_))` (done) or an error (given up), pausing
    /// between calls; `Ok(None)` when the timeout passed first. The first check runs at
    /// once; no check starts past the deadline.
    pub async fn run<T, E, F, Fut>(&self, mut check: F) -> Result<Option<T>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let mut pauses = self.pauses();
        loop {
            if let Some(done) = check().await? {
                return Ok(Some(done));
            }
            if !pauses.pause().await {
                return Ok(None);
            }
        }
    }

    /// Calls `op` again, pausing as [`run`](Self::run) does, while it fails with an error
    /// `pending` says is about a state not reached yet (a repository not visible yet); returns
    /// its first success, its first other error, or its last error when the timeout passed.
    pub async fn retry_while<T, E, F, Fut, P>(&self, mut op: F, pending: P) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: Fn(&E) -> bool,
    {
        let mut pauses = self.pauses();
        loop {
            match op().await {
                Err(e) if pending(&e) => {
                    if !pauses.pause().await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// The pauses between the checks of one wait, starting now.
    fn pauses(&self) -> Pauses<'_> {
        let clock = self.clock.clone().unwrap_or_else(system_clock);
        Pauses {
            poll: self,
            started: clock.elapsed(),
            clock,
            next: self.first,
            checks: 0,
        }
    }
}

/// The pauses of one [`Poll`] wait: the time and checks spent, the next pause.
struct Pauses<'a> {
    poll: &'a Poll,
    clock: Arc<dyn Clock>,
    started: Duration,
    next: Duration,
    checks: usize,
}

impl Pauses<'_> {
    /// After a check that did not end the wait: sleeps the next pause and returns `true`, or
    /// returns `false` when another check would pass the check count or the timeout.
    async fn pause(&mut self) -> bool {
        self.checks += 1;
        let out_of_checks = self.poll.max_checks.is_some_and(|n| self.checks >= n);
        if out_of_checks || since(&*self.clock, self.started) + self.next > self.poll.timeout {
            return false;
        }
        self.clock.sleep(self.next).await;
        self.next = (self.next * 2).min(self.poll.max);
        true
    }
}

fn internal_random() -> f64 {
    // A splitmix64 step over a global counter seeded by the clock: enough for jitter.
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0));
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> Error {
        Error::Http {
            registry: "r".into(),
            operation: crate::error::Operation::Ping,
            location: "x".into(),
            status,
            message: String::new(),
            codes: Default::default(),
        }
    }

    #[test]
    fn transient_errors_back_off_exponentially_and_stop() {
        let c = RetryConfig {
            jitter: Some(Arc::new(|| 1.0)),
            ..RetryConfig::default()
        };
        let now = Instant::now();
        let waits: Vec<_> = (1..=5).map(|a| c.next_wait(a, &http(503), now)).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(800)),
                Some(Duration::from_millis(1600)),
                None
            ]
        );
    }

    #[test]
    fn validation_errors_are_not_retried() {
        let c = RetryConfig::default();
        for e in [http(400), http(404), http(405)] {
            assert_eq!(c.next_wait(1, &e, Instant::now()), None);
        }
        let unauthorized = Error::Unauthorized {
            registry: "r".into(),
            message: "m".into(),
        };
        assert_eq!(c.next_wait(1, &unauthorized, Instant::now()), None);
        assert!(c.next_wait(1, &http(408), Instant::now()).is_some());
    }

    #[test]
    fn retry_after_is_honoured_within_the_bound_and_longer_ones_fail_at_once() {
        let c = RetryConfig {
            jitter: Some(Arc::new(|| 0.0)),
            ..RetryConfig::default()
        };
        let e = Error::RateLimited {
            registry: "r".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(
            c.next_wait(1, &e, Instant::now()),
            Some(Duration::from_secs(3))
        );
        // An hour (Docker Hub's pull limit): not waited for, the error goes to the caller.
        let e = Error::RateLimited {
            registry: "r".into(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(c.next_wait(1, &e, Instant::now()), None);
        // Without a Retry-After: the usual backoff.
        let e = Error::RateLimited {
            registry: "r".into(),
            retry_after: None,
        };
        assert!(c.next_wait(1, &e, Instant::now()).is_some());
    }

    #[test]
    fn total_time_bounds_retries() {
        let c = RetryConfig {
            max_elapsed: Duration::from_millis(100),
            ..RetryConfig::default()
        };
        let long_ago = Instant::now() - Duration::from_secs(1);
        assert_eq!(c.next_wait(1, &http(500), long_ago), None);
    }

    #[derive(Debug, PartialEq)]
    enum Fail {
        Busy,
        Slow(Duration),
        Bad,
    }

    fn classify_fail(f: &Fail) -> Retry {
        match f {
            Fail::Busy => Retry::Yes,
            Fail::Slow(d) => Retry::After(*d),
            Fail::Bad => Retry::No,
        }
    }

    fn on_clock(clock: &Arc<ManualClock>) -> RetryConfig {
        RetryConfig {
            jitter: Some(Arc::new(|| 1.0)),
            ..RetryConfig::default()
        }
        .with_clock(clock.clone())
    }

    #[tokio::test]
    async fn any_error_type_runs_under_the_policy_with_a_classifier() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let policy = on_clock(&clock);
        let mut answers = vec![
            Err(Fail::Busy),
            Err(Fail::Slow(Duration::from_secs(3))),
            Ok(7),
        ];
        answers.reverse();
        let calls = std::sync::Mutex::new(answers);
        let got = policy
            .run_with(
                || {
                    let next = calls.lock().unwrap().pop().unwrap();
                    async move { next }
                },
                classify_fail,
            )
            .await;
        assert_eq!(got, Ok(7));
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_millis(200), Duration::from_secs(3)],
            "the backoff, then the server's Retry-After"
        );

        // Not retryable: returned at once, no sleep.
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let got: Result<(), Fail> = on_clock(&clock)
            .run_with(|| async { Err(Fail::Bad) }, classify_fail)
            .await;
        assert_eq!(got, Err(Fail::Bad));
        assert!(clock.sleeps().is_empty());

        // Always busy: the attempts run out, the last error is returned.
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let n = std::sync::atomic::AtomicU32::new(0);
        let got: Result<(), Fail> = on_clock(&clock)
            .run_with(
                || {
                    n.fetch_add(1, Ordering::SeqCst);
                    async { Err(Fail::Busy) }
                },
                classify_fail,
            )
            .await;
        assert_eq!(got, Err(Fail::Busy));
        assert_eq!(n.load(Ordering::SeqCst), 5);
        assert_eq!(clock.sleeps().len(), 4);
    }

    #[tokio::test]
    async fn the_time_budget_is_read_from_the_clock() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let policy = RetryConfig {
            max_attempts: 100,
            max_elapsed: Duration::from_secs(5),
            ..on_clock(&clock)
        };
        let got: Result<(), Fail> = policy
            .run_with(|| async { Err(Fail::Busy) }, classify_fail)
            .await;
        assert_eq!(got, Err(Fail::Busy));
        let waited: Duration = clock.sleeps().iter().sum();
        assert!(waited <= Duration::from_secs(5), "{waited:?}");
        assert!(waited >= Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test]
    async fn polls_double_their_pause_and_stop_at_the_deadline() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let poll = Poll::until(Duration::from_secs(10)).with_clock(clock.clone());
        let checks = std::sync::atomic::AtomicU32::new(0);
        let done: Result<Option<u32>, ()> = poll
            .run(|| {
                let n = checks.fetch_add(1, Ordering::SeqCst);
                async move { Ok((n == 3).then_some(n)) }
            })
            .await;
        assert_eq!(done, Ok(Some(3)));
        assert_eq!(
            clock.sleeps(),
            vec![
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(400)
            ]
        );

        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let never: Result<Option<()>, ()> = Poll::until(Duration::from_secs(10))
            .with_clock(clock.clone())
            .run(|| async { Ok(None) })
            .await;
        assert_eq!(never, Ok(None), "the deadline passed");
        let waited: Duration = clock.sleeps().iter().sum();
        assert!(waited <= Duration::from_secs(10), "{waited:?}");
        assert!(
            clock.sleeps().iter().all(|s| *s <= Duration::from_secs(2)),
            "pauses are capped: {:?}",
            clock.sleeps()
        );

        // retry_while: a pending error is waited out, another one is returned at once.
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let got: Result<u32, &str> = Poll::until(Duration::from_secs(10))
            .with_clock(clock.clone())
            .retry_while(
                || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        match n {
                            0 | 1 => Err("not visible"),
                            _ => Ok(n),
                        }
                    }
                },
                |e| *e == "not visible",
            )
            .await;
        assert_eq!(got, Ok(2));
        let got: Result<(), &str> = Poll::until(Duration::from_secs(10))
            .with_clock(clock.clone())
            .retry_while(|| async { Err("denied") }, |e| *e == "not visible")
            .await;
        assert_eq!(got, Err("denied"));
        let got: Result<(), &str> = Poll::until(Duration::from_secs(1))
            .with_clock(ManualClock::new(SystemTime::UNIX_EPOCH))
            .retry_while(|| async { Err("not visible") }, |e| *e == "not visible")
            .await;
        assert_eq!(
            got,
            Err("not visible"),
            "the last error once the deadline passed"
        );
    }

    #[tokio::test]
    async fn a_wall_clock_step_does_not_stretch_a_deadline() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
        let c = clock.clone();
        let n = std::sync::atomic::AtomicU32::new(0);
        let got: Result<Option<()>, ()> = Poll::until(Duration::from_secs(5))
            .with_clock(clock.clone())
            .run(|| {
                // The wall clock jumps back an hour at every check.
                c.set(c.now() - Duration::from_secs(3600));
                n.fetch_add(1, Ordering::SeqCst);
                async { Ok(None) }
            })
            .await;
        assert_eq!(got, Ok(None));
        assert!(
            n.load(Ordering::SeqCst) < 10,
            "{} checks",
            n.load(Ordering::SeqCst)
        );
        let checks = std::sync::atomic::AtomicU32::new(0);
        let got: Result<Option<()>, ()> = Poll::until(Duration::from_secs(60))
            .checks(4)
            .with_clock(ManualClock::new(SystemTime::UNIX_EPOCH))
            .run(|| {
                checks.fetch_add(1, Ordering::SeqCst);
                async { Ok(None) }
            })
            .await;
        assert_eq!(got, Ok(None));
        assert_eq!(
            checks.load(Ordering::SeqCst),
            4,
            "a count bound, whatever the time"
        );
    }

    #[test]
    fn internal_jitter_is_in_range() {
        for _ in 0..1000 {
            let x = internal_random();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
