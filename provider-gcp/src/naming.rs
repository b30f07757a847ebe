//! Artifact Registry naming and this crate's layout.
//!
//! From the Artifact Registry reference: a repository id is a DNS label of at most 63
//! characters; a docker image is `<location>-docker.pkg.dev/<project>/<repository>/<image
//! path>` (a domain-scoped project `example.com:p` appears as `example.com/p`); a project id
//! is a DNS label of 6 to 30 characters, optionally after a domain; labels are at most 63
//! lowercase letters, digits, `_` and `-`.
//!
//! Every scope gets its own repository (cleanup policies, IAM bindings and labels apply to
//! one scope): `<prefix>-<cluster>-svc-<service>-<hash>`, `<prefix>-<cluster>-mirror-<hash>`,
//! `<prefix>-<cluster>-build-<service>-<hash>`, the ids in [`readable`] form (cut to fit)
//! and `<hash>` [`HASH_LEN`] hex characters over the scope kind and the exact ids. The images
//! are the package [`IMAGE`]; build caches are the sibling packages `cache-<dockerfile id>`,
//! outside the reach of the cleanup policies. The names the core sees are `<project
//! path>/<repository id>/<package>`.

use mirror_core::kit::provider::naming::invalid;
pub use mirror_core::kit::provider::scope::readable;
use mirror_core::kit::provider::scope::{cleaned, hashed};
use mirror_core::kit::provider::Grammar;
use mirror_core::reference::validate_repository;
use mirror_core::{RepositoryScope, Result};

/// Repository ids: `[a-z]([a-z0-9-]*[a-z0-9])?`, at most 63 characters.
pub const REPOSITORY_ID: Grammar = Grammar::dns_label("repository id", 1, 63);
/// Project ids (after an optional `domain:`): 6 to 30 characters of the same grammar.
pub const PROJECT: Grammar = Grammar::dns_label("project id", 6, 30);
/// Locations (`europe-west1`, `us`).
pub const LOCATION: Grammar = Grammar::dns_label("location", 1, 63);
/// Repository prefixes: at most 20 characters, leaving room for readable ids.
pub const PREFIX: Grammar = Grammar::dns_label("repository prefix", 1, 20);
/// The default repository prefix.
pub const DEFAULT_PREFIX: &str = "mirror";
/// Hex characters of the scope hash at the end of every repository id.
pub const HASH_LEN: usize = 10;
/// The package (image path inside the repository) holding a scope's images.
pub const IMAGE: &str = "image";
/// Longest label value.
pub const MAX_LABEL_LEN: usize = 63;
/// Version of the hashed encoding of scopes. Changing it renames every repository: never do.
const HASH_DOMAIN: &str = "mirror-core/provider-gcp/scope/v1";

/// Checks a repository id.
pub fn validate_repository_id(id: &str) -> std::result::Result<(), String> {
    REPOSITORY_ID.check(id)
}

/// Checks a project id (`my-project`, or the legacy domain-scoped `example.com:my-project`).
pub fn validate_project(project: &str) -> Result<()> {
    let (domain, id) = project
        .split_once(':')
        .map_or((None, project), |(d, id)| (Some(d), id));
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if domain.is_some_and(|d| d.is_empty() || !d.split('.').all(label)) {
        return Err(invalid(
            project,
            "the domain of a domain-scoped project id is not a lowercase DNS name",
        ));
    }
    PROJECT.check(id).map_err(|reason| invalid(project, reason))
}

/// The project as it appears in docker paths: `example.com:my-project` → `example.com/my-project`.
pub fn project_path(project: &str) -> String {
    project.replace(':', "/")
}

/// Checks a location (`europe-west1`, `us`).
pub fn validate_location(location: &str) -> Result<()> {
    LOCATION.validate(location)
}

/// The docker host of a location: `<location>-docker.pkg.dev`.
pub fn docker_host(location: &str) -> String {
    format!("{location}-docker.pkg.dev")
}

