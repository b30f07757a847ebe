//! Artifact Registry naming: project ids, locations, repository ids, docker image paths, the
//! repository layout of this crate and the labels put on repositories.
//!
//! # The rules, as the Artifact Registry reference states them
//!
//! - A **repository id** (the last part of `projects/P/locations/L/repositories/ID`) is made of
//!   lowercase ASCII letters, digits and hyphens, starts with a letter, ends with a letter or a
//!   digit, and is at most 63 characters long ([`validate_repository_id`]). Ids are unique per
//!   project and location.
//! - A **docker image** lives at `<location>-docker.pkg.dev/<project>/<repository>/<image>`,
//!   where `<image>` is a path of one or more `/`-separated components following the docker
//!   distribution grammar (lowercase alphanumeric runs joined by `.`, `_`, `__` or runs of
//!   `-`). A legacy domain-scoped project `example.com:my-project` appears in docker paths as
//!   `example.com/my-project`. The path after the host is checked against the distribution
//!   grammar and its 255-character limit.
//! - A **project id** is 6 to 30 lowercase letters, digits and hyphens, starting with a letter
//!   and not ending with a hyphen ([`validate_project`]).
//! - A **location** is a region (`europe-west1`) or a multi-region (`us`, `europe`, `asia`):
//!   lowercase letters, digits and hyphens ([`validate_location`]).
//! - **Labels** have keys and values of at most 63 characters made of lowercase letters,
//!   digits, `_` and `-`; keys start with a letter ([`label_value`]).
//!
//! # The layout of this crate
//!
//! Every [`RepositoryScope`] gets its own Artifact Registry repository, so that cleanup
//! policies, IAM bindings and labels apply to exactly one scope:
//!
//! ```text
//! <prefix>-<cluster>-svc-<service>-<hash>     Service scope
//! <prefix>-<cluster>-mirror-<hash>            Cluster scope
//! <prefix>-<cluster>-build-<service>-<hash>   Build scope
//! ```
//!
//! `<cluster>` and `<service>` are readable forms of the ids (lowercased, every run of other
//! characters turned into one `-`, cut to fit 63 characters; `x` when nothing is left);
//! `<hash>` is [`HASH_LEN`] hex characters of a SHA-256 over the scope kind and the *exact* ids,
//! so ids that read alike (`Web_1`, `web-1`) still get distinct repositories. The prefix
//! (default [`DEFAULT_PREFIX`]) starts every id with a letter, as the rules require.
//!
//! Inside the repository the images are in the package [`IMAGE`]; the repository names the
//! core traits see are the docker paths after the host:
//! `<project path>/<repository id>/image`. Remote build caches are the sibling package
//! `cache-<dockerfile id>` of the build repository ([`cache_package`]), outside the reach of the
//! cleanup policies, which are restricted to the `image` package.

use mirror_core::reference::validate_repository;
use mirror_core::{Error, RepositoryScope, Result};
use sha2::{Digest as _, Sha256};

