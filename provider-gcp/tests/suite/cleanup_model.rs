//! Artifact Registry's cleanup evaluation by its documented rules (the fake stores policies,
//! it does not run them), and the property test of the policies `provider_gcp::cleanup`
//! writes against it (moved here from `src/cleanup.rs`: test support is no library code).

pub mod model {
    //! Artifact Registry's cleanup evaluation as its documentation states it, for tests of
    //! the policies this crate writes (the fake stores policies, it does not run them):
    //!
    //! - a `DELETE` policy selects the versions its condition matches (`tagState`,
    //!   `tagPrefixes` — any tag of the version starts with one of them —, `olderThan`,
    //!   `packageNamePrefixes`);
    //! - a `KEEP` policy protects the versions its condition matches, or with
    //!   `mostRecentVersions` the `keepCount` newest of each matching package;
    //! - a version is deleted when some delete policy selects it and no keep policy protects
    //!   it (keep policies win).

    use std::collections::BTreeSet;

    use serde_json::Value;

    /// One version as the evaluation sees it.
    #[derive(Debug, Clone)]
    pub struct Version {
        /// Its name (the digest).
        pub name: String,
        /// Its package.
        pub package: String,
        /// Its tags.
        pub tags: Vec<String>,
        /// Seconds since its upload.
        pub age_seconds: u64,
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    fn condition_matches(c: &Value, v: &Version) -> bool {
        let tag_state = match c["tagState"].as_str() {
            Some("TAGGED") => !v.tags.is_empty(),
            Some("UNTAGGED") => v.tags.is_empty(),
            _ => true,
        };
        let prefixes = strings(&c["tagPrefixes"]);
        let tags = prefixes.is_empty()
            || prefixes
                .iter()
                .any(|p| v.tags.iter().any(|t| t.starts_with(p)));
        let packages = strings(&c["packageNamePrefixes"]);
        let package = packages.is_empty() || packages.iter().any(|p| v.package.starts_with(p));
        let older = match c["olderThan"].as_str().and_then(|s| s.strip_suffix('s')) {
            Some(n) => n.parse::<f64>().is_ok_and(|n| v.age_seconds as f64 > n),
            None => true,
        };
        tag_state && tags && package && older
    }

    /// The versions the policies delete.
    pub fn deleted(policies: &Value, versions: &[Version]) -> BTreeSet<String> {
        let all: Vec<&Value> = policies
            .as_object()
            .map(|m| m.values().collect())
            .unwrap_or_default();
        let mut kept: BTreeSet<String> = BTreeSet::new();
        let mut selected: BTreeSet<String> = BTreeSet::new();
        for p in &all {
            let keep = p["action"] == "KEEP";
            if let Some(recent) = p.get("mostRecentVersions") {
                let count = recent["keepCount"].as_u64().unwrap_or(0) as usize;
                let packages = strings(&recent["packageNamePrefixes"]);
                let mut by_package: std::collections::BTreeMap<&str, Vec<&Version>> =
                    Default::default();
                for v in versions {
                    if packages.is_empty() || packages.iter().any(|p| v.package.starts_with(p)) {
                        by_package.entry(&v.package).or_default().push(v);
                    }
                }
                for (_, mut vs) in by_package {
                    vs.sort_by_key(|v| v.age_seconds);
                    kept.extend(vs.iter().take(count).map(|v| v.name.clone()));
                }
                continue;
            }
            for v in versions
                .iter()
                .filter(|v| condition_matches(&p["condition"], v))
            {
                if keep {
                    kept.insert(v.name.clone());
                } else {
                    selected.insert(v.name.clone());
                }
            }
        }
        selected.difference(&kept).cloned().collect()
    }
}

mod anchor_properties {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::model::{deleted, Version};
    use mirror_core::RepositorySettings;
    use provider_gcp::cleanup::*;
    use provider_gcp::naming::IMAGE;

    proptest! {
        /// Over random listings, the policies written never delete an anchored version, and
        /// delete exactly the other image versions past the retention that the keep-most-
        /// recent policy does not hold (so the property can fail).
        #[test]
        fn anchored_versions_are_never_deleted(
            versions in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec("[a-z0-9.]{1,10}", 0..3), 0u64..1_000_000, any::<bool>()),
                0..40,
            ),
            retention in 1u64..500_000,
            keep in proptest::option::of(0usize..4),
        ) {
            let settings = RepositorySettings {
                retention: Some(Duration::from_secs(retention)),
                keep_previous: keep,
            };
            let policies = serde_json::to_value(desired(&settings)).unwrap();
            let listing: Vec<Version> = versions
                .iter()
                .enumerate()
                .map(|(n, (anchored, tags, age, cache))| {
                    let mut tags = tags.clone();
                    if *anchored {
                        tags.push(format!("{}{n:064x}", mirror_core::kit::image::ANCHOR_TAG_PREFIX));
                    }
                    Version {
                        name: format!("sha256:{n:064x}"),
                        package: if *cache { "cache-abc".into() } else { IMAGE.into() },
                        tags,
                        age_seconds: *age,
                    }
                })
                .collect();
            let gone = deleted(&policies, &listing);
            let mut images: Vec<&Version> = listing.iter().filter(|v| v.package == IMAGE).collect();
            images.sort_by_key(|v| v.age_seconds);
            let recent: Vec<&str> = match keep {
                Some(k) => images.iter().take(k + 1).map(|v| v.name.as_str()).collect(),
                None => Vec::new(),
            };
            for (v, (anchored, ..)) in listing.iter().zip(&versions) {
                let expected = !anchored
                    && v.package == IMAGE
                    && v.age_seconds > retention
                    && !recent.contains(&v.name.as_str());
                prop_assert_eq!(gone.contains(&v.name), expected, "{:?}", v);
            }
        }
    }
}
