//! Eviction and retention policy: pure functions from (listing, in-use set, clock) to a plan.
//!
//! Nothing here does I/O; [`crate::Mirror`] lists images, asks for a plan, then executes it.
//! Plans never name an image outside the repository they are computed for, never the image just
//! deployed, never an in-use or anchored image, never an image pushed less than `grace` ago
//! (another deployer may have just pushed it and not yet started its pods), and never an image
//! a deploy handed out whose hand-out mark has not passed ([`ImageRecord::protected_until`]).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::digest::Digest;
pub use crate::image::ImageRecord;

/// Why an image is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeepReason {
    /// The image this deployment just mirrored.
    JustDeployed,
    /// In the caller's in-use set.
    InUse,
    /// One of the `keep_previous` newest, for rollbacks.
    Previous,
    /// Pushed less than the grace period ago.
    Recent,
    /// Younger than the retention time.
    NotExpired,
    /// Carries an anchor tag ([`crate::image::ANCHOR_TAG_PREFIX`]): it was in use when the
    /// anchors were last set, and stays until [`crate::Mirror::protect`] releases it.
    Anchored,
    /// A deploy handed it out recently: its hand-out mark
    /// ([`crate::image::HANDED_OUT_TAG_PREFIX`]) has not passed, its pods may be starting.
    HandedOut,
}

/// A plan: what to delete and what to keep, with reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EvictionPlan {
    /// The repository the plan is for.
    pub repository: String,
    /// Images to delete.
    pub delete: Vec<ImageRecord>,
    /// Images kept, with the reason.
    pub keep: Vec<(ImageRecord, KeepReason)>,
}

/// Service mode: after deploying `deployed` into `repository`, delete every other image of that
/// repository except the `keep_previous` newest, the in-use ones and the recent ones.
/// Orphaned referrers ([`ImageRecord::orphan_of`]) are deleted unless recent or their subject
/// is in use; they never take a `keep_previous` place.
///
/// Images without a known push time count as the oldest; ties are broken by digest so the plan
/// is deterministic.
pub(crate) fn plan_service_eviction(
    repository: &str,
    images: &[ImageRecord],
    deployed: &Digest,
    in_use: &HashSet<Digest>,
    keep_previous: usize,
    now: SystemTime,
    grace: Duration,
) -> EvictionPlan {
    let mut plan = EvictionPlan {
        repository: repository.to_string(),
        ..EvictionPlan::default()
    };
    let mut others: Vec<&ImageRecord> = Vec::new();
    for img in images.iter().filter(|i| i.repository == repository) {
        if &img.digest == deployed {
            plan.keep.push((img.clone(), KeepReason::JustDeployed));
        } else if in_use.contains(&img.digest) {
            plan.keep.push((img.clone(), KeepReason::InUse));
        } else if img.anchored {
            plan.keep.push((img.clone(), KeepReason::Anchored));
        } else if img.is_protected_at(now) {
            plan.keep.push((img.clone(), KeepReason::HandedOut));
        } else if is_recent(img, now, grace) {
            plan.keep.push((img.clone(), KeepReason::Recent));
        } else if let Some(subject) = &img.orphan_of {
            // A referrer of no listed image is no previous image; it stays only while what
            // it refers to is in use.
            if in_use.contains(subject) {
                plan.keep.push((img.clone(), KeepReason::InUse));
            } else {
                plan.delete.push(img.clone());
            }
        } else {
            others.push(img);
        }
    }
    // Newest first.
    others.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.digest.cmp(&b.digest)));
    for (i, img) in others.into_iter().enumerate() {
        if i < keep_previous {
            plan.keep.push((img.clone(), KeepReason::Previous));
        } else {
            plan.delete.push(img.clone());
        }
    }
    plan
}

/// Cluster mode: delete the images of `repository` pushed more than `retention` ago that are
/// not in use, not anchored and not handed out recently (a hand-out mark that has not
/// passed), and the orphaned referrers ([`ImageRecord::orphan_of`]) whose subject is not in
/// use. Images without a known push time are kept (their age is unknown), and so is anything
/// pushed less than `grace` ago, whatever the retention (a deploy just handed it out).
pub(crate) fn plan_retention(
    repository: &str,
    images: &[ImageRecord],
    in_use: &HashSet<Digest>,
    now: SystemTime,
    retention: Duration,
    grace: Duration,
) -> EvictionPlan {
    let mut plan = EvictionPlan {
        repository: repository.to_string(),
        ..EvictionPlan::default()
    };
    for img in images.iter().filter(|i| i.repository == repository) {
        let subject_in_use = img.orphan_of.as_ref().is_some_and(|s| in_use.contains(s));
        if in_use.contains(&img.digest) || subject_in_use {
            plan.keep.push((img.clone(), KeepReason::InUse));
        } else if img.anchored {
            plan.keep.push((img.clone(), KeepReason::Anchored));
        } else if img.is_protected_at(now) {
            plan.keep.push((img.clone(), KeepReason::HandedOut));
        } else if is_recent(img, now, grace) && img.orphan_of.is_none() {
            plan.keep.push((img.clone(), KeepReason::Recent));
        } else if img.orphan_of.is_some() || is_expired(img, now, retention) {
            plan.delete.push(img.clone());
        } else {
            plan.keep.push((img.clone(), KeepReason::NotExpired));
        }
    }
    plan
}

