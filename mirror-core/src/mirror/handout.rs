//! What a deploy handed out stays until its pods can start.
//!
//! A deploy hands out a digest-pinned reference; the deployer applies its manifests and the
//! pods pull minutes later. Until then nothing shows the image is needed: the in-use source
//! (Kubernetes discovery) cannot see pods that do not exist yet. Three deleters could take it
//! meanwhile: Service-mode eviction by another deploy of the service, `sweep`, and a native
//! retention policy the library wrote (ECR lifecycle rules, Artifact Registry cleanup
//! policies). So every deploy that hands an image out makes sure none of them deletes it
//! within the grace period ([`MirrorBuilder::eviction_grace`](super::MirrorBuilder)):
//!
//! - a **copy** pushes the image now: eviction and sweep keep anything pushed less than the
//!   grace ago ([`KeepReason::Recent`](crate::eviction::KeepReason)), and native policies
//!   count from the push;
//! - a **skip** (or a digest found in the repository) hands out an image pushed at any time.
//!   When it could be deleted within the grace, the deploy writes a **hand-out mark**
//!   ([`crate::image::handed_out_tag`]): a tag `mirror.anchor.until.<ms>.<hex12>` that eviction
//!   and sweep honour and that native policies keep (it starts with the anchor prefix).
//!
//! A skip must stay a manifest HEAD (invariant 5), so the deploy decides from what this
//! [`Mirror`](super::Mirror) already knows ([`Knowledge`]: push times and marks it wrote or
//! listed, and the newest images of Service-mode repositories):
//!
//! - Cluster mode: safe when the push time plus the retention is past the grace. A `Mirror`
//!   that does not know the push time learns it once per repository: on registries whose push
//!   times are the library's bookkeeping tags, from one tag listing (every `mirror.pushed.*`
//!   and mark of the repository at once); on registries that record push times themselves
//!   (ECR, Artifact Registry) the mark is written instead (a GET and a PUT, no control-plane
//!   call), and [`Mirror::protect`](super::Mirror::protect) removes marks that have passed.
//! - Service mode: safe when the image is one of the `keep_previous` newest of the repository
//!   or was pushed within the grace, as far as this `Mirror` knows (it lists the repository
//!   at every eviction). A `Mirror` that knows nothing of the repository (a fresh process)
//!   takes the image for the service's newest and writes nothing: the warm deploy stays one
//!   HEAD. What that leaves open: a fresh process rolling a service back to an older image
//!   while another deploy of the same service copies a new image and evicts within the grace.
//!
//! Marks are named by the end of a grace-sized time slot, so the deploys of one slot write the
//! same tag (an idempotent PUT) and a repository gains at most one mark per image and slot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::image::{parse_handed_out_tag, parse_pushed_tag, ImageRecord};

/// Images remembered per repository at most; past it the repository's knowledge is dropped
/// (and learned again when needed).
const MAX_IMAGES_PER_REPOSITORY: usize = 50_000;

/// Repositories remembered at most.
const MAX_REPOSITORIES: usize = 4_096;

/// What this `Mirror` knows of one image of a repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Known {
    /// When it was pushed (the latest push).
    pub pushed_at: Option<SystemTime>,
    /// The latest hand-out mark.
    pub protected_until: Option<SystemTime>,
    /// Its rank among the repository's images by push time, newest first (0: the newest),
    /// when a listing or a copy of this `Mirror` told it.
    pub rank: Option<usize>,
}

#[derive(Debug, Default)]
struct RepositoryKnowledge {
    images: HashMap<Digest, Known>,
    /// When the repository's push times were last learned from a tag listing.
    learned_at: Option<SystemTime>,
}

/// What this `Mirror` knows of the images of the repositories it touched: enough to decide
/// whether a skip must write a hand-out mark. Stale knowledge errs on the side of a mark
/// (push times only grow, marks only add protection), except ranks, which a copy by another
/// process can change: see the module docs.
#[derive(Debug, Default)]
pub(super) struct Knowledge {
    repositories: Mutex<HashMap<String, RepositoryKnowledge>>,
}

impl Knowledge {
    fn with<T>(&self, repository: &str, f: impl FnOnce(&mut RepositoryKnowledge) -> T) -> T {
        let mut map = match self.repositories.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= MAX_REPOSITORIES && !map.contains_key(repository) {
            map.clear();
        }
        let entry = map.entry(repository.to_string()).or_default();
        if entry.images.len() >= MAX_IMAGES_PER_REPOSITORY {
            *entry = RepositoryKnowledge::default();
        }
        f(entry)
    }

    /// What is known of `digest` in `repository`.
    pub fn get(&self, repository: &str, digest: &Digest) -> Option<Known> {
        self.with(repository, |r| r.images.get(digest).copied())
    }

