//! Repository scopes as flat ids and labels, for providers whose repositories are flat names
//! carrying labels (Artifact Registry repositories; tagged cloud resources have the same
//! shape): the readable form of an id, a hash of exact ids, cleaned label values, and the
//! labels and description of a scope, and the scope a repository is labelled with
//! ([`ScopeLabels`], read back from a name of the core layout when it was only listed).

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::registry::{Repository, RepositoryScope};

/// The value of the `managed-by` label of what the library creates.
pub const MANAGED_BY: &str = "mirror-core";

/// The readable form of an id: lowercase ASCII letters and digits kept, every run of other
/// characters one `-`, no `-` at either end, at most `max` characters; `x` when nothing is
/// left.
pub fn readable(id: &str, max: usize) -> String {
    let mut out = String::new();
    for c in id.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max.max(1));
    match out.trim_end_matches('-') {
        "" => "x".to_string(),
        kept => kept.to_string(),
    }
}

/// `len` hex characters (at most 64) of SHA-256 over `domain` and a length-prefixed encoding
/// of `parts` (parts that concatenate alike still hash apart). Changing `domain` renames
/// everything named with it.
pub fn hashed(domain: &str, parts: &[&str], len: usize) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let mut hex = hex::encode(h.finalize());
    hex.truncate(len);
    hex
}

/// `text` with every character `keep` refuses replaced by `_`, at most `max` characters.
pub fn cleaned(text: &str, max: usize, keep: impl Fn(char) -> bool) -> String {
    let clean = |c: char| if keep(c) { c } else { '_' };
    text.chars().map(clean).take(max).collect()
}

/// The scope a repository is labelled with: a build cache, which lives beside or inside its
/// build repository, is labelled as the build.
pub fn labelled(scope: &RepositoryScope) -> RepositoryScope {
    match scope {
        RepositoryScope::BuildCache {
            cluster, service, ..
        } => {
            let (cluster, service) = (cluster.clone(), service.clone());
            RepositoryScope::Build { cluster, service }
        }
        other => other.clone(),
    }
}

/// The labels of a repository of `scope` (see [`labelled`]): `managed-by` ([`MANAGED_BY`]),
/// and when the scope is known `mirror-scope` (its kind), `cluster` and `service` (the ids
/// made valid label values by `value`).
pub fn labels(
    scope: Option<&RepositoryScope>,
    value: impl Fn(&str) -> String,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("managed-by".to_string(), MANAGED_BY.to_string())]);
    if let Some(scope) = scope.map(labelled) {
        labels.insert("mirror-scope".into(), scope.kind().into());
        labels.insert("cluster".into(), value(scope.cluster()));
        labels.extend(scope.service().map(|s| ("service".to_string(), value(s))));
    }
    labels
}

/// A description for people of a repository of `scope` (see [`labelled`]).
pub fn description(scope: Option<&RepositoryScope>) -> String {
    match scope.map(labelled) {
        Some(RepositoryScope::Service { cluster, service }) => {
            format!("mirror-core: images of service {service:?} of cluster {cluster:?}")
        }
        Some(RepositoryScope::Cluster { cluster }) => {
            format!("mirror-core: images shared by the services of cluster {cluster:?}")
        }
        Some(RepositoryScope::Build { cluster, service }) => {
            format!("mirror-core: images built for service {service:?} of cluster {cluster:?}")
        }
        _ => "mirror-core: mirrored images".to_string(),
    }
}

/// The scope of a listed or named repository as labels, for providers that tag what they
/// create with its cluster, service and kind (ECR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeLabels<'a> {
    /// The cluster: its exact id from a scope, its name component from a listed name.
    pub cluster: Option<&'a str>,
    /// The scope kind ([`RepositoryScope::kind`](crate::RepositoryScope::kind)), `other`
    /// for a name outside the layout.
    pub kind: &'static str,
    /// The service, for scopes that have one.
    pub service: Option<&'a str>,
}

impl<'a> ScopeLabels<'a> {
    /// The labels of `repository`, whose names are in the core layout under `prefix`.
    pub fn of(repository: &'a Repository, prefix: Option<&str>) -> Self {
        let (cluster, kind, service) = match repository.scope() {
            Some(scope) => (Some(scope.cluster()), scope.kind(), scope.service()),
            None => parse_layout_name(prefix, repository.name())
                .map_or((None, "other", None), |(c, k, s)| (Some(c), k, s)),
        };
        ScopeLabels {
            cluster,
            kind,
            service,
        }
    }