/// The location of a docker host `<location>-docker.pkg.dev` (`None` for any other host).
pub fn location_of_host(host: &str) -> Option<String> {
    let host = host
        .strip_prefix("https://")
        .unwrap_or(host)
        .trim_end_matches('/');
    let location = host.strip_suffix("-docker.pkg.dev")?;
    LOCATION.check(location).ok().map(|()| location.to_string())
}

/// Checks a repository prefix.
pub fn check_prefix(prefix: &str) -> Result<()> {
    PREFIX.validate(prefix)
}

/// The kind word of a scope in repository ids and the `mirror-scope` label.
pub fn kind_of(scope: &RepositoryScope) -> &'static str {
    match scope {
        RepositoryScope::Service { .. } => "svc",
        RepositoryScope::Cluster { .. } => "mirror",
        // A build cache is a package of its build repository.
        RepositoryScope::Build { .. } | RepositoryScope::BuildCache { .. } => "build",
        _ => "other",
    }
}

/// The value of the `mirror-cluster` label: a hash of the exact cluster id, which is how
/// the registry finds a cluster's repositories.
pub fn cluster_hash(cluster: &str) -> String {
    hashed(HASH_DOMAIN, &["cluster", cluster], 16)
}

/// The repository id of `scope` under `prefix` (see the module docs).
pub fn repository_id(prefix: &str, scope: &RepositoryScope) -> Result<String> {
    check_prefix(prefix)?;
    let cluster = scope.cluster();
    let service = scope.service();
    for (what, id) in [("cluster", Some(cluster)), ("service", service)] {
        if id.is_some_and(|id| id.trim().is_empty()) {
            return Err(invalid(id.unwrap_or(""), format!("the {what} id is empty")));
        }
    }
    let kind = kind_of(scope);
    let hash = hashed(
        HASH_DOMAIN,
        &[kind, cluster, service.unwrap_or("")],
        HASH_LEN,
    );
    // prefix-cluster-kind[-service]-hash
    let separators = if service.is_some() { 4 } else { 3 };
    let avail = REPOSITORY_ID.max - prefix.len() - kind.len() - HASH_LEN - separators;
    let id = match service {
        Some(s) => {
            let c = readable(cluster, (avail / 2).max(1));
            let s = readable(s, avail.saturating_sub(c.len()).max(1));
            format!("{prefix}-{c}-{kind}-{s}-{hash}")
        }
        None => format!("{prefix}-{}-{kind}-{hash}", readable(cluster, avail.max(1))),
    };
    REPOSITORY_ID.validate(&id)?;
    Ok(id)
}

/// The core repository name of a package of a repository:
/// `<project path>/<repository id>/<package>`.
pub fn repository_name(project: &str, repository_id: &str, package: &str) -> Result<String> {
    let name = format!("{}/{repository_id}/{package}", project_path(project));
    check_name(project, &name)?;
    Ok(name)
}

/// The package of the build cache of one Dockerfile: `cache-<dockerfile id>`.
pub fn cache_package(dockerfile_id: &str) -> Result<String> {
    mirror_core::registry::naming::check_dockerfile_id(dockerfile_id)?;
    Ok(format!("cache-{dockerfile_id}"))
}

/// Splits a core repository name into (repository id, package), checking the project path,
/// the repository id and the distribution grammar.
pub fn parse_name<'a>(project: &str, name: &'a str) -> Result<(&'a str, &'a str)> {
    let pp = project_path(project);
    let rest = name
        .strip_prefix(pp.as_str())
        .and_then(|r| r.strip_prefix('/'));
    let shape =
        format!("an Artifact Registry repository name here starts with the project path `{pp}/`");
    let rest = rest.ok_or_else(|| invalid(name, shape))?;
    let missing = "expected `<project>/<repository id>/<image path>`: the image path is missing";
    let (id, package) = rest.split_once('/').ok_or_else(|| invalid(name, missing))?;
    validate_repository_id(id).map_err(|reason| invalid(name, reason))?;
    validate_repository(name).map_err(|reason| invalid(name, reason))?;
    Ok((id, package))
}

/// Checks a core repository name (see [`parse_name`]).
pub fn check_name(project: &str, name: &str) -> Result<()> {
    parse_name(project, name).map(|_| ())
}

