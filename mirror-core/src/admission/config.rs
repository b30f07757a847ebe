//! [`AdmissionConfig`]: the budget, strictness, exclusions and bounds of an
//! [`AdmissionController`](super::AdmissionController), and [`ImagePattern`].

use std::time::Duration;

use super::AdmissionError;
use crate::retry::RetryConfig;

/// The label or annotation that opts a pod out (value `"true"`): its images are left as
/// they are. Namespaces opt out through the webhook's `namespaceSelector` (README).
pub const OPT_OUT: &str = "mirror.admission/skip";

/// The default [`AdmissionConfig::budget`]: half the API server's default `timeoutSeconds`
/// (10 s), which leaves room for the round trip and a slow TLS handshake.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(5);

/// The default [`AdmissionConfig::max_body`]: an AdmissionReview holds the object and, for
/// updates, the old object; etcd stores objects up to 1.5 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

/// How a pod's images are rewritten: budget, strictness, exclusions, bounds.
///
/// ```
/// use std::time::Duration;
/// use mirror_core::admission::{AdmissionConfig, ImagePattern};
/// let config = AdmissionConfig::default()
///     .with_budget(Duration::from_secs(3))
///     .with_own_namespace("mirror")
///     .with_excluded_image(ImagePattern::new("registry.k8s.io/*").unwrap());
/// assert!(config.namespace_excluded("mirror"));
/// assert!(config.namespace_excluded("kube-system"));
/// assert!(!config.namespace_excluded("shop"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// How long an admission may wait for images not yet mirrored (default
    /// [`DEFAULT_BUDGET`]); the copy goes on in the background afterwards. An API server's
    /// `?timeout=` shorter than this lowers it for that request (see
    /// [`effective_budget`](Self::effective_budget)).
    pub budget: Duration,
    /// Deny pods whose images cannot be served from the mirror within the budget (copy under
    /// way, failed, not readable with the pod's credentials) instead of admitting them
    /// unchanged: for clusters that cannot reach the sources' registries.
    pub strict: bool,
    /// The namespace the webhook runs in: always excluded (its own pods must start when the
    /// mirror cannot).
    pub own_namespace: Option<String>,
    /// More namespaces whose pods are left alone.
    pub excluded_namespaces: Vec<String>,
    /// Rewrite pods of `kube-system` too (excluded by default: the control plane's add-ons
    /// must start when the mirror registry cannot).
    pub admit_kube_system: bool,
    /// Images left as they are (matched against the image as written and as normalised).
    pub excluded_images: Vec<ImagePattern>,
    /// Mirror images of loopback hosts (`localhost:5000/…`, `127.0.0.1/…`). Off by default:
    /// for a pod such a host is its node's, which the webhook cannot reach (tests turn it on).
    pub loopback_sources: bool,
    /// The name of a pull secret for the mirror registry added to the `imagePullSecrets` of
    /// pods whose images were rewritten (CREATE only: pod updates cannot change it). The
    /// secret must exist in every namespace admitted.
    pub inject_pull_secret: Option<String>,
    /// Images resolved in the background at once (single flights); a pod naming more new
    /// images than this is admitted with the rest unchanged, and no copy started for them.
    pub max_flights: usize,
    /// After a failed copy, admissions of that image answer "failed" at once for this long
    /// instead of asking the source again.
    pub failure_backoff: Duration,
    /// How long a source's answer that a pod's credentials may read an image is reused.
    pub access_ttl: Duration,
    /// How long pull secrets and service accounts read from the Kubernetes API are reused.
    pub secret_ttl: Duration,
    /// Review bodies longer than this are refused unread (answered as malformed).
    pub max_body: usize,
    /// The retry policy of the source clients made from pods' pull secrets (default: the
    /// library's, bounded anyway by the budget for the admission's own wait).
    pub source_retry: Option<RetryConfig>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            budget: DEFAULT_BUDGET,
            strict: false,
            own_namespace: None,
            excluded_namespaces: Vec::new(),
            admit_kube_system: false,
            excluded_images: Vec::new(),
            loopback_sources: false,
            inject_pull_secret: None,
            max_flights: 32,
            failure_backoff: Duration::from_secs(30),
            access_ttl: Duration::from_secs(300),
            secret_ttl: Duration::from_secs(30),
            max_body: DEFAULT_MAX_BODY,
            source_retry: None,
        }
    }
}

impl AdmissionConfig {
    /// Sets [`budget`](Self::budget).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Sets [`strict`](Self::strict).
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Sets [`own_namespace`](Self::own_namespace).
    pub fn with_own_namespace(mut self, namespace: &str) -> Self {
        self.own_namespace = Some(namespace.to_string());
        self
    }

    /// Adds to [`excluded_namespaces`](Self::excluded_namespaces).
    pub fn with_excluded_namespace(mut self, namespace: &str) -> Self {
        self.excluded_namespaces.push(namespace.to_string());
        self
    }

    /// Sets [`admit_kube_system`](Self::admit_kube_system).
    pub fn with_kube_system(mut self, admit: bool) -> Self {
        self.admit_kube_system = admit;
        self
    }

    /// Adds to [`excluded_images`](Self::excluded_images).
    pub fn with_excluded_image(mut self, pattern: ImagePattern) -> Self {
        self.excluded_images.push(pattern);
        self
    }

    /// Sets [`loopback_sources`](Self::loopback_sources).
    pub fn with_loopback_sources(mut self, allow: bool) -> Self {
        self.loopback_sources = allow;
        self
    }

    /// Sets [`inject_pull_secret`](Self::inject_pull_secret).
    pub fn with_pull_secret(mut self, name: &str) -> Self {
        self.inject_pull_secret = Some(name.to_string());
        self
    }

