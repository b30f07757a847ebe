//! Retention as Artifact Registry cleanup policies.
//!
//! A repository holds a map of cleanup policies, each `{id, action, condition |
//! mostRecentVersions}`. This crate owns the policies whose id starts with [`POLICY_PREFIX`]
//! and leaves every other policy alone:
//!
//! - [`RETENTION_ID`], for `RepositorySettings::retention` (Cluster mode): action `DELETE`,
//!   condition `{tagState: ANY, olderThan: "<seconds>s", packageNamePrefixes: ["image"]}` —
//!   every version of the image package older than the retention is deleted.
//! - [`KEEP_ID`], for `RepositorySettings::keep_previous = n` (Service mode): action `KEEP`,
//!   `mostRecentVersions: {keepCount: n + 1, packageNamePrefixes: ["image"]}` — the deployed
//!   image and the `n` before it are never deleted by a delete policy. A keep policy only
//!   exempts versions from deletion: on its own it deletes nothing; it protects rollback images
//!   from the retention policy and from any delete policy someone adds to the repository.
//!   Artifact Registry counts versions, and the platform manifests of a multi-platform image
//!   are versions of their own.
//!
//! - [`ANCHORS_ID`], written with either of them: action `KEEP`, condition `{tagState: TAGGED,
//!   tagPrefixes: ["mirror.anchor."], packageNamePrefixes: ["image"]}` — a version carrying an
//!   anchor tag (an image in use, see [`mirror_core::Mirror::protect`]) is never deleted by a
//!   delete policy: Artifact Registry applies keep policies over delete policies (a version
//!   that matches both is kept). The exact JSON:
//!
//!   ```json
//!   {"action":"KEEP","condition":{"packageNamePrefixes":["image"],"tagPrefixes":["mirror.anchor."],"tagState":"TAGGED"},"id":"mirror-core-anchors"}
//!   ```
//!
//! All are restricted to the [`IMAGE`] package, so the build-cache packages next to it are
//! never touched. Artifact Registry may return the policies reformatted (`86400s` as
//! `86400.000s`, fields reordered), so policies are compared by meaning ([`same_policies`]),
//! not as text.

use std::collections::BTreeMap;
use std::time::Duration;

use mirror_core::RepositorySettings;
use serde_json::{json, Value};

use crate::naming::IMAGE;

/// Ids of the policies this crate owns start with this.
pub const POLICY_PREFIX: &str = "mirror-core-";
/// The id of the retention (delete) policy.
pub const RETENTION_ID: &str = "mirror-core-retention";
/// The id of the keep-most-recent policy.
pub const KEEP_ID: &str = "mirror-core-keep";
/// The id of the keep policy of anchored (in-use) images.
pub const ANCHORS_ID: &str = "mirror-core-anchors";

/// The retention in whole seconds, rounded up, at least 1.
pub fn retention_seconds(retention: Duration) -> u64 {
    (retention.as_secs() + u64::from(retention.subsec_nanos() > 0)).max(1)
}

/// The policies this crate wants for `settings` (empty when there is nothing to enforce).
pub fn desired(settings: &RepositorySettings) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    if let Some(retention) = settings.retention {
        out.insert(
            RETENTION_ID.to_string(),
            json!({
                "id": RETENTION_ID,
                "action": "DELETE",
                "condition": {
                    "tagState": "ANY",
                    "olderThan": format!("{}s", retention_seconds(retention)),
                    "packageNamePrefixes": [IMAGE],
                }
            }),
        );
    }
    if let Some(keep) = settings.keep_previous {
        let count = i64::try_from(keep).unwrap_or(i64::MAX).saturating_add(1);
        out.insert(
            KEEP_ID.to_string(),
            json!({
                "id": KEEP_ID,
                "action": "KEEP",
                "mostRecentVersions": {
                    "keepCount": count.min(i64::from(i32::MAX)),
                    "packageNamePrefixes": [IMAGE],
                }
            }),
        );
    }
    // Delete policies of ours never go without the keep policy of anchored images.
    if !out.is_empty() {
        out.insert(
            ANCHORS_ID.to_string(),
            json!({
                "id": ANCHORS_ID,
                "action": "KEEP",
                "condition": {
                    "tagState": "TAGGED",
                    "tagPrefixes": [mirror_core::kit::image::ANCHOR_TAG_PREFIX],
                    "packageNamePrefixes": [IMAGE],
                }
            }),
        );
    }
    out
}

/// True for a policy this crate owns.
pub fn is_ours(id: &str) -> bool {
    id.starts_with(POLICY_PREFIX)
}

