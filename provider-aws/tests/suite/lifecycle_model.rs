//! ECR's lifecycle evaluation by its documented rules (no emulator evaluates lifecycle
//! policies), and the property test of the policy `provider_aws::lifecycle` writes against
//! it (moved here from `src/lifecycle.rs`: test support is no library code).

/// The policy text documented in `provider_aws::lifecycle`, expiring images `days` days
/// after the push (`pulled`: after the last pull).
pub fn documented_policy(days: u64, pulled: bool) -> String {
    let text = concat!(
        r#"{"rules":[{"rulePriority":1,"#,
        r#""description":"mirror-core retention: never expire anchored (in-use) images","#,
        r#""selection":{"tagStatus":"tagged","tagPrefixList":["mirror.anchor."],"countType":"imageCountMoreThan","countNumber":100000},"#,
        r#""action":{"type":"expire"}},"#,
        r#"{"rulePriority":2,"#,
        r#""description":"mirror-core retention: expire images DAYS days after EVENT","#,
        r#""selection":{"tagStatus":"any","countType":"COUNT_TYPE","countUnit":"days","countNumber":DAYS},"#,
        r#""action":{"type":"expire"}}]}"#
    );
    let (count_type, event) = match pulled {
        true => ("sinceImagePulled", "the last pull"),
        false => ("sinceImagePushed", "push"),
    };
    let text = text
        .replace("COUNT_TYPE", count_type)
        .replace("EVENT", event);
    text.replace("DAYS", &days.to_string())
}

#[test]
fn the_policy_is_exactly_the_documented_shape() {
    use provider_aws::lifecycle::{policy, policy_text, Age};
    use serde_json::Value;
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let text = policy_text(week, Age::SincePushed);
    assert_eq!(text, documented_policy(7, false));
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed, policy(week, Age::SincePushed));
    let pulled = policy_text(week, Age::SincePulled);
    assert!(
        pulled.contains(r#""countType":"sinceImagePulled""#),
        "{pulled}"
    );
    assert!(pulled.contains("7 days after the last pull"), "{pulled}");
    assert_eq!(pulled, documented_policy(7, true));
    assert_eq!(
        serde_json::from_str::<Value>(&pulled).unwrap(),
        policy(week, Age::SincePulled)
    );
}

pub mod model {
    //! ECR's lifecycle evaluation as its documentation states it, for tests of the policies
    //! this crate writes (no emulator evaluates lifecycle policies):
    //!
    //! - rules are applied in `rulePriority` order, lowest first;
    //! - an image matching the tagging requirements of a higher-priority rule cannot be
    //!   expired by a lower-priority rule (whether or not the higher rule expires it);
    //! - `tagStatus: tagged` with `tagPrefixList` matches an image when every prefix of the
    //!   list is the start of one of its tags; `untagged` matches images without tags; `any`
    //!   matches every image;
    //! - `imageCountMoreThan n` expires the matching images beyond the `n` most recently
    //!   pushed; `sinceImagePushed n` those pushed more than `n` days ago; `sinceImagePulled
    //!   n` those last pulled (or, never pulled, pushed) more than `n` days ago.

    use std::collections::BTreeSet;

    use serde_json::Value;

    /// One image as the evaluation sees it.
    #[derive(Debug, Clone)]
    pub struct Image {
        /// Its digest (any unique name).
        pub digest: String,
        /// Its tags.
        pub tags: Vec<String>,
        /// Days since its push.
        pub pushed_days_ago: u64,
        /// Days since its last pull, if it was ever pulled.
        pub pulled_days_ago: Option<u64>,
    }

    fn matches(selection: &Value, image: &Image) -> bool {
        match selection["tagStatus"].as_str() {
            Some("any") => true,
            Some("untagged") => image.tags.is_empty(),
            Some("tagged") => selection["tagPrefixList"]
                .as_array()
                .is_some_and(|prefixes| {
                    !prefixes.is_empty()
                        && prefixes.iter().all(|p| {
                            p.as_str()
                                .is_some_and(|p| image.tags.iter().any(|t| t.starts_with(p)))
                        })
                }),
            _ => false,
        }
    }

