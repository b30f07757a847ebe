//! Cluster-mode retention as an ECR lifecycle policy.
//!
//! The policy has two rules, in this order:
//!
//! 1. **Anchors** (priority 1): `tagStatus: tagged`, `tagPrefixList: ["mirror.anchor."]`,
//!    `countType: imageCountMoreThan`, `countNumber: 100000`. It selects the images that carry
//!    an anchor tag (images in use, see [`mirror_core::Mirror::protect`]) and would expire
//!    only those beyond the 100,000 newest anchored ones: more images than an ECR repository
//!    holds by default (20,000), so in practice it expires nothing. Its purpose is the
//!    documented precedence of lifecycle rules: *an image that matches the tagging
//!    requirements of a higher priority rule cannot be expired by a rule with a lower
//!    priority*. An anchored image is therefore never expired by rule 2.
//! 2. **Retention** (priority 2): `tagStatus: any`, expired a number of days after it was
//!    pushed (`countType: sinceImagePushed`) or, with [`Age::SincePulled`], after it was last
//!    pulled (`countType: sinceImagePulled`), `countUnit: days`. The number of days is the
//!    retention rounded up, at least 1 (ECR counts whole days). A rule with `tagStatus: any`
//!    must have the highest priority number, which it has.
//!
//! The exact text, for a retention of 7 days counted from the push:
//!
//! ```json
//! {"rules":[
//!   {"rulePriority":1,"description":"mirror-core retention: never expire anchored (in-use) images",
//!    "selection":{"tagStatus":"tagged","tagPrefixList":["mirror.anchor."],
//!                 "countType":"imageCountMoreThan","countNumber":100000},
//!    "action":{"type":"expire"}},
//!   {"rulePriority":2,"description":"mirror-core retention: expire images 7 days after push",
//!    "selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7},
//!    "action":{"type":"expire"}}]}
//! ```
//!
//! `sinceImagePulled` cannot see a pod that runs for weeks without pulling again, so the
//! anchor rule stays first with either measure (the README says more). Every rule's
//! description starts with [`DESCRIPTION_PREFIX`]: that is how a policy this crate wrote is
//! recognised. The kit's [`retention`](mirror_core::kit::provider::retention) reconciles it.

use std::time::Duration;

use mirror_core::kit::provider::retention::{all_marked, same_json};
use serde_json::Value;

/// The start of the description of the rules this crate writes.
pub const DESCRIPTION_PREFIX: &str = "mirror-core retention";

/// The anchor rule's `countNumber`: more anchored images than a repository holds.
pub const ANCHOR_COUNT: u64 = 100_000;

const DAY: u64 = 24 * 60 * 60;

mirror_core::setting_choice! {
    /// What the retention counts from (the `retention_age` key's words).
    pub enum Age {
        /// From the push (`sinceImagePushed`, the default).
        SincePushed = ["pushed", "push", "sinceimagepushed"],
        /// From the last pull, or the push for an image never pulled (`sinceImagePulled`).
        SincePulled = ["pulled", "pull", "sinceimagepulled"],
    }
}

impl Age {
    /// Its `countType`, and the event its rule's description names.
    fn count_type(self) -> (&'static str, &'static str) {
        match self {
            Age::SincePushed => ("sinceImagePushed", "push"),
            Age::SincePulled => ("sinceImagePulled", "the last pull"),
        }
    }
}

/// The retention in whole days: rounded up, at least 1.
pub fn retention_days(retention: Duration) -> u64 {
    let secs = retention.as_secs() + u64::from(retention.subsec_nanos() > 0);
    secs.div_ceil(DAY).max(1)
}

/// The policy text sent to `PutLifecyclePolicy`, keys in the order of ECR's documentation.
pub fn policy_text(retention: Duration, age: Age) -> String {
    let (days, (count_type, event), count) =
        (retention_days(retention), age.count_type(), ANCHOR_COUNT);
    let json = |s: String| Value::String(s).to_string();
    let anchor = json(format!(
        "{DESCRIPTION_PREFIX}: never expire anchored (in-use) images"
    ));
    let description = json(format!(
        "{DESCRIPTION_PREFIX}: expire images {days} days after {event}"
    ));
    let prefix = json(mirror_core::kit::image::ANCHOR_TAG_PREFIX.to_string());
    // One line: the template's line breaks go.
    let text = format!(
        r#"{{"rules":[{{"rulePriority":1,"description":{anchor},
"selection":{{"tagStatus":"tagged","tagPrefixList":[{prefix}],
"countType":"imageCountMoreThan","countNumber":{count}}},"action":{{"type":"expire"}}}},
{{"rulePriority":2,"description":{description},
"selection":{{"tagStatus":"any","countType":"{count_type}","countUnit":"days","countNumber":{days}}},
"action":{{"type":"expire"}}}}]}}"#
    );
    text.replace('\n', "")
}

/// The lifecycle policy document for `retention`, as a JSON value (for comparisons): the
/// text parsed.
pub fn policy(retention: Duration, age: Age) -> Value {
    serde_json::from_str(&policy_text(retention, age)).unwrap_or(Value::Null)
}

/// True when the stored policy (`None`: none) differs from the one for `retention`.
pub fn needs_update(current: Option<&str>, retention: Duration, age: Age) -> bool {
    !same_json(current, &policy_text(retention, age))
}

/// True when the stored policy is one this crate wrote (every rule's description starts with
/// [`DESCRIPTION_PREFIX`]); policies written by people are never removed.
pub fn is_ours(text: &str) -> bool {
    all_marked(text, "/rules", "description", DESCRIPTION_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_up_with_a_minimum_of_one() {
        assert_eq!(retention_days(Duration::ZERO), 1);
        assert_eq!(retention_days(Duration::from_secs(1)), 1);
        assert_eq!(retention_days(Duration::from_secs(DAY)), 1);
        assert_eq!(
            retention_days(Duration::from_secs(DAY) + Duration::from_nanos(1)),
            2
        );
        assert_eq!(retention_days(Duration::from_secs(36 * 3600)), 2);
        assert_eq!(retention_days(Duration::from_secs(30 * DAY)), 30);
    }

    #[test]
    fn reformatted_policies_are_equal_and_changes_are_detected() {
        let seven = Duration::from_secs(7 * DAY);
        let pretty = serde_json::to_string_pretty(&policy(seven, Age::SincePushed)).unwrap();
        assert!(!needs_update(Some(&pretty), seven, Age::SincePushed));
        assert!(needs_update(Some(&pretty), seven, Age::SincePulled));
        assert!(needs_update(
            Some(&pretty),
            Duration::from_secs(8 * DAY),
            Age::SincePushed
        ));
        assert!(needs_update(None, seven, Age::SincePushed));
        assert!(needs_update(Some("not json"), seven, Age::SincePushed));
        // The single-rule policy of earlier versions (no anchor rule) is replaced.
        let old = r#"{"rules":[{"rulePriority":1,"description":"mirror-core retention: expire images 7 days after push","selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#;
        assert!(needs_update(Some(old), seven, Age::SincePushed));
        assert!(is_ours(old));
        assert!(is_ours(&pretty));
        assert!(!is_ours(
            r#"{"rules":[{"rulePriority":1,"description":"team rule"}]}"#
        ));
        assert!(!is_ours(r#"{"rules":[]}"#));
    }
}
