//! The one retry policy.
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
//! `max_attempts` and by `max_elapsed` in total. The random source is injectable so tests are
//! deterministic.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;

/// A source of randomness in `[0, 1)` for jitter.
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

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
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
            jitter: None,
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
        }
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1), given the error.
    /// `None` when the error is not retryable or the budget is spent.
    pub fn next_wait(&self, attempt: u32, error: &Error, started: Instant) -> Option<Duration> {
        if attempt >= self.max_attempts || !is_transient(error) {
            return None;
        }
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max_backoff);
        let jitter = match &self.jitter {
            Some(j) => j().clamp(0.0, 1.0),
            None => internal_random(),
        };
        // Full jitter, but never less than half the exponential step.
        let mut wait = exp.mul_f64(0.5 + 0.5 * jitter);
        if let Error::RateLimited {
            retry_after: Some(ra),
            ..
        } = error
        {
            wait = wait.max(*ra).min(self.max_backoff);
        }
        if started.elapsed() + wait > self.max_elapsed {
            return None;
        }
        Some(wait)
    }
}

impl RetryConfig {
    /// Runs `op` until it succeeds, fails with an error that is not transient, or the budget
    /// is spent (then its last error is returned), waiting [`next_wait`](Self::next_wait)
    /// between attempts.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(t) => return Ok(t),
                Err(e) => match self.next_wait(attempt, &e, started) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(e),
                },
            }
        }
    }
}

/// Whether an error is worth another attempt (see the module docs).
pub fn is_transient(e: &Error) -> bool {
    match e {
        Error::Connect { .. } | Error::RateLimited { .. } => true,
        Error::Http { status, .. } => *status >= 500 || *status == 408,
        Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => true,
        _ => false,
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
            operation: "GET".into(),
            location: "x".into(),
            status,
            message: String::new(),
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
    fn retry_after_is_honoured_and_capped() {
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
        let e = Error::RateLimited {
            registry: "r".into(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            c.next_wait(1, &e, Instant::now()),
            Some(Duration::from_secs(10))
        );
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

    #[test]
    fn internal_jitter_is_in_range() {
        for _ in 0..1000 {
            let x = internal_random();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