/// A google-duration (`"86400s"`, `"1.5s"`) in whole seconds, rounded.
fn duration_seconds(v: &Value) -> Option<i64> {
    let s = v.as_str()?.strip_suffix('s')?;
    let f: f64 = s.trim().parse().ok()?;
    Some(f.round() as i64)
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What a policy means, for comparisons: the fields this crate sets, normalised.
fn meaning(p: &Value) -> Value {
    let condition = p.get("condition");
    let recent = p.get("mostRecentVersions");
    json!({
        "action": p.get("action").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase(),
        "tagState": condition.and_then(|c| c.get("tagState")).and_then(Value::as_str),
        "olderThan": condition.and_then(|c| c.get("olderThan")).and_then(duration_seconds),
        "newerThan": condition.and_then(|c| c.get("newerThan")).and_then(duration_seconds),
        "conditionPackages": string_list(condition.and_then(|c| c.get("packageNamePrefixes"))),
        "tagPrefixes": string_list(condition.and_then(|c| c.get("tagPrefixes"))),
        "versionPrefixes": string_list(condition.and_then(|c| c.get("versionNamePrefixes"))),
        "keepCount": recent.and_then(|r| r.get("keepCount")).and_then(|k| {
            k.as_i64().or_else(|| k.as_str().and_then(|s| s.parse().ok()))
        }),
        "recentPackages": string_list(recent.and_then(|r| r.get("packageNamePrefixes"))),
    })
}

/// True when the policies this crate owns in `current` mean the same as `desired`.
pub fn same_policies(current: &BTreeMap<String, Value>, desired: &BTreeMap<String, Value>) -> bool {
    let ours: BTreeMap<&String, Value> = current
        .iter()
        .filter(|(k, _)| is_ours(k))
        .map(|(k, v)| (k, meaning(v)))
        .collect();
    let want: BTreeMap<&String, Value> = desired.iter().map(|(k, v)| (k, meaning(v))).collect();
    ours == want
}

/// The full policy map to store: every policy of `current` this crate does not own, plus
/// `desired`.
pub fn merged(
    current: &BTreeMap<String, Value>,
    desired: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = current
        .iter()
        .filter(|(k, _)| !is_ours(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(desired.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn settings(retention: Option<u64>, keep: Option<usize>) -> RepositorySettings {
        RepositorySettings {
            retention: retention.map(Duration::from_secs),
            keep_previous: keep,
        }
    }

    #[test]
    fn the_policies_are_exactly_the_documented_json() {
        let d = desired(&settings(Some(30 * DAY), Some(2)));
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            concat!(
                r#"{"mirror-core-anchors":{"action":"KEEP","#,
                r#""condition":{"packageNamePrefixes":["image"],"tagPrefixes":["mirror.anchor."],"tagState":"TAGGED"},"#,
                r#""id":"mirror-core-anchors"},"#,
                r#""mirror-core-keep":{"action":"KEEP","id":"mirror-core-keep","#,
                r#""mostRecentVersions":{"keepCount":3,"packageNamePrefixes":["image"]}},"#,
                r#""mirror-core-retention":{"action":"DELETE","#,
                r#""condition":{"olderThan":"2592000s","packageNamePrefixes":["image"],"tagState":"ANY"},"#,
                r#""id":"mirror-core-retention"}}"#
            )
        );
        assert!(desired(&settings(None, None)).is_empty());
        assert_eq!(retention_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retention_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn comparisons_ignore_formatting_and_foreign_policies() {
        let want = desired(&settings(Some(DAY), Some(1)));
        let mut current = want.clone();
        // Reformatted by the service.
        current.insert(
            RETENTION_ID.into(),
            json!({"id": RETENTION_ID, "action": "DELETE", "condition": {
                "olderThan": "86400.000s", "tagState": "ANY", "packageNamePrefixes": ["image"]}}),
        );
        current.insert(
            "team-rule".into(),
            json!({"id": "team-rule", "action": "DELETE", "condition": {"tagState": "UNTAGGED"}}),
        );
        assert!(same_policies(&current, &want));
        assert!(!same_policies(
            &current,
            &desired(&settings(Some(2 * DAY), Some(1)))
        ));
        assert!(!same_policies(
            &current,
            &desired(&settings(Some(DAY), None))
        ));
        assert!(!same_policies(&BTreeMap::new(), &want));
        assert!(same_policies(&BTreeMap::new(), &BTreeMap::new()));
        // Merging keeps the team's rule and replaces ours.
        let m = merged(&current, &desired(&settings(None, Some(4))));
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            vec!["mirror-core-anchors", "mirror-core-keep", "team-rule"]
        );
        assert_eq!(m[KEEP_ID]["mostRecentVersions"]["keepCount"], 5);
    }
}