    /// Sets [`max_flights`](Self::max_flights) (at least 1).
    pub fn with_max_flights(mut self, n: usize) -> Self {
        self.max_flights = n.max(1);
        self
    }

    /// Sets [`source_retry`](Self::source_retry).
    pub fn with_source_retry(mut self, retry: RetryConfig) -> Self {
        self.source_retry = Some(retry);
        self
    }

    /// Whether pods of `namespace` are left alone: the webhook's own, `kube-system` unless
    /// [`admit_kube_system`](Self::admit_kube_system), and the ones listed.
    pub fn namespace_excluded(&self, namespace: &str) -> bool {
        self.own_namespace.as_deref() == Some(namespace)
            || (namespace == "kube-system" && !self.admit_kube_system)
            || self.excluded_namespaces.iter().any(|n| n == namespace)
    }

    /// The time one admission may wait: the budget, lowered for an API server that waits
    /// `api_timeout` (its `?timeout=`): that minus one second for the round trip, or half of
    /// it when it is 2 s or less.
    pub fn effective_budget(&self, api_timeout: Option<Duration>) -> Duration {
        match api_timeout {
            Some(t) if t > Duration::from_secs(2) => self.budget.min(t - Duration::from_secs(1)),
            Some(t) => self.budget.min(t / 2),
            None => self.budget,
        }
    }

    /// Checks the values a deployer may get wrong.
    pub(crate) fn validate(&self) -> Result<(), AdmissionError> {
        if self.budget > Duration::from_secs(30) {
            return Err(AdmissionError::Config(format!(
                "the budget ({:?}) is longer than the longest webhook timeout the API server \
                 allows (30 s)",
                self.budget
            )));
        }
        if let Some(name) = &self.inject_pull_secret {
            if !is_dns_subdomain(name) {
                return Err(AdmissionError::Config(format!(
                    "{name:?} is not a valid secret name"
                )));
            }
        }
        Ok(())
    }
}

/// A DNS subdomain (RFC 1123), the grammar of secret names.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An image pattern: `*` matches any run of characters (`/` included), everything else
/// itself. `registry.k8s.io/*`, `*/library/busybox:*`, `docker.io/bitnami/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern(String);

impl ImagePattern {
    /// A pattern (1 to 512 characters, no whitespace).
    pub fn new(pattern: &str) -> Result<Self, AdmissionError> {
        if pattern.is_empty() || pattern.len() > 512 || pattern.chars().any(char::is_whitespace) {
            return Err(AdmissionError::Config(format!(
                "{pattern:?} is not an image pattern (1 to 512 characters, no whitespace)"
            )));
        }
        Ok(ImagePattern(pattern.to_string()))
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `image` matches the whole pattern.
    pub fn matches(&self, image: &str) -> bool {
        glob(self.0.as_bytes(), image.as_bytes())
    }
}

impl std::fmt::Display for ImagePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*` wildcard matching in O(pattern × text) at worst, without recursion: on a mismatch
/// the last `*` takes one more character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_images() {
        let p = ImagePattern::new("registry.k8s.io/*").unwrap();
        assert!(p.matches("registry.k8s.io/pause:3.9"));
        assert!(p.matches("registry.k8s.io/a/b@sha256:00"));
        assert!(!p.matches("xregistry.k8s.io/pause"));
        let p = ImagePattern::new("*/library/busybox:*").unwrap();
        assert!(p.matches("docker.io/library/busybox:1.36"));
        assert!(!p.matches("docker.io/library/busybox"));
        assert!(ImagePattern::new("exact:1").unwrap().matches("exact:1"));
        assert!(!ImagePattern::new("exact:1").unwrap().matches("exact:10"));
        assert!(ImagePattern::new("*").unwrap().matches(""));
        assert!(ImagePattern::new("a b").is_err());
        assert!(ImagePattern::new("").is_err());
        // Many stars against a long text stay fast (no exponential backtracking).
        let p = ImagePattern::new(&"*a".repeat(50)).unwrap();
        assert!(!p.matches(&"a".repeat(49)));
    }

    #[test]
    fn namespaces_excluded_by_default_and_on_request() {
        let c = AdmissionConfig::default().with_own_namespace("mirror");
        assert!(c.namespace_excluded("mirror"));
        assert!(c.namespace_excluded("kube-system"));
        assert!(!c.namespace_excluded("default"));
        let c = c.with_kube_system(true).with_excluded_namespace("batch");
        assert!(!c.namespace_excluded("kube-system"));
        assert!(c.namespace_excluded("batch"));
    }

    #[test]
    fn the_api_servers_timeout_lowers_the_budget() {
        let c = AdmissionConfig::default().with_budget(Duration::from_secs(5));
        assert_eq!(c.effective_budget(None), Duration::from_secs(5));
        assert_eq!(
            c.effective_budget(Some(Duration::from_secs(10))),
            Duration::from_secs(5)
        );
        assert_eq!(
            c.effective_budget(Some(Duration::from_secs(3))),
            Duration::from_secs(2)
        );
        assert_eq!(
            c.effective_budget(Some(Duration::from_secs(1))),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn invalid_settings_are_refused() {
        assert!(AdmissionConfig::default()
            .with_budget(Duration::from_secs(31))
            .validate()
            .is_err());
        assert!(AdmissionConfig::default()
            .with_pull_secret("Bad_Name")
            .validate()
            .is_err());
        assert!(AdmissionConfig::default()
            .with_pull_secret("mirror-pull")
            .validate()
            .is_ok());
    }
}