    /// A listing of the whole repository: push times, marks and ranks.
    pub fn learn_listing(&self, repository: &str, images: &[ImageRecord]) {
        let mut ranked: Vec<&ImageRecord> =
            images.iter().filter(|i| i.orphan_of.is_none()).collect();
        ranked.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.digest.cmp(&b.digest)));
        self.with(repository, |r| {
            r.images.clear();
            for (rank, img) in ranked.into_iter().enumerate() {
                r.images.insert(
                    img.digest.clone(),
                    Known {
                        pushed_at: img.pushed_at,
                        protected_until: img.protected_until,
                        rank: Some(rank),
                    },
                );
            }
        });
    }

    /// This `Mirror` pushed (or tagged anew) `digest` into `repository` at `at`: it is the
    /// newest image there.
    pub fn learn_push(&self, repository: &str, digest: &Digest, at: SystemTime) {
        self.with(repository, |r| {
            for (d, k) in r.images.iter_mut() {
                if d != digest {
                    k.rank = k.rank.map(|n| n + 1);
                }
            }
            let k = r.images.entry(digest.clone()).or_default();
            k.pushed_at = Some(k.pushed_at.map_or(at, |p| p.max(at)));
            k.rank = Some(0);
        });
    }

    /// A hand-out mark protecting `digest` until `until` was written.
    pub fn learn_mark(&self, repository: &str, digest: &Digest, until: SystemTime) {
        self.with(repository, |r| {
            let k = r.images.entry(digest.clone()).or_default();
            k.protected_until = Some(k.protected_until.map_or(until, |u| u.max(until)));
        });
    }

    /// When the repository's tags were last read for push times.
    pub fn learned_at(&self, repository: &str) -> Option<SystemTime> {
        self.with(repository, |r| r.learned_at)
    }

    /// The bookkeeping tags of a repository (its whole tag listing): the push times and marks
    /// they carry, by the 12 hex digits they name. Only images already known or named in
    /// `digests` are updated (a 12-hex prefix is matched against full digests).
    pub fn learn_tags(
        &self,
        repository: &str,
        tags: &[String],
        digests: &[&Digest],
        at: SystemTime,
    ) {
        let mut pushed: HashMap<&str, SystemTime> = HashMap::new();
        let mut marks: HashMap<&str, SystemTime> = HashMap::new();
        let mut hexes: Vec<(SystemTime, String, bool)> = Vec::new();
        for t in tags {
            if let Some((time, hex)) = parse_pushed_tag(t) {
                hexes.push((time, hex, true));
            } else if let Some((time, hex)) = parse_handed_out_tag(t) {
                hexes.push((time, hex, false));
            }
        }
        for (time, hex, is_push) in &hexes {
            let map = if *is_push { &mut pushed } else { &mut marks };
            let e = map.entry(hex.as_str()).or_insert(*time);
            *e = (*e).max(*time);
        }
        self.with(repository, |r| {
            r.learned_at = Some(at);
            for d in digests {
                r.images.entry((*d).clone()).or_default();
            }
            for (d, k) in r.images.iter_mut() {
                let hex = &d.hex()[..12.min(d.hex().len())];
                if let Some(t) = pushed.get(hex) {
                    k.pushed_at = Some(k.pushed_at.map_or(*t, |p| p.max(*t)));
                }
                if let Some(t) = marks.get(hex) {
                    k.protected_until = Some(k.protected_until.map_or(*t, |u| u.max(*t)));
                }
            }
        });
    }
}

/// How a repository's images can be deleted, for [`is_safe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deleter {
    /// Service-mode eviction keeping the `keep_previous` newest.
    Eviction {
        /// Previous images kept.
        keep_previous: usize,
    },
    /// Retention (sweep, native policies): images pushed more than this ago.
    Retention(Duration),
}

/// Whether an image handed out at `now` is sure to stay until `now + grace` without a mark,
/// given what is `known` of it (`None`: nothing). Pure: the decision the module docs describe.
pub(super) fn is_safe(
    known: Option<Known>,
    deleter: Deleter,
    now: SystemTime,
    grace: Duration,
) -> bool {
    if grace.is_zero() {
        return true;
    }
    let needed = now + grace;
    let Some(k) = known else {
        // Nothing known: a Service-mode repository's image is taken for its newest (the
        // warm deploy stays a HEAD); an image under retention may be about to expire.
        return matches!(deleter, Deleter::Eviction { .. });
    };
    if k.protected_until.is_some_and(|u| u >= needed) {
        return true;
    }
    match deleter {
        Deleter::Retention(retention) => k.pushed_at.is_some_and(|p| p + retention >= needed),
        Deleter::Eviction { keep_previous } => {
            // Pushed just now (by this call or another): recent for the whole grace.
            k.pushed_at.is_some_and(|p| p >= now) || k.rank.is_none_or(|rank| rank < keep_previous)
        }
    }
}