/// Any text as a valid label value: lowercase letters, digits, `_` and `-` kept (uppercase
/// lowercased), every other character `_`, at most 63 characters.
pub fn label_value(text: &str) -> String {
    let keep = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    cleaned(&text.to_ascii_lowercase(), MAX_LABEL_LEN, keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_core::Error;
    use proptest::prelude::*;
    use std::collections::HashSet;

    mirror_core::naming_properties! {
        name: |scope: &RepositoryScope| repository_name("my-project", &repository_id("mirror", scope)?, IMAGE),
        valid: |name: &str| parse_name("my-project", name)
            .is_ok_and(|(id, package)| matches_documented_rule(id) && package == IMAGE),
    }

    /// The documented repository-id rule written independently, as a check of the validator.
    fn matches_documented_rule(id: &str) -> bool {
        let b = id.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_lowercase()
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    }

    use mirror_core::testing::conformance::all_scopes as scopes;

    #[test]
    fn repository_ids_are_readable_and_hashed() {
        let [svc, clu, bld] = scopes("prod-eu", "api");
        let s = repository_id("mirror", &svc).unwrap();
        let c = repository_id("mirror", &clu).unwrap();
        let b = repository_id("mirror", &bld).unwrap();
        assert!(s.starts_with("mirror-prod-eu-svc-api-"), "{s}");
        assert!(c.starts_with("mirror-prod-eu-mirror-"), "{c}");
        assert!(b.starts_with("mirror-prod-eu-build-api-"), "{b}");
        for id in [&s, &c, &b] {
            assert_eq!(id.rsplit('-').next().unwrap().len(), HASH_LEN, "{id}");
        }
        // Ids that read alike are still distinct.
        let a = repository_id(
            "m",
            &RepositoryScope::Service {
                cluster: "c".into(),
                service: "Web_1".into(),
            },
        )
        .unwrap();
        let z = repository_id(
            "m",
            &RepositoryScope::Service {
                cluster: "c".into(),
                service: "web-1".into(),
            },
        )
        .unwrap();
        assert_ne!(a, z);
        assert!(a.starts_with("m-c-svc-web-1-") && z.starts_with("m-c-svc-web-1-"));
        // Nothing readable left: `x`.
        let u = repository_id(
            "m",
            &RepositoryScope::Cluster {
                cluster: "日本語".into(),
            },
        )
        .unwrap();
        assert!(u.starts_with("m-x-mirror-"), "{u}");
    }

    #[test]
    fn blank_ids_and_bad_prefixes_are_invalid_names() {
        for bad in ["", " ", "\t\n"] {
            let [svc, clu, bld] = scopes(bad, "api");
            let [svc2, _, bld2] = scopes("c", bad);
            for scope in [svc, clu, bld, svc2, bld2] {
                assert!(
                    matches!(repository_id("m", &scope), Err(Error::InvalidName { .. })),
                    "{scope:?}"
                );
            }
        }
        let [svc, ..] = scopes("c", "s");
        for p in ["", "1abc", "Mirror", "a_b", "ab-", &"a".repeat(21)] {
            assert!(repository_id(p, &svc).is_err(), "{p:?}");
        }
    }

    #[test]
    fn the_id_validator_follows_the_rules() {
        for ok in ["a", "ab", "a-b", "a--b", "repo1", &"a".repeat(63)] {
            assert!(validate_repository_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(validate_repository_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn projects_locations_and_hosts() {
        for ok in ["my-project", "abcdef", "example.com:my-project", "a12345"] {
            validate_project(ok).unwrap();
        }
        for bad in [
            "short",
            "My-Project",
            "1project",
            "project-",
            &"a".repeat(31),
            ":proj-ect",
            "Ex.com:proj-ect",
        ] {
            assert!(validate_project(bad).is_err(), "{bad}");
        }
        assert_eq!(
            project_path("example.com:my-project"),
            "example.com/my-project"
        );
        validate_location("europe-west1").unwrap();
        validate_location("us").unwrap();
        assert!(validate_location("EU").is_err());
        assert_eq!(docker_host("us"), "us-docker.pkg.dev");
        assert_eq!(
            location_of_host("europe-west1-docker.pkg.dev").as_deref(),
            Some("europe-west1")
        );
        assert_eq!(location_of_host("127.0.0.1:5000"), None);
    }

    #[test]
    fn names_parse_back_and_caches_are_siblings() {
        let name = repository_name("my-project", "mirror-c-svc-a-0123456789", IMAGE).unwrap();
        assert_eq!(name, "my-project/mirror-c-svc-a-0123456789/image");
        assert_eq!(
            parse_name("my-project", &name).unwrap(),
            ("mirror-c-svc-a-0123456789", IMAGE)
        );
        let cache = cache_package("0123abcd").unwrap();
        assert_eq!(cache, "cache-0123abcd");
        assert!(
            !cache.starts_with(IMAGE),
            "the cleanup policies' package prefix must not match caches"
        );
        assert!(cache_package("XYZ").is_err());
        let scoped = repository_name("example.com:my-project", "r", IMAGE).unwrap();
        assert_eq!(scoped, "example.com/my-project/r/image");
        assert!(parse_name("other-project", &name).is_err());
        assert!(parse_name("my-project", "my-project/r").is_err());
        assert!(parse_name("my-project", "my-project/Bad/image").is_err());
        assert!(parse_name("my-project", "my-project/r/Image").is_err());
    }

    #[test]
    fn label_values_are_cleaned() {
        assert_eq!(label_value("Prod EU/1"), "prod_eu_1");
        assert_eq!(label_value("web-1_a"), "web-1_a");
        assert_eq!(label_value(&"x".repeat(100)).len(), 63);
        assert_eq!(cluster_hash("a").len(), 16);
        assert_ne!(cluster_hash("a"), cluster_hash("a-x"));
    }

    proptest! {
        #[test]
        fn validator_agrees_with_the_documented_rule(id in "[a-z0-9A-Z_-]{0,70}") {
            prop_assert_eq!(validate_repository_id(&id).is_ok(), matches_documented_rule(&id));
        }

        #[test]
        fn every_scope_gets_a_valid_id_and_name(
            cluster in "\\PC{1,300}",
            service in "\\PC{1,300}",
            prefix in "[a-z]([a-z0-9-]{0,18}[a-z0-9])?",
            project in "[a-z][a-z0-9-]{4,28}[a-z0-9]",
        ) {
            prop_assume!(!cluster.trim().is_empty() && !service.trim().is_empty());
            let mut seen = HashSet::new();
            for scope in scopes(&cluster, &service) {
                let id = repository_id(&prefix, &scope).unwrap();
                prop_assert!(matches_documented_rule(&id), "{}", id);
                prop_assert!(!id.contains("--") || prefix.contains("--"), "{}", id);
                prop_assert_eq!(&repository_id(&prefix, &scope).unwrap(), &id);
                let name = repository_name(&project, &id, IMAGE).unwrap();
                prop_assert!(validate_repository(&name).is_ok(), "{}", name);
                prop_assert_eq!(parse_name(&project, &name).unwrap(), (id.as_str(), IMAGE));
                prop_assert!(seen.insert(id));
            }
        }

        #[test]
        fn distinct_ids_give_distinct_repositories(a in "\\PC{1,80}", b in "\\PC{1,80}") {
            prop_assume!(a != b && !a.trim().is_empty() && !b.trim().is_empty());
            let svc = |s: &str| RepositoryScope::Service { cluster: "c".into(), service: s.into() };
            let clu = |c: &str| RepositoryScope::Cluster { cluster: c.into() };
            prop_assert_ne!(repository_id("m", &svc(&a)).unwrap(), repository_id("m", &svc(&b)).unwrap());
            prop_assert_ne!(repository_id("m", &clu(&a)).unwrap(), repository_id("m", &clu(&b)).unwrap());
            prop_assert_ne!(cluster_hash(&a), cluster_hash(&b));
        }

        #[test]
        fn label_values_are_always_valid(text in "\\PC{0,100}") {
            let v = label_value(&text);
            prop_assert!(v.len() <= MAX_LABEL_LEN);
            prop_assert!(v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
        }
    }
}
