//! A property test of the promise "exactly the image asked for, and there until its pods can
//! start", over random sequences of deploys against the real registry (source and mirror are
//! distribution registries; the source sits behind a fault proxy that can take it down).
//!
//! Each case draws a mode (Service with `keep_previous` 0 or 1, or Cluster with a one-hour
//! retention), a tag policy (`Verify` or `Trust`) and a sequence of steps: deploys (two
//! services × two source repositories × two tags, by tag or pinned to the digest the tag names
//! now), re-pushes of a
//! source tag with new content, the source going down and coming back, the clock moving on
//! (the `Mirror`'s push times, marks and grace read a manual clock), and sweeps by another
//! process. After every step:
//!
//! - a deploy that succeeded returned the source's digest at that moment; or, when the source
//!   could not tell (down) or was not asked (`Trust`, a pinned digest the mirror holds), the
//!   digest last mirrored from that same source and tag (or the pinned digest itself);
//! - a deploy failed only when the source was down or never had the tag;
//! - every image handed out less than the grace period ago is still in its repository.
//!
//! Service-mode deploys all go through one `Mirror` (one deployer process): a fresh process
//! knows nothing of a repository's ranks and writes no hand-out mark on a warm skip (see the
//! crate's `mirror::handout` docs). Cluster-mode deploys alternate between the long-lived
//! `Mirror` and fresh ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mirror_core::kit::retry::{Clock, ManualClock, RetryConfig};
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{Fault, FaultProxy, Rule, TestImage, TestRegistry};
use mirror_core::{
    ClusterStrategy, Digest, GenericRegistry, Mirror, MirrorStrategy, Registry, Repository,
    ServiceStrategy, Source, Sources, TagPolicy,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const GRACE: Duration = Duration::from_secs(600);
const REPOS: [&str; 2] = ["api", "worker"];
const TAGS: [&str; 2] = ["v1", "v2"];
const SERVICES: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone, Copy)]
enum Mode {
    Service(usize),
    Cluster,
}

#[derive(Debug, Clone)]
enum Step {
    Deploy {
        service: usize,
        repo: usize,
        tag: usize,
        pinned: bool,
        fresh: bool,
    },
    Repush {
        repo: usize,
        tag: usize,
    },
    Down,
    Up,
    Advance(u64),
    Sweep,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..2usize, 0..2usize, 0..2usize, prop::bool::weighted(0.25), any::<bool>())
            .prop_map(|(service, repo, tag, pinned, fresh)| Step::Deploy { service, repo, tag, pinned, fresh }),
        1 => (0..2usize, 0..2usize).prop_map(|(repo, tag)| Step::Repush { repo, tag }),
        1 => Just(Step::Down),
        1 => Just(Step::Up),
        3 => prop::sample::select(vec![60u64, 30 * 60, 2 * 3600, 2 * 3600]).prop_map(Step::Advance),
        2 => Just(Step::Sweep),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Service(0)),
        Just(Mode::Service(1)),
        Just(Mode::Cluster)
    ]
}

struct World {
    src: TestRegistry,
    proxy: FaultProxy,
    dst: TestRegistry,
    case: AtomicUsize,
    seed: AtomicUsize,
}

impl World {
    fn mirror_registry(&self) -> Arc<GenericRegistry> {
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&self.dst.host(), Credentials::Anonymous).unwrap(),
        ))
    }
}

/// One case: its own cluster and source repositories, so cases never see each other.
struct Case<'w> {
    world: &'w World,
    mode: Mode,
    policy: TagPolicy,
    cluster: String,
    prefix: String,
    clock: Arc<ManualClock>,
    long_lived: Option<Mirror>,
    down: bool,
    /// What each source tag names now.
    source: HashMap<(usize, usize), Digest>,
    /// What was last mirrored from a source tag, per destination repository.
    mirrored: HashMap<(String, usize, usize), Digest>,
    /// Every hand-out: (repository, digest, when).
    handed: Vec<(String, Digest, SystemTime)>,
}

impl<'w> Case<'w> {
    /// A `Mirror` of this case's mode and policy on its clock (a deployer process).
    fn new_mirror(&self) -> Mirror {
        let strategy: Arc<dyn MirrorStrategy> = match self.mode {
            Mode::Service(keep) => Arc::new(ServiceStrategy {
                keep_previous: keep,
            }),
            Mode::Cluster => Arc::new(ClusterStrategy::new(Duration::from_secs(3600))),
        };
        Mirror::builder(self.world.mirror_registry(), &self.cluster)
            .strategy(strategy)
            .tag_policy(self.policy)
            .eviction_grace(GRACE)
            .sources(Sources::new().with_retry(RetryConfig::none()))
            .clock(self.clock.clone())
            .build()
            .unwrap()
    }

    fn source_ref(&self, repo: usize, tag: usize) -> String {
        format!(
            "{}/{}/{}:{}",
            self.world.proxy.host(),
            self.prefix,
            REPOS[repo],
            TAGS[tag]
        )
    }

    async fn repush(&mut self, repo: usize, tag: usize) {
        let seed = self.world.seed.fetch_add(1, Ordering::Relaxed) as u64;
        let img = TestImage::builder()
            .seed(10_000 + seed)
            .layers([400, 300])
            .build();
        let store = RegistryClient::new(&self.world.src.host(), Credentials::Anonymous)
            .unwrap()
            .repository(&format!("{}/{}", self.prefix, REPOS[repo]))
            .unwrap();
        img.push(&store, TAGS[tag]).await.unwrap();
        self.source.insert((repo, tag), img.digest().clone());
    }