/// The time a mark written at `now` protects until: the end of the grace-sized slot holding
/// `now + grace` (so every deploy of one slot writes the same tag).
pub(super) fn mark_until(now: SystemTime, grace: Duration) -> SystemTime {
    let needed = now + grace;
    let slot = grace.as_millis().max(1);
    let millis = needed
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let end = millis.div_ceil(slot).saturating_mul(slot);
    UNIX_EPOCH + Duration::from_millis(u64::try_from(end).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn at(mins: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + MIN * mins as u32
    }

    #[test]
    fn retention_needs_a_mark_only_near_expiry_or_when_nothing_is_known() {
        let grace = MIN * 10;
        let retention = Deleter::Retention(MIN * 60);
        let pushed = |m| Known {
            pushed_at: Some(at(m)),
            ..Known::default()
        };
        // Pushed at 0, expires at 60: safe at 49, not at 51.
        assert!(is_safe(Some(pushed(0)), retention, at(49), grace));
        assert!(!is_safe(Some(pushed(0)), retention, at(51), grace));
        assert!(!is_safe(None, retention, at(0), grace));
        // A mark covering the grace makes it safe.
        let marked = Known {
            protected_until: Some(at(62)),
            ..pushed(0)
        };
        assert!(is_safe(Some(marked), retention, at(52), grace));
        assert!(!is_safe(Some(marked), retention, at(53), grace));
        // No grace, no protection needed.
        assert!(is_safe(None, retention, at(0), Duration::ZERO));
    }

    #[test]
    fn eviction_needs_a_mark_for_images_past_keep_previous() {
        let grace = MIN * 10;
        let keep1 = Deleter::Eviction { keep_previous: 1 };
        let ranked = |rank| Known {
            pushed_at: Some(at(0)),
            rank: Some(rank),
            ..Known::default()
        };
        assert!(is_safe(Some(ranked(0)), keep1, at(100), grace));
        assert!(!is_safe(Some(ranked(1)), keep1, at(100), grace));
        assert!(!is_safe(
            Some(ranked(0)),
            Deleter::Eviction { keep_previous: 0 },
            at(100),
            grace
        ));
        // Nothing known: the warm deploy of a fresh process writes nothing.
        assert!(is_safe(None, keep1, at(100), grace));
        // Pushed now: recent through the grace.
        let fresh = Known {
            pushed_at: Some(at(100)),
            rank: Some(3),
            ..Known::default()
        };
        assert!(is_safe(Some(fresh), keep1, at(100), grace));
    }

    #[test]
    fn marks_of_one_slot_share_their_time() {
        let grace = MIN * 10;
        // at(0) + 10 min and at(6) + 10 min fall in one 10-minute slot of the Unix clock.
        let a = mark_until(at(0), grace);
        let b = mark_until(at(6), grace);
        assert_eq!(a, b);
        assert!(a >= at(16));
        assert_ne!(mark_until(at(7), grace), a, "the next slot");
        assert!(mark_until(at(9), grace) >= at(9) + grace);
    }

    #[test]
    fn listings_rank_images_newest_first_and_pushes_move_them() {
        let k = Knowledge::default();
        let d = |n: u8| Digest::sha256_of(&[n]);
        let mut old = ImageRecord::new("r", d(1));
        old.pushed_at = Some(at(0));
        let mut new = ImageRecord::new("r", d(2));
        new.pushed_at = Some(at(5));
        k.learn_listing("r", &[old, new]);
        assert_eq!(k.get("r", &d(2)).and_then(|k| k.rank), Some(0));
        assert_eq!(k.get("r", &d(1)).and_then(|k| k.rank), Some(1));
        k.learn_push("r", &d(3), at(9));
        assert_eq!(k.get("r", &d(3)).and_then(|k| k.rank), Some(0));
        assert_eq!(k.get("r", &d(2)).and_then(|k| k.rank), Some(1));
        assert_eq!(k.get("r", &d(1)).and_then(|k| k.rank), Some(2));
    }

    #[test]
    fn tag_listings_teach_push_times_and_marks_by_prefix() {
        let k = Knowledge::default();
        let d = Digest::sha256_of(b"x");
        let tags = vec![
            crate::image::pushed_tag(at(1), &d),
            crate::image::pushed_tag(at(3), &d),
            crate::image::handed_out_tag(at(7), &d),
            "v1".to_string(),
        ];
        k.learn_tags("r", &tags, &[&d], at(10));
        let known = k.get("r", &d).unwrap();
        assert_eq!(known.pushed_at, Some(at(3)));
        assert_eq!(known.protected_until, Some(at(7)));
        assert_eq!(k.learned_at("r"), Some(at(10)));
    }
}
