//! The [`Registry`] conformance suite: one `pub async fn` scenario per property of the trait's
//! `# Contract`, run against every implementation.
//!
//! Each scenario takes the registry under test and a cluster id unique to the run
//! ([`unique_cluster`]), so scenarios never see each other's repositories, even against a
//! shared cloud registry. A scenario panics with a message naming the provider, the location
//! and what was expected; it cleans up nothing (run it against a throw-away registry or
//! namespace).
//!
//! [`registry_conformance!`](crate::registry_conformance) turns every scenario into its own
//! `#[tokio::test]`, so a failure in one does not hide the others and each can be run alone
//! by name:
//!
//! ```no_run
//! // a test file of a provider crate
//! use std::sync::Arc;
//! use mirror_core::{LayoutRegistry, Registry};
//!
//! async fn layout() -> (Arc<dyn Registry>, tempfile::TempDir) {
//!     let dir = tempfile::tempdir().unwrap();
//!     (Arc::new(LayoutRegistry::new(dir.path())), dir)
//! }
//!
//! mirror_core::registry_conformance!(layout);
//! // cargo test push_list_delete
//! # fn main() {}
//! ```
//!
//! # Scenarios
//!
//! | scenario | proves |
//! |---|---|
//! | [`naming`] | names are valid, injective across ids and scopes, deterministic; empty ids are [`Error::InvalidName`](crate::Error::InvalidName) |
//! | [`ensure_twice`] | `ensure_repository` is idempotent and accepts changed settings |
//! | [`concurrent_ensure`] | 8 concurrent `ensure_repository` on one repository all succeed and leave it usable |
//! | [`push_list_delete`] | pushed images are listed with their tags and push times; `delete_image` removes exactly one image and its tags; `list_repositories` finds the repository |
//! | [`list_repositories_by_cluster`] | `list_repositories` returns every scope's repository of a cluster and none of another cluster |
//! | [`not_found`] | absent repositories list as empty, absent digests delete as [`Error::NotFound`](crate::Error::NotFound), absent manifests HEAD as `None` |
//! | [`pull_reference`] | the pull reference names the repository and pins the digest |
//! | [`referrers`] | referrers placed with an image (cosign tag, OCI 1.1 signature, SBOM, signature of the SBOM, attestation of a platform manifest) are folded into it in listings, never listed as images; `delete_image` deletes them and their tag-schema indexes with it and leaves another image's |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::registry::Registry;

mod naming;
mod referrers;
mod scenarios;

pub use naming::{all_scopes, naming};
pub use referrers::referrers;
pub use scenarios::{
    concurrent_ensure, ensure_twice, list_repositories_by_cluster, not_found, pull_reference,
    push_list_delete,
};

/// How far a push time recorded by the registry itself may be from the test's clock (cloud
/// registries have their own clock). Push times recorded by the library through bookkeeping
/// tags are checked exactly.
pub const PUSH_TIME_TOLERANCE: Duration = Duration::from_secs(30);

/// How many `ensure_repository` calls [`concurrent_ensure`] runs at once.
pub const CONCURRENT_ENSURES: usize = 8;

/// Whatever a constructor given to [`registry_conformance!`](crate::registry_conformance)
/// returns: something that holds the registry under test, and keeps alive what it needs (a
/// [`TestRegistry`](super::TestRegistry) process, a temporary directory) until the test ends.
///
/// Implemented for `Arc<R>` and `Box<R>` (`R` a registry or `dyn Registry`), and for pairs
/// `(holder, guard)` whose first element is one of those, the guard being anything.
pub trait RegistryHarness {
    /// The registry under test.
    fn registry(&self) -> &dyn Registry;
}

impl<R: Registry> RegistryHarness for Arc<R> {
    fn registry(&self) -> &dyn Registry {
        self.as_ref()
    }
}

impl<R: Registry> RegistryHarness for Box<R> {
    fn registry(&self) -> &dyn Registry {
        self.as_ref()
    }
}