    async fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Repush { repo, tag } => self.repush(repo, tag).await,
            Step::Down => {
                self.world.proxy.clear();
                self.world.proxy.add(Rule::new(
                    None,
                    "",
                    Fault::Status {
                        status: 503,
                        retry_after: None,
                    },
                    usize::MAX,
                ));
                self.down = true;
            }
            Step::Up => {
                self.world.proxy.clear();
                self.down = false;
            }
            Step::Advance(secs) => self.clock.advance(Duration::from_secs(secs)),
            Step::Sweep => {
                if matches!(self.mode, Mode::Cluster) {
                    let sweeper = self.new_mirror();
                    sweeper
                        .sweep(self.clock.now(), &Default::default(), false)
                        .await
                        .map_err(|e| TestCaseError::fail(format!("sweep failed: {e}")))?;
                }
            }
            Step::Deploy {
                service,
                repo,
                tag,
                pinned,
                fresh,
            } => self.deploy(service, repo, tag, pinned, fresh).await?,
        }
        self.check_handed_out().await
    }

    async fn deploy(
        &mut self,
        service: usize,
        repo: usize,
        tag: usize,
        pinned: bool,
        fresh: bool,
    ) -> Result<(), TestCaseError> {
        let trust = self.policy == TagPolicy::Trust;
        let current = self.source.get(&(repo, tag)).cloned();
        let (text, pin) = match (&current, pinned) {
            (Some(d), true) => (
                format!(
                    "{}/{}/{}:{}@{d}",
                    self.world.proxy.host(),
                    self.prefix,
                    REPOS[repo],
                    TAGS[tag]
                ),
                Some(d.clone()),
            ),
            _ => (self.source_ref(repo, tag), None),
        };
        let src = Source::parse(&text).unwrap();
        // Service mode: one deployer process (see the module docs); Cluster mode: either.
        let fresh = fresh && matches!(self.mode, Mode::Cluster);
        let result = if fresh {
            self.new_mirror().mirror(SERVICES[service], &src).await
        } else {
            let m = self.long_lived.as_ref().expect("set at the start");
            m.mirror(SERVICES[service], &src).await
        };
        match result {
            Ok(d) => {
                let key = (d.repository.clone(), repo, tag);
                let last = self.mirrored.get(&key);
                let ok = match (&pin, self.down, trust) {
                    (Some(p), _, _) => d.digest == *p,
                    (None, false, false) => Some(&d.digest) == current.as_ref(),
                    (None, false, true) => {
                        Some(&d.digest) == current.as_ref() || Some(&d.digest) == last
                    }
                    (None, true, _) => Some(&d.digest) == last,
                };
                prop_assert!(
                    ok,
                    "{text} → {} ({:?}); source now {current:?}, last mirrored {last:?}, down {}",
                    d.digest,
                    d.action,
                    self.down
                );
                if pin.is_none() {
                    self.mirrored.insert(key, d.digest.clone());
                }
                self.handed
                    .push((d.repository.clone(), d.digest.clone(), self.clock.now()));
            }
            Err(e) => {
                prop_assert!(
                    self.down || current.is_none(),
                    "{text} failed while the source was up and has the tag: {e}"
                );
            }
        }
        Ok(())
    }

    async fn check_handed_out(&self) -> Result<(), TestCaseError> {
        let registry = self.world.mirror_registry();
        let now = self.clock.now();
        for (repository, digest, at) in &self.handed {
            if now.duration_since(*at).unwrap_or_default() >= GRACE {
                continue;
            }
            let store = registry
                .store(&Repository::listed(repository))
                .await
                .unwrap();
            let held = store.head_manifest(&digest.to_string()).await.unwrap();
            prop_assert!(
                held.is_some(),
                "{repository}@{digest}, handed out {:?} ago, was deleted",
                now.duration_since(*at).unwrap_or_default()
            );
        }
        Ok(())
    }
}

#[test]
fn every_deploy_returns_the_sources_image_or_what_was_mirrored_from_it_and_hand_outs_stay() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = rt.block_on(async {
        let src = TestRegistry::start();
        let proxy = FaultProxy::start(&src.host());
        World {
            src,
            proxy,
            dst: TestRegistry::start(),
            case: AtomicUsize::new(0),
            seed: AtomicUsize::new(0),
        }
    });
    let cases: u32 = std::env::var("IDENTITY_MODEL_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let policy = prop_oneof![Just(TagPolicy::Verify), Just(TagPolicy::Trust)];
    let result = runner.run(
        &(mode(), policy, prop::collection::vec(step(), 8..24)),
        |(mode, policy, steps)| {
            rt.block_on(async {
                let n = world.case.fetch_add(1, Ordering::Relaxed);
                let clock = ManualClock::new(SystemTime::now());
                let mut case = Case {
                    world: &world,
                    mode,
                    policy,
                    cluster: format!("c{n}"),
                    prefix: format!("p{n}"),
                    clock: clock.clone(),
                    long_lived: None,
                    down: false,
                    source: HashMap::new(),
                    mirrored: HashMap::new(),
                    handed: Vec::new(),
                };
                case.long_lived = Some(case.new_mirror());
                // Every source tag exists at the start; re-pushes change them.
                for repo in 0..REPOS.len() {
                    for tag in 0..TAGS.len() {
                        case.repush(repo, tag).await;
                    }
                }
                world.proxy.clear();
                for s in &steps {
                    case.run(s).await?;
                }
                world.proxy.clear();
                Ok(())
            })
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