/// Longest repository id Artifact Registry accepts.
pub const MAX_REPOSITORY_ID_LEN: usize = 63;
/// Longest repository prefix accepted (leaves room for readable ids within 63 characters).
pub const MAX_PREFIX_LEN: usize = 20;
/// The default repository prefix.
pub const DEFAULT_PREFIX: &str = "mirror";
/// Hex characters of the scope hash at the end of every repository id.
pub const HASH_LEN: usize = 10;
/// The package (image path inside the repository) holding a scope's images.
pub const IMAGE: &str = "image";
/// The prefix of the packages holding remote build caches.
pub const CACHE_PACKAGE_PREFIX: &str = "cache-";
/// Longest label value.
pub const MAX_LABEL_LEN: usize = 63;
/// Version of the hashed encoding of scopes. Changing it renames every repository: never do.
const HASH_DOMAIN: &str = "mirror-core/provider-gcp/scope/v1";

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidName {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z]([a-z0-9-]*[a-z0-9])?`: a letter first, a letter or digit last, hyphens inside.
fn dns_like(s: &str) -> std::result::Result<(), String> {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return Err("empty".into());
    };
    if !first.is_ascii_lowercase() {
        return Err(format!("{s:?} must start with a lowercase letter"));
    }
    if let Some(c) = b.iter().find(|&&c| !(is_lower_alnum(c) || c == b'-')) {
        return Err(format!(
            "{s:?} contains {:?}: only lowercase letters, digits and `-` are allowed",
            *c as char
        ));
    }
    if b.last() == Some(&b'-') {
        return Err(format!("{s:?} must end with a letter or a digit"));
    }
    Ok(())
}

/// Checks a repository id against Artifact Registry's rules.
pub fn validate_repository_id(id: &str) -> std::result::Result<(), String> {
    if id.len() > MAX_REPOSITORY_ID_LEN {
        return Err(format!(
            "repository ids are at most {MAX_REPOSITORY_ID_LEN} characters, {id:?} has {}",
            id.len()
        ));
    }
    dns_like(id).map_err(|e| format!("repository id {e}"))
}

/// Checks a project id (`my-project`, or the legacy domain-scoped `example.com:my-project`).
pub fn validate_project(project: &str) -> Result<()> {
    let (domain, id) = match project.split_once(':') {
        Some((d, id)) => (Some(d), id),
        None => (None, project),
    };
    if let Some(d) = domain {
        let ok = !d.is_empty()
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| is_lower_alnum(b) || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(invalid(
                project,
                "the domain of a domain-scoped project id is not a lowercase DNS name",
            ));
        }
    }
    if !(6..=30).contains(&id.len()) {
        return Err(invalid(
            project,
            format!(
                "project ids are 6 to 30 characters, this one has {}",
                id.len()
            ),
        ));
    }
    dns_like(id).map_err(|e| invalid(project, format!("project id {e}")))
}

/// The project as it appears in docker paths: `example.com:my-project` → `example.com/my-project`.
pub fn project_path(project: &str) -> String {
    project.replace(':', "/")
}

/// Checks a location (`europe-west1`, `us`).
pub fn validate_location(location: &str) -> Result<()> {
    if location.len() > 63 {
        return Err(invalid(location, "locations are at most 63 characters"));
    }
    dns_like(location).map_err(|e| invalid(location, format!("location {e}")))
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
    validate_location(location).ok()?;
    Some(location.to_string())
}

/// Checks a repository prefix: the repository-id grammar, at most [`MAX_PREFIX_LEN`]
/// characters.
pub fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid(
            prefix,
            format!(
                "repository prefix: at most {MAX_PREFIX_LEN} characters, this one has {}",
                prefix.len()
            ),
        ));
    }
    dns_like(prefix).map_err(|e| invalid(prefix, format!("repository prefix {e}")))
}

/// The readable form of an id: lowercase ASCII letters and digits kept, every run of other
/// characters one `-`, no `-` at either end, at most `max` characters; `x` when nothing is
/// left.
pub fn readable(id: &str, max: usize) -> String {
    let mut out = String::new();
    for c in id.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max.max(1));
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

/// The kind word of a scope in repository ids and the `mirror-scope` label.
pub fn kind_of(scope: &RepositoryScope) -> &'static str {
    match scope {
        RepositoryScope::Service { .. } => "svc",
        RepositoryScope::Cluster { .. } => "mirror",
        // A build cache is a package of its build repository.
        RepositoryScope::Build { .. } | RepositoryScope::BuildCache { .. } => "build",
        // Scopes of later versions of mirror-core: a kind of their own.
        _ => "other",
    }
}

fn service_of(scope: &RepositoryScope) -> Option<&str> {
    match scope {
        RepositoryScope::Cluster { .. } => None,
        other => other.service(),
    }
}

/// [`HASH_LEN`] hex characters of SHA-256 over a length-prefixed encoding of the parts.
fn hash_hex(parts: &[&str], len: usize) -> String {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let mut hex = hex::encode(h.finalize());
    hex.truncate(len);
    hex
}

/// The value of the `mirror-cluster` label: a hash of the exact cluster id, which is how
/// [`crate::ArtifactRegistry`] finds a cluster's repositories.
pub fn cluster_hash(cluster: &str) -> String {
    hash_hex(&["cluster", cluster], 16)
}

fn check_id(kind: &str, id: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(invalid(id, format!("the {kind} id is empty")));
    }
    Ok(())
}

/// The repository id of `scope` under `prefix` (see the module docs).
pub fn repository_id(prefix: &str, scope: &RepositoryScope) -> Result<String> {
    check_prefix(prefix)?;
    let cluster = scope.cluster();
    check_id("cluster", cluster)?;
    let service = service_of(scope);
    if let Some(s) = service {
        check_id("service", s)?;
    }
    let kind = kind_of(scope);
    let hash = hash_hex(&[kind, cluster, service.unwrap_or("")], HASH_LEN);
    // prefix-cluster-kind[-service]-hash
    let separators = if service.is_some() { 4 } else { 3 };
    let avail = MAX_REPOSITORY_ID_LEN - prefix.len() - kind.len() - HASH_LEN - separators;
    let id = match service {
        Some(s) => {
            let c = readable(cluster, (avail / 2).max(1));
            let s = readable(s, avail.saturating_sub(c.len()).max(1));
            format!("{prefix}-{c}-{kind}-{s}-{hash}")
        }
        None => {
            let c = readable(cluster, avail.max(1));
            format!("{prefix}-{c}-{kind}-{hash}")
        }
    };
    validate_repository_id(&id).map_err(|reason| invalid(&id, reason))?;
    Ok(id)
}

/// The core repository name (docker path after the host) of a package of a repository:
/// `<project path>/<repository id>/<package>`.
pub fn repository_name(project: &str, repository_id: &str, package: &str) -> Result<String> {
    let name = format!("{}/{repository_id}/{package}", project_path(project));
    check_name(project, &name)?;
    Ok(name)
}

/// The package of the build cache of one Dockerfile: `cache-<dockerfile id>`.
pub fn cache_package(dockerfile_id: &str) -> Result<String> {
    if dockerfile_id.is_empty()
        || dockerfile_id.len() > 64
        || !dockerfile_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            dockerfile_id,
            "a Dockerfile id is 1 to 64 lowercase hex characters",
        ));
    }
    Ok(format!("{CACHE_PACKAGE_PREFIX}{dockerfile_id}"))
}

/// Splits a core repository name into (repository id, package), checking every rule: the
/// project path, the repository id, the docker path grammar.
pub fn parse_name<'a>(project: &str, name: &'a str) -> Result<(&'a str, &'a str)> {
    let pp = project_path(project);
    let rest = name
        .strip_prefix(pp.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| {
            invalid(
                name,
                format!("an Artifact Registry repository name here starts with the project path `{pp}/`"),
            )
        })?;
    let (id, package) = rest.split_once('/').ok_or_else(|| {
        invalid(
            name,
            "expected `<project>/<repository id>/<image path>`: the image path is missing",
        )
    })?;
    validate_repository_id(id).map_err(|reason| invalid(name, reason))?;
    validate_repository(name).map_err(|reason| invalid(name, reason))?;
    Ok((id, package))
}

/// Checks a core repository name (see [`parse_name`]).
pub fn check_name(project: &str, name: &str) -> Result<()> {
    parse_name(project, name).map(|_| ())
}

/// Turns any text into a valid label value: lowercase letters, digits, `_` and `-` are kept,
/// uppercase letters are lowercased, every other character becomes `_`, and the value is cut
/// to [`MAX_LABEL_LEN`] characters.
pub fn label_value(text: &str) -> String {
    text.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LABEL_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

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

    fn scopes(cluster: &str, service: &str) -> [RepositoryScope; 3] {
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