/// True when the image was pushed more than `retention` before `now`.
pub(crate) fn is_expired(img: &ImageRecord, now: SystemTime, retention: Duration) -> bool {
    match img.pushed_at {
        Some(t) => now
            .duration_since(t)
            .map(|age| age > retention)
            .unwrap_or(false),
        None => false,
    }
}

fn is_recent(img: &ImageRecord, now: SystemTime, grace: Duration) -> bool {
    match img.pushed_at {
        // A push time in the future (clock skew) counts as recent.
        Some(t) => now.duration_since(t).map(|age| age < grace).unwrap_or(true),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn record(repo: &str, n: u8, pushed: Option<u64>) -> ImageRecord {
        ImageRecord {
            repository: repo.to_string(),
            digest: digest(n),
            tags: vec![format!("t{n}")],
            pushed_at: pushed.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            size: Some(1),
            referrers: Vec::new(),
            orphan_of: None,
            anchored: false,
            protected_until: None,
        }
    }

    fn orphan(repo: &str, n: u8, pushed: Option<u64>) -> ImageRecord {
        ImageRecord {
            orphan_of: Some(digest(200)),
            tags: vec![format!("sha256-{}.sig", digest(200).hex())],
            ..record(repo, n, pushed)
        }
    }

    const NOW: u64 = 1_000_000;

    #[test]
    fn service_eviction_keeps_deployed_previous_and_in_use() {
        let imgs = vec![
            record("r", 1, Some(100)),
            record("r", 2, Some(200)),
            record("r", 3, Some(300)),
            record("r", 4, Some(400)),
            record("other", 5, Some(50)),
        ];
        let in_use: HashSet<Digest> = [digest(1)].into();
        let plan = plan_service_eviction(
            "r",
            &imgs,
            &digest(4),
            &in_use,
            1,
            UNIX_EPOCH + Duration::from_secs(NOW),
            Duration::ZERO,
        );
        let deleted: Vec<Digest> = plan.delete.iter().map(|i| i.digest.clone()).collect();
        assert_eq!(deleted, vec![digest(2)]);
        assert!(plan.keep.contains(&(imgs[2].clone(), KeepReason::Previous)));
        assert!(plan.keep.contains(&(imgs[0].clone(), KeepReason::InUse)));
    }

    #[test]
    fn recent_images_survive_eviction() {
        let imgs = vec![
            record("r", 1, Some(NOW - 5)),
            record("r", 2, Some(NOW - 5000)),
        ];
        let plan = plan_service_eviction(
            "r",
            &imgs,
            &digest(9),
            &HashSet::new(),
            0,
            UNIX_EPOCH + Duration::from_secs(NOW),
            Duration::from_secs(600),
        );
        assert_eq!(plan.delete, vec![imgs[1].clone()]);
    }

    #[test]
    fn orphaned_referrers_take_no_previous_place_and_are_swept_at_any_age() {
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        // The orphan is the newest record and has no push time at all: neither makes it a
        // previous image.
        let imgs = vec![
            record("r", 1, Some(100)),
            orphan("r", 2, Some(NOW - 1000)),
            orphan("r", 3, None),
            record("r", 4, Some(400)),
        ];
        let plan_with =
            |grace| plan_service_eviction("r", &imgs, &digest(4), &HashSet::new(), 1, now, grace);
        let plan = plan_with(Duration::ZERO);
        let mut deleted: Vec<Digest> = plan.delete.iter().map(|i| i.digest.clone()).collect();
        deleted.sort();
        let mut expected = vec![digest(2), digest(3)];
        expected.sort();
        assert_eq!(deleted, expected);
        assert!(plan.keep.contains(&(imgs[0].clone(), KeepReason::Previous)));
        // A recent orphan waits for the grace period (its image may be on its way).
        let plan = plan_with(Duration::from_secs(5000));
        assert!(plan.keep.contains(&(imgs[1].clone(), KeepReason::Recent)));
        // Sweep: orphans go whatever their age, unless in use.
        let in_use: HashSet<Digest> = [digest(3)].into();
        let plan = plan_retention(
            "r",
            &imgs,
            &in_use,
            now,
            Duration::from_secs(NOW),
            Duration::ZERO,
        );
        let deleted: Vec<Digest> = plan.delete.iter().map(|i| i.digest.clone()).collect();
        assert_eq!(deleted, vec![digest(2)]);
        // An orphan whose subject is in use stays, in both modes.
        let subject_in_use: HashSet<Digest> = [digest(200)].into();
        let plan = plan_retention(
            "r",
            &imgs,
            &subject_in_use,
            now,
            Duration::from_secs(NOW),
            Duration::ZERO,
        );
        assert!(plan.delete.is_empty(), "{:?}", plan.delete);
        let plan = plan_service_eviction(
            "r",
            &imgs,
            &digest(4),
            &subject_in_use,
            1,
            now,
            Duration::ZERO,
        );
        assert_eq!(plan.delete.len(), 0, "{:?}", plan.delete);
    }

    fn arb_images() -> impl Strategy<Value = Vec<ImageRecord>> {
        prop::collection::vec(
            (
                prop::sample::select(vec!["r", "other"]),
                0u8..40,
                prop::option::of(0u64..2 * NOW),
            ),
            0..30,
        )
        .prop_map(|v| {
            let mut seen = HashSet::new();
            v.into_iter()
                .filter(|(repo, n, _)| seen.insert((repo.to_string(), *n)))
                .map(|(repo, n, p)| record(repo, n, p))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn no_plan_deletes_an_image_whose_hand_out_mark_has_not_passed(
            imgs in arb_images(),
            marks in prop::collection::vec(prop::option::of(0u64..2 * NOW), 30),
            deployed in 0u8..40,
            keep in 0usize..3,
            retention in 0u64..NOW,
        ) {
            let now = UNIX_EPOCH + Duration::from_secs(NOW);
            let imgs: Vec<ImageRecord> = imgs
                .into_iter()
                .zip(marks)
                .map(|(mut i, m)| {
                    i.protected_until = m.map(|s| UNIX_EPOCH + Duration::from_secs(s));
                    i
                })
                .collect();
            let service = plan_service_eviction("r", &imgs, &digest(deployed), &HashSet::new(), keep, now, Duration::ZERO);
            let sweep = plan_retention("r", &imgs, &HashSet::new(), now, Duration::from_secs(retention), Duration::ZERO);
            for plan in [&service, &sweep] {
                for d in &plan.delete {
                    prop_assert!(!d.is_protected_at(now), "{:?} deleted while protected", d);
                }
            }
        }

        #[test]
        fn service_plans_never_delete_what_must_stay(
            imgs in arb_images(),
            deployed in 0u8..40,
            in_use in prop::collection::hash_set(0u8..40, 0..5),
            keep in 0usize..4,
            grace in 0u64..1000,
        ) {
            let in_use: HashSet<Digest> = in_use.into_iter().map(digest).collect();
            let now = UNIX_EPOCH + Duration::from_secs(NOW);
            let plan = plan_service_eviction("r", &imgs, &digest(deployed), &in_use, keep, now, Duration::from_secs(grace));
            for d in &plan.delete {
                prop_assert_eq!(&d.repository, "r");
                prop_assert!(d.digest != digest(deployed));
                prop_assert!(!in_use.contains(&d.digest));
                prop_assert!(!is_recent(d, now, Duration::from_secs(grace)));
            }
            // Model: the number deleted is the eligible ones minus keep_previous.
            let eligible = imgs.iter().filter(|i| i.repository == "r" && i.digest != digest(deployed)
                && !in_use.contains(&i.digest) && !is_recent(i, now, Duration::from_secs(grace))).count();
            prop_assert_eq!(plan.delete.len(), eligible.saturating_sub(keep));
            // Every kept "previous" is at least as new as every deleted one.
            for (k, why) in &plan.keep {
                if *why == KeepReason::Previous {
                    for d in &plan.delete {
                        prop_assert!(k.pushed_at >= d.pushed_at);
                    }
                }
            }
            prop_assert_eq!(plan.delete.len() + plan.keep.len(), imgs.iter().filter(|i| i.repository == "r").count());
        }

        #[test]
        fn retention_deletes_exactly_the_expired_unused_images(
            imgs in arb_images(),
            in_use in prop::collection::hash_set(0u8..40, 0..5),
            retention in 0u64..NOW,
        ) {
            let in_use: HashSet<Digest> = in_use.into_iter().map(digest).collect();
            let now = UNIX_EPOCH + Duration::from_secs(NOW);
            let ret = Duration::from_secs(retention);
            let plan = plan_retention("r", &imgs, &in_use, now, ret, Duration::ZERO);
            let mut expected: Vec<Digest> = imgs.iter()
                .filter(|i| i.repository == "r" && !in_use.contains(&i.digest))
                .filter(|i| i.pushed_at.is_some_and(|p| NOW - p.duration_since(UNIX_EPOCH).unwrap().as_secs().min(NOW) > retention
                    && p <= now))
                .map(|i| i.digest.clone())
                .collect();
            let mut got: Vec<Digest> = plan.delete.iter().map(|i| i.digest.clone()).collect();
            expected.sort();
            got.sort();
            prop_assert_eq!(got, expected);
        }
    }
}