impl RegistryHarness for Arc<dyn Registry> {
    fn registry(&self) -> &dyn Registry {
        self.as_ref()
    }
}

impl RegistryHarness for Box<dyn Registry> {
    fn registry(&self) -> &dyn Registry {
        self.as_ref()
    }
}

impl<H: RegistryHarness, G> RegistryHarness for (H, G) {
    fn registry(&self) -> &dyn Registry {
        self.0.registry()
    }
}

/// A cluster id no other run or scenario uses: `conf-<scenario>-<hex>`, the hex mixing the
/// clock, the process id and a counter. Lowercase ASCII, so the names built from it stay
/// readable.
pub fn unique_cluster(scenario: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mix = nanos ^ (u64::from(std::process::id()) << 40) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let scenario: String = scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("conf-{scenario}-{:x}", mix & 0xffff_ffff_ffff)
}

/// `provider at location`, for failure messages.
pub(crate) fn who(registry: &dyn Registry) -> String {
    format!("[{} at {}]", registry.provider(), registry.location())
}

/// Expands to one `#[tokio::test]` per [`Registry`] conformance scenario (see
/// [`testing::conformance`](crate::testing::conformance)), each named after its scenario so it
/// can be run alone (`cargo test generic::push_list_delete`).
///
/// The argument is a constructor called with no arguments at the start of each test and
/// awaited: an `async fn` path or a closure returning a future. What it returns must
/// implement [`RegistryHarness`](crate::testing::conformance::RegistryHarness), e.g.
/// `Arc<dyn Registry>` or `(Arc<dyn Registry>, guard)` where the guard (a
/// [`TestRegistry`](crate::testing::TestRegistry), a `TempDir`) lives until the test ends.
/// Each test gets its own cluster id from
/// [`unique_cluster`](crate::testing::conformance::unique_cluster).
///
/// Attributes written after the constructor (each preceded by a comma) are put on every test,
/// e.g. `#[ignore]` for a suite that needs cloud credentials:
/// `registry_conformance!(aws_registry, #[ignore = "needs AWS credentials"]);`
///
/// Tests run on a multi-thread tokio runtime (so
/// [`concurrent_ensure`](crate::testing::conformance::concurrent_ensure) runs on real
/// threads): the crate using the macro needs `tokio` with the `macros` and `rt-multi-thread`
/// features. Instantiate it once per module to test several registries in one crate.
///
/// ```no_run
/// mod layout {
///     use std::sync::Arc;
///     use mirror_core::{LayoutRegistry, Registry};
///
///     async fn make() -> (Arc<dyn Registry>, tempfile::TempDir) {
///         let dir = tempfile::tempdir().unwrap();
///         (Arc::new(LayoutRegistry::new(dir.path())), dir)
///     }
///
///     mirror_core::registry_conformance!(make);
/// }
///
/// mod layout_boxed_ignored {
///     use mirror_core::{LayoutRegistry, Registry};
///
///     mirror_core::registry_conformance!(
///         || async { Box::new(LayoutRegistry::new("/tmp/mirror-conformance")) as Box<dyn Registry> },
///         #[ignore = "shows attributes"]
///     );
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! registry_conformance {
    ($make:expr $(, #[$meta:meta])* $(,)?) => {
        $crate::registry_conformance!(@tests [$(#[$meta])*] ($make)
            naming
            ensure_twice
            concurrent_ensure
            push_list_delete
            list_repositories_by_cluster
            not_found
            pull_reference
            referrers
        );
    };
    (@tests $attrs:tt $make:tt $($scenario:ident)*) => {
        $( $crate::registry_conformance!(@test $attrs $make $scenario); )*
    };
    (@test [$(#[$meta:meta])*] ($make:expr) $scenario:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$meta])*
        async fn $scenario() {
            let harness = ($make)().await;
            let registry = $crate::testing::conformance::RegistryHarness::registry(&harness);
            let cluster = $crate::testing::conformance::unique_cluster(stringify!($scenario));
            $crate::testing::conformance::$scenario(registry, &cluster).await;
        }
    };
}