    /// `managed-by`, then `cluster` and `service` where known (their values made valid by
    /// `clean`), then `scope` (the kind).
    pub fn pairs(&self, managed_by: &str, clean: impl Fn(&str) -> String) -> Vec<(String, String)> {
        let mut out = vec![("managed-by".to_string(), managed_by.to_string())];
        out.extend(self.cluster.map(|c| ("cluster".to_string(), clean(c))));
        out.extend(self.service.map(|s| ("service".to_string(), clean(s))));
        out.push(("scope".into(), self.kind.to_string()));
        out
    }
}

/// The parts of a repository name of the core layout under `prefix`
/// ([`default_repository_name`](crate::registry::default_repository_name)): (cluster
/// component, scope kind, service component). `None` for names not in the layout.
pub fn parse_layout_name<'a>(
    prefix: Option<&str>,
    name: &'a str,
) -> Option<(&'a str, &'static str, Option<&'a str>)> {
    let rest = match prefix {
        Some(p) => name.strip_prefix(p)?.strip_prefix('/')?,
        None => name,
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts[..] {
        [c, "mirror"] => Some((c, "cluster", None)),
        [c, "services", s] => Some((c, "service", Some(s))),
        [c, "builds", s] => Some((c, "build", Some(s))),
        [c, "builds", s, cache] if cache.starts_with("cache-") => Some((c, "build-cache", Some(s))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_cleanly_hash_apart_and_label_as_their_scope() {
        assert_eq!(readable("Prod EU/1", 63), "prod-eu-1");
        assert_eq!(readable("日本語", 63), "x");
        assert_eq!(readable("abc-def", 4), "abc");
        assert_eq!(hashed("d", &["a", "bc"], 16).len(), 16);
        assert_ne!(hashed("d", &["a", "bc"], 16), hashed("d", &["ab", "c"], 16));
        assert_ne!(hashed("d", &["a"], 16), hashed("e", &["a"], 16));
        let lower = |c: char| c.is_ascii_lowercase();
        assert_eq!(cleaned("abC d", 4, lower), "ab__");
        let cache = RepositoryScope::BuildCache {
            cluster: "c".into(),
            service: "s".into(),
            dockerfile_id: "00".into(),
        };
        let l = labels(Some(&cache), |v| v.to_uppercase());
        assert_eq!(l["mirror-scope"], "build");
        assert_eq!((l["cluster"].as_str(), l["service"].as_str()), ("C", "S"));
        assert_eq!(labels(None, str::to_string).len(), 1);
        assert_eq!(
            description(Some(&cache)),
            r#"mirror-core: images built for service "s" of cluster "c""#
        );
        assert_eq!(description(None), "mirror-core: mirrored images");
    }

    #[test]
    fn scopes_and_listed_names_give_the_same_labels() {
        let scope = RepositoryScope::Service {
            cluster: "Prod EU".into(),
            service: "api".into(),
        };
        let scoped = Repository::listed("m/prod-eu-1/services/api").with_scope(Some(scope));
        let labels = ScopeLabels::of(&scoped, Some("m"));
        assert_eq!(labels.cluster, Some("Prod EU"), "the exact id");
        assert_eq!(
            labels.pairs("me", |v| v.replace(' ', "_")),
            [
                ("managed-by".to_string(), "me".to_string()),
                ("cluster".into(), "Prod_EU".into()),
                ("service".into(), "api".into()),
                ("scope".into(), "service".into()),
            ]
        );
        let listed = Repository::listed("c/mirror");
        let labels = ScopeLabels::of(&listed, None);
        assert_eq!(
            (labels.cluster, labels.kind, labels.service),
            (Some("c"), "cluster", None)
        );
        let other = Repository::listed("elsewhere/x");
        let labels = ScopeLabels::of(&other, Some("m"));
        assert_eq!(labels.pairs("me", str::to_string).len(), 2);
        assert_eq!(labels.kind, "other");
    }

    #[test]
    fn layout_names_parse() {
        assert_eq!(
            parse_layout_name(Some("m"), "m/c/services/api"),
            Some(("c", "service", Some("api")))
        );
        assert_eq!(
            parse_layout_name(None, "c/builds/api"),
            Some(("c", "build", Some("api")))
        );
        assert_eq!(
            parse_layout_name(None, "c/builds/api/cache-0123abcd"),
            Some(("c", "build-cache", Some("api")))
        );
        assert_eq!(parse_layout_name(Some("m"), "n/c/mirror"), None);
        assert_eq!(parse_layout_name(Some("m"), "mc/mirror"), None);
        assert_eq!(parse_layout_name(None, "c/other/x"), None);
    }
}
