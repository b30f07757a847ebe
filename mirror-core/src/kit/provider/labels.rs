//! What a provider labels (tags) the repositories it creates with: the scope a repository
//! was named for (its cluster, its service, its kind), from the repository's
//! [scope](crate::registry::Repository::scope), or read back from a name of the core layout
//! ([`parse_layout_name`]) when the repository was only listed.

use crate::registry::Repository;

/// The scope of a repository as labels (see the module docs).
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
    use crate::RepositoryScope;

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
