//! The naming scenario and the awkward ids it names repositories for.

use std::collections::HashMap;

use crate::error::Error;
use crate::reference::validate_repository;
use crate::registry::{Registry, RepositoryScope};

#[allow(unused_imports)]
use super::*;

/// Ids chosen to break naive name mapping: case, punctuation, path separators, dots,
/// Unicode, lengths around and above every provider limit, and words the default layout
/// uses as path components.
pub(crate) fn awkward_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "api",
        "API",
        "Api",
        "a",
        "0",
        "00",
        "9lives",
        "web-1",
        "web_1",
        "Web_1",
        "web.1",
        "web 1",
        "web-1!",
        "web--1",
        "-leading",
        "trailing-",
        "--both--",
        "_under_",
        "..",
        ".",
        "a..b",
        "../escape",
        "/",
        "a/b",
        "a//b",
        "/abs",
        "a\\b",
        "semi;colon",
        "at@sign",
        "hash#tag",
        "colon:tag",
        "tab\tid",
        "new\nline",
        "ünïcödé",
        "unicode",
        "日本語",
        "名前-1",
        "emoji 🚀",
        "mirror",
        "services",
        "builds",
        "mirror/x",
        "services/x",
        "builds/x",
        "MiXeD.Case_Name-42",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push("x".repeat(47));
    ids.push("x".repeat(48));
    ids.push("x".repeat(49));
    ids.push("x".repeat(299));
    ids.push("x".repeat(300));
    ids.push(format!("{}y", "x".repeat(299)));
    ids.push(format!("y{}", "x".repeat(299)));
    ids.push("é".repeat(150));
    ids
}

/// Naming: for awkward cluster and service ids, `repository` of the Service, Cluster and
/// Build scopes (and the build caches of Build repositories) gives names that pass [`validate_repository`]; distinct scopes (distinct ids
/// or distinct kinds) give distinct names; the same scope gives the same name twice; an empty
/// or whitespace-only id is [`Error::InvalidName`].
pub async fn naming(registry: &dyn Registry, cluster: &str) {
    let who = who(registry);
    let ids = awkward_ids();
    let mut scopes: Vec<RepositoryScope> = Vec::new();
    let mut clusters = ids.clone();
    clusters.push(cluster.to_string());
    for c in &clusters {
        scopes.push(RepositoryScope::Cluster { cluster: c.clone() });
    }
    // Every service id under the run's cluster and one fixed awkward cluster; every cluster
    // id with two service ids (so cluster ids are varied inside the Service/Build scopes too).
    let fixed_clusters = [cluster, "Awkward Cluster/1"]
        .into_iter()
        .flat_map(|c| ids.iter().map(move |s| (c.to_string(), s.clone())));
    let fixed_services = ids
        .iter()
        .flat_map(|c| ["api", "API"].map(|s| (c.clone(), s.to_string())));
    for (cluster, service) in fixed_clusters.chain(fixed_services) {
        scopes.push(RepositoryScope::Service {
            cluster: cluster.clone(),
            service: service.clone(),
        });
        scopes.push(RepositoryScope::Build { cluster, service });
    }

    let mut seen: HashMap<String, RepositoryScope> = HashMap::new();
    let mut remember = |name: &str, scope: &RepositoryScope| {
        if let Err(reason) = validate_repository(name) {
            panic!("{who} the repository of {scope:?} is named {name:?}, not a valid repository name: {reason}");
        }
        if let Some(other) = seen.insert(name.to_string(), scope.clone()) {
            if &other != scope {
                panic!(
                    "{who} two scopes share the repository name {name:?}: {other:?} and {scope:?}"
                );
            }
        }
    };
    for scope in &scopes {
        let repo = registry
            .repository(scope)
            .unwrap_or_else(|e| panic!("{who} repository({scope:?}) failed: {e}"));
        assert_eq!(
            repo.scope(),
            Some(scope),
            "{who} repository({scope:?}) does not carry its scope"
        );
        let again = registry
            .repository(scope)
            .unwrap_or_else(|e| panic!("{who} repository({scope:?}) failed the second time: {e}"));
        assert_eq!(
            repo, again,
            "{who} repository({scope:?}) is not deterministic: {repo} then {again}"
        );
        remember(repo.name(), scope);
        // A build repository's caches are repositories of their own too.
        if let (RepositoryScope::Build { .. }, Some(builds)) = (scope, registry.builds()) {
            for id in ["0123456789ab", "ba9876543210"] {
                let cache = builds
                    .cache_repository(&repo, id)
                    .unwrap_or_else(|e| panic!("{who} cache_repository({repo}, {id}) failed: {e}"));
                let cache_scope = cache.scope().cloned().unwrap_or_else(|| {
                    panic!("{who} cache_repository({repo}, {id}) = {cache} carries no scope")
                });
                assert!(
                    matches!(&cache_scope, RepositoryScope::BuildCache { dockerfile_id, .. } if dockerfile_id == id),
                    "{who} cache_repository({repo}, {id}) has scope {cache_scope:?}"
                );
                remember(cache.name(), &cache_scope);
            }
        }
    }

    let blank = ["", " ", "   ", "\t", "\n", " \t\r\n "];
    for b in blank {
        let mut bad = vec![
            RepositoryScope::Cluster {
                cluster: b.to_string(),
            },
            RepositoryScope::Service {
                cluster: b.to_string(),
                service: "api".into(),
            },
            RepositoryScope::Build {
                cluster: b.to_string(),
                service: "api".into(),
            },
            RepositoryScope::Service {
                cluster: cluster.to_string(),
                service: b.to_string(),
            },
            RepositoryScope::Build {
                cluster: cluster.to_string(),
                service: b.to_string(),
            },
        ];
        bad.push(RepositoryScope::Service {
            cluster: b.to_string(),
            service: b.to_string(),
        });
        for scope in bad {
            match registry.repository(&scope) {
                Err(Error::InvalidName { .. }) => {}
                Err(e) => panic!(
                    "{who} repository({scope:?}) failed with {e:?}, expected Error::InvalidName"
                ),
                Ok(repo) => {
                    panic!("{who} repository({scope:?}) = {repo}, expected Error::InvalidName")
                }
            }
        }
    }
}

