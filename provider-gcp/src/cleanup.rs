//! Retention as Artifact Registry cleanup policies. This crate owns the policies whose id
//! starts with [`POLICY_PREFIX`] and leaves every other policy of a repository alone:
//!
//! - [`RETENTION_ID`] (`RepositorySettings::retention`, Cluster mode): `DELETE` every version
//!   of the image package older than the retention (`tagState: ANY, olderThan`);
//! - [`KEEP_ID`] (`keep_previous = n`, Service mode): `KEEP` the `n + 1` most recent versions
//!   (`mostRecentVersions`), which exempts rollback images from any delete policy (on its
//!   own it deletes nothing; platform manifests count as versions);
//! - [`ANCHORS_ID`], with either of them: `KEEP` versions tagged `mirror.anchor.*` (images in
//!   use, see [`mirror_core::Mirror::protect`]): keep policies win over delete policies.
//!
//! All are restricted to the [`IMAGE`] package (build caches are never touched). Artifact
//! Registry may return the policies reformatted (`86400s` as `86400.000s`, fields
//! reordered): they are compared by meaning ([`same_policies`]), not as text.

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
    let packages = [IMAGE];
    let mut out = BTreeMap::new();
    let mut add = |id: &str, action: &str, key: &str, rule: Value| {
        out.insert(
            id.to_string(),
            json!({"id": id, "action": action, key: rule}),
        );
    };
    if let Some(retention) = settings.retention {
        let older = format!("{}s", retention_seconds(retention));
        let rule = json!({"tagState": "ANY", "olderThan": older, "packageNamePrefixes": packages});
        add(RETENTION_ID, "DELETE", "condition", rule);
    }
    if let Some(keep) = settings.keep_previous {
        let count = i64::try_from(keep).unwrap_or(i64::MAX).saturating_add(1);
        let count = count.min(i64::from(i32::MAX));
        let rule = json!({"keepCount": count, "packageNamePrefixes": packages});
        add(KEEP_ID, "KEEP", "mostRecentVersions", rule);
    }
    // Delete policies of ours never go without the keep policy of anchored images.
    if settings.retention.is_some() || settings.keep_previous.is_some() {
        let anchors = [mirror_core::kit::image::ANCHOR_TAG_PREFIX];
        let rule =
            json!({"tagState": "TAGGED", "tagPrefixes": anchors, "packageNamePrefixes": packages});
        add(ANCHORS_ID, "KEEP", "condition", rule);
    }
    out
}

/// True for a policy this crate owns.
pub fn is_ours(id: &str) -> bool {
    id.starts_with(POLICY_PREFIX)
}

/// What a policy means, for comparisons: the fields this crate sets, normalised (durations
/// in whole seconds, lists sorted, the action uppercase).
fn meaning(p: &Value) -> Value {
    let (c, recent) = (&p["condition"], &p["mostRecentVersions"]);
    let seconds = |v: &Value| {
        let s = v.as_str()?.strip_suffix('s')?;
        s.trim().parse::<f64>().ok().map(|f| f.round() as i64)
    };
    fn list(v: &Value) -> Vec<&str> {
        let mut out: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.sort();
        out
    }
    let keep = &recent["keepCount"];
    json!({
        "action": p["action"].as_str().unwrap_or("").to_ascii_uppercase(),
        "tagState": c["tagState"].as_str(),
        "olderThan": seconds(&c["olderThan"]),
        "newerThan": seconds(&c["newerThan"]),
        "conditionPackages": list(&c["packageNamePrefixes"]),
        "tagPrefixes": list(&c["tagPrefixes"]),
        "versionPrefixes": list(&c["versionNamePrefixes"]),
        "keepCount": keep.as_i64().or_else(|| keep.as_str().and_then(|s| s.parse().ok())),
        "recentPackages": list(&recent["packageNamePrefixes"]),
    })
}

/// True when the policies this crate owns in `current` mean the same as `desired`.
pub fn same_policies(current: &BTreeMap<String, Value>, desired: &BTreeMap<String, Value>) -> bool {
    let ours = current.iter().filter(|(k, _)| is_ours(k));
    let ours: BTreeMap<&String, Value> = ours.map(|(k, v)| (k, meaning(v))).collect();
    let want: BTreeMap<&String, Value> = desired.iter().map(|(k, v)| (k, meaning(v))).collect();
    ours == want
}

/// The full policy map to store: every policy of `current` this crate does not own, plus
/// `desired`.
pub fn merged(
    current: &BTreeMap<String, Value>,
    desired: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let theirs = current.iter().filter(|(k, _)| !is_ours(k));
    theirs
        .chain(desired)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