    /// The digests the policy expires.
    pub fn expired(policy: &Value, images: &[Image]) -> BTreeSet<String> {
        let mut rules: Vec<&Value> = policy["rules"].as_array().into_iter().flatten().collect();
        rules.sort_by_key(|r| r["rulePriority"].as_u64().unwrap_or(u64::MAX));
        let mut claimed: BTreeSet<String> = BTreeSet::new();
        let mut expired = BTreeSet::new();
        for rule in rules {
            let selection = &rule["selection"];
            let count = selection["countNumber"].as_u64().unwrap_or(u64::MAX);
            let mut selected: Vec<&Image> = images
                .iter()
                .filter(|i| !claimed.contains(&i.digest) && matches(selection, i))
                .collect();
            let to_expire: Vec<&Image> = match selection["countType"].as_str() {
                Some("imageCountMoreThan") => {
                    selected.sort_by_key(|i| i.pushed_days_ago);
                    selected.iter().skip(count as usize).copied().collect()
                }
                Some("sinceImagePushed") => selected
                    .iter()
                    .filter(|i| i.pushed_days_ago > count)
                    .copied()
                    .collect(),
                Some("sinceImagePulled") => selected
                    .iter()
                    .filter(|i| i.pulled_days_ago.unwrap_or(i.pushed_days_ago) > count)
                    .copied()
                    .collect(),
                _ => Vec::new(),
            };
            if rule["action"]["type"] == "expire" {
                expired.extend(to_expire.iter().map(|i| i.digest.clone()));
            }
            claimed.extend(selected.iter().map(|i| i.digest.clone()));
        }
        expired
    }
}

mod anchor_properties {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::model::{expired, Image};
    use provider_aws::lifecycle::*;

    fn image() -> impl Strategy<Value = (bool, Vec<String>, u64, Option<u64>)> {
        (
            any::<bool>(),
            proptest::collection::vec(
                prop_oneof![
                    Just("v1".to_string()),
                    Just("latest".to_string()),
                    Just("mirror.pushed.1".to_string()),
                    Just("mirror.anchorless".to_string()),
                    "[a-z0-9.]{1,12}",
                ],
                0..3,
            ),
            0u64..200,
            proptest::option::of(0u64..200),
        )
    }

    proptest! {
        /// Over random listings, the policy written never expires an anchored image, and
        /// expires exactly the others that are past the retention (so the property can fail).
        #[test]
        fn anchored_images_are_never_expired(
            images in proptest::collection::vec(image(), 0..40),
            days in 1u64..90,
            pulled in any::<bool>(),
        ) {
            let age = if pulled { Age::SincePulled } else { Age::SincePushed };
            let listing: Vec<Image> = images
                .iter()
                .enumerate()
                .map(|(n, (anchored, tags, pushed, pulled_at))| {
                    let mut tags = tags.clone();
                    if *anchored {
                        tags.push(format!("{}{n:064x}", mirror_core::kit::image::ANCHOR_TAG_PREFIX));
                    }
                    Image {
                        digest: format!("sha256:{n:064x}"),
                        tags,
                        pushed_days_ago: *pushed,
                        pulled_days_ago: pulled_at.map(|p| p.min(*pushed)),
                    }
                })
                .collect();
            let policy = policy(Duration::from_secs(days * 24 * 3600), age);
            let gone = expired(&policy, &listing);
            for (i, (anchored, ..)) in images.iter().enumerate() {
                let image = &listing[i];
                let old = match age {
                    Age::SincePushed => image.pushed_days_ago > days,
                    Age::SincePulled => image.pulled_days_ago.unwrap_or(image.pushed_days_ago) > days,
                    _ => unreachable!("an age this test does not know"),
                };
                prop_assert_eq!(gone.contains(&image.digest), !anchored && old, "{:?}", image);
            }
        }
    }

    #[test]
    fn without_the_anchor_rule_the_model_expires_anchored_images() {
        // The model is not vacuous: the retention rule alone expires an old anchored image.
        let listing = vec![Image {
            digest: "a".into(),
            tags: vec![format!("{}x", mirror_core::kit::image::ANCHOR_TAG_PREFIX)],
            pushed_days_ago: 30,
            pulled_days_ago: None,
        }];
        let mut p = policy(Duration::from_secs(7 * 24 * 3600), Age::SincePushed);
        assert!(expired(&p, &listing).is_empty());
        p["rules"].as_array_mut().unwrap().remove(0);
        assert_eq!(expired(&p, &listing).len(), 1);
    }
}