/// The three scopes of `service` in `cluster` (Service, Cluster, Build): what a provider's
/// naming tests iterate over.
pub fn all_scopes(cluster: &str, service: &str) -> [RepositoryScope; 3] {
    [
        RepositoryScope::Service {
            cluster: cluster.into(),
            service: service.into(),
        },
        RepositoryScope::Cluster {
            cluster: cluster.into(),
        },
        RepositoryScope::Build {
            cluster: cluster.into(),
            service: service.into(),
        },
    ]
}

/// The naming properties every provider's repository names must have, as property tests
/// (proptest must be a dev-dependency of the crate that uses it).
///
/// `name` maps a [`RepositoryScope`] to the provider's repository name (a closure
/// `Fn(&RepositoryScope) -> mirror_core::Result<String>`); `valid` says whether a name
/// follows the provider's documented rule (`Fn(&str) -> bool`). For any cluster and service
/// ids (any Unicode, up to 300 characters), every scope's name:
///
/// - follows the provider's rule and is a valid repository name of the distribution spec;
/// - is the same every time (names are looked up again, never stored);
/// - differs from the name of any other id (Service, Cluster and Build scopes), and the three
///   scopes of one service never share a name.
///
/// ```
/// # use mirror_core::registry::RepositoryScope;
/// // The default layout of distribution registries, checked against the distribution grammar.
/// mirror_core::naming_properties! {
///     name: |scope: &RepositoryScope| mirror_core::registry::default_repository_name(None, scope),
///     valid: |name: &str| mirror_core::reference::validate_repository(name).is_ok(),
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! naming_properties {
    (name: $name:expr, valid: $valid:expr $(,)?) => {
        mod naming_properties {
            #[allow(unused_imports)]
            use super::*;
            use ::proptest::prelude::*;
            use $crate::registry::RepositoryScope;

            fn name_of(scope: &RepositoryScope) -> $crate::Result<String> {
                let f = $name;
                f(scope)
            }

            fn valid(name: &str) -> bool {
                let f = $valid;
                f(name)
            }

            proptest! {
                #[test]
                fn every_scope_has_a_valid_stable_name(
                    cluster in "\\PC{1,300}",
                    service in "\\PC{1,300}",
                ) {
                    prop_assume!(!cluster.trim().is_empty() && !service.trim().is_empty());
                    let mut seen = std::collections::HashSet::new();
                    for scope in $crate::testing::conformance::all_scopes(&cluster, &service) {
                        let name = name_of(&scope).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(valid(&name), "{} breaks the provider's rule", name);
                        prop_assert!(
                            $crate::reference::validate_repository(&name).is_ok(),
                            "{} is not a distribution repository name",
                            name
                        );
                        prop_assert_eq!(name_of(&scope).ok(), Some(name.clone()));
                        prop_assert!(seen.insert(name.clone()), "two scopes share {}", name);
                    }
                }

                #[test]
                fn distinct_ids_give_distinct_names(a in "\\PC{1,80}", b in "\\PC{1,80}") {
                    prop_assume!(a != b && !a.trim().is_empty() && !b.trim().is_empty());
                    let name = |s: &RepositoryScope| name_of(s).ok();
                    // Another cluster: every scope moves.
                    for (x, y) in $crate::testing::conformance::all_scopes(&a, "api")
                        .iter()
                        .zip($crate::testing::conformance::all_scopes(&b, "api").iter())
                    {
                        prop_assert_ne!(name(x), name(y), "clusters {:?} and {:?}", a, b);
                    }
                    // Another service: its Service and Build scopes move.
                    for (x, y) in $crate::testing::conformance::all_scopes("c", &a)
                        .iter()
                        .zip($crate::testing::conformance::all_scopes("c", &b).iter())
                    {
                        if !matches!(x, RepositoryScope::Cluster { .. }) {
                            prop_assert_ne!(name(x), name(y), "services {:?} and {:?}", a, b);
                        }
                    }
                }
            }
        }
    };
}
