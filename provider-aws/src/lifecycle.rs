//! Cluster-mode retention as an ECR lifecycle policy.
//!
//! The policy has one rule: every image (`tagStatus: any`) is expired a number of days after
//! it was pushed (`countType: sinceImagePushed`, `countUnit: days`). The number of days is the
//! retention rounded up, at least 1 (ECR counts whole days). The rule's description starts
//! with [`DESCRIPTION_PREFIX`], which is how this crate recognises a policy it wrote.
//!
//! ECR may store the policy text reformatted, so policies are compared as JSON values, not as
//! text: [`needs_update`] is false when the stored policy already says the same.

use std::time::Duration;

use serde_json::{json, Value};

/// The start of the description of the rule this crate writes.
pub const DESCRIPTION_PREFIX: &str = "mirror-core retention";

const DAY: u64 = 24 * 60 * 60;

/// The retention in whole days: rounded up, at least 1.
pub fn retention_days(retention: Duration) -> u64 {
    let secs = retention.as_secs() + u64::from(retention.subsec_nanos() > 0);
    secs.div_ceil(DAY).max(1)
}

/// The policy text sent to `PutLifecyclePolicy`, keys in the order of ECR's documentation.
pub fn policy_text(retention: Duration) -> String {
    let days = retention_days(retention);
    let description = Value::String(format!(
        "{DESCRIPTION_PREFIX}: expire images {days} days after push"
    ));
    format!(
        concat!(
            r#"{{"rules":[{{"rulePriority":1,"description":{description},"#,
            r#""selection":{{"tagStatus":"any","countType":"sinceImagePushed","#,
            r#""countUnit":"days","countNumber":{days}}},"#,
            r#""action":{{"type":"expire"}}}}]}}"#
        ),
        description = description,
        days = days
    )
}

/// The lifecycle policy document for `retention`, as a JSON value (for comparisons).
pub fn policy(retention: Duration) -> Value {
    json!({
        "rules": [{
            "rulePriority": 1,
            "description": format!("{DESCRIPTION_PREFIX}: expire images {} days after push", retention_days(retention)),
            "selection": {
                "tagStatus": "any",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": retention_days(retention)
            },
            "action": { "type": "expire" }
        }]
    })
}

/// True when the stored policy (`None`: none) differs from the one for `retention`.
pub fn needs_update(current: Option<&str>, retention: Duration) -> bool {
    match current.and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        Some(v) => v != policy(retention),
        None => true,
    }
}

/// True when the stored policy is one this crate wrote (every rule's description starts with
/// [`DESCRIPTION_PREFIX`]); policies written by people are never removed.
pub fn is_ours(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    match v.get("rules").and_then(Value::as_array) {
        Some(rules) if !rules.is_empty() => rules.iter().all(|r| {
            r.get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| d.starts_with(DESCRIPTION_PREFIX))
        }),
        _ => false,
    }
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
    fn the_policy_is_exactly_the_documented_shape() {
        let expected = concat!(
            r#"{"rules":[{"rulePriority":1,"#,
            r#""description":"mirror-core retention: expire images 7 days after push","#,
            r#""selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"#,
            r#""action":{"type":"expire"}}]}"#
        );
        let text = policy_text(Duration::from_secs(7 * DAY));
        assert_eq!(text, expected);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, policy(Duration::from_secs(7 * DAY)));
    }

    #[test]
    fn reformatted_policies_are_equal_and_changes_are_detected() {
        let seven = Duration::from_secs(7 * DAY);
        let pretty = serde_json::to_string_pretty(&policy(seven)).unwrap();
        assert!(!needs_update(Some(&pretty), seven));
        assert!(needs_update(Some(&pretty), Duration::from_secs(8 * DAY)));
        assert!(needs_update(None, seven));
        assert!(needs_update(Some("not json"), seven));
        assert!(is_ours(&pretty));
        assert!(!is_ours(
            r#"{"rules":[{"rulePriority":1,"description":"team rule"}]}"#
        ));
        assert!(!is_ours(r#"{"rules":[]}"#));
    }
}
