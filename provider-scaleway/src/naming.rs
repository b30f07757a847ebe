//! Scaleway Container Registry naming rules, and how this crate lays repositories out in them.
//!
//! # What Scaleway accepts
//!
//! An image in Scaleway Container Registry is addressed as
//! `rg.<region>.scw.cloud/<namespace>/<image>[:tag]`. A *namespace* is the only thing created
//! through the control-plane API (in one project, public or private); *images* inside it are
//! created by the first push, and their tags by every push.
//!
//! Namespace names are global: within one region, a name belongs to whichever customer took it
//! first, whatever the organization or project. Scaleway's API reference does not publish a
//! grammar for them; what the console and existing integrations enforce is a length of 4 to
//! 50 characters (some accept up to 54) made of lowercase letters, digits and dashes (some
//! also accept dots). This crate only produces, and only accepts, the narrowest reading:
//! [`MIN_NAMESPACE_LEN`] to [`MAX_NAMESPACE_LEN`] characters, starting with a lowercase
//! letter, ending with a letter or digit, made of `[a-z0-9]` runs joined by single `-`.
//! Image names follow the OCI distribution grammar; this crate produces single components of
//! `[a-z0-9]` runs joined by single `-`, at most [`MAX_IMAGE_LEN`] characters.
//!
//! # Layout
//!
//! One namespace per cluster, one image per repository scope:
//!
//! | scope | repository |
//! |---|---|
//! | [`RepositoryScope::Cluster`] | `<namespace>/mirror` |
//! | [`RepositoryScope::Service`] | `<namespace>/svc-<service>` |
//! | [`RepositoryScope::Build`] | `<namespace>/build-<service>` |
//! | build cache ([`cache_repository`]) | `<namespace>/cache-<dockerfile id>-build-<service>` |
//!
//! with `<namespace>` = `<prefix>-<cluster>-<discriminator>`:
//!
//! - `<prefix>` is configurable ([`DEFAULT_PREFIX`] by default; 1 to [`MAX_PREFIX_LEN`]
//!   characters of the namespace grammar, starting with a letter);
//! - `<cluster>` is the cluster id turned into `[a-z0-9]+(-[a-z0-9]+)*` and cut so the whole
//!   name fits [`MAX_NAMESPACE_LEN`]; whenever the id had to be changed (case, punctuation,
//!   Unicode, length) a hash of the exact id is appended
//!   ([`id_component`]), so distinct ids never share a
//!   namespace;
//! - `<discriminator>` is [`DISCRIMINATOR_LEN`] hex characters of a SHA-256 of the Scaleway
//!   project id ([`discriminator`]): two customers (or two projects) whose clusters are both
//!   called `prod` get different namespaces instead of fighting over one global name.
//!
//! Why one namespace per cluster rather than per service: namespaces are a counted,
//! region-global resource (each costs a globally unique name and a creation call with a
//! readiness wait), while images are free and appear on push. `<service>` is the service id
//! made into the same grammar (at most 48 characters, hash appended when changed). The
//! `svc-`, `build-` and `cache-` prefixes and the fixed name `mirror` keep the scopes apart:
//! no service id can produce a name of another scope.

use mirror_core::reference::validate_repository;
use mirror_core::registry::id_component;
use mirror_core::{Error, RepositoryScope, Result};
use sha2::{Digest as _, Sha256};

/// Shortest namespace name accepted.
pub const MIN_NAMESPACE_LEN: usize = 4;
/// Longest namespace name produced or accepted (the most restrictive limit known).
pub const MAX_NAMESPACE_LEN: usize = 50;
/// Longest namespace prefix: leaves at least 24 characters for the cluster id.
pub const MAX_PREFIX_LEN: usize = 16;
/// Hex characters of the project discriminator.
pub const DISCRIMINATOR_LEN: usize = 8;
/// The default namespace prefix.
pub const DEFAULT_PREFIX: &str = "mirror";
/// Longest image name this crate produces or accepts (a bound of its own: Scaleway does not
/// document one, the distribution grammar limits the whole repository name to 255).
pub const MAX_IMAGE_LEN: usize = 128;
/// Longest service component of an image name.
pub const MAX_SERVICE_LEN: usize = 48;
/// The image of the Cluster scope.
pub const CLUSTER_IMAGE: &str = "mirror";
/// Prefix of the images of the Service scope.
pub const SERVICE_IMAGE_PREFIX: &str = "svc-";
/// Prefix of the images of the Build scope.
pub const BUILD_IMAGE_PREFIX: &str = "build-";
/// Prefix of the build-cache images.
pub const CACHE_IMAGE_PREFIX: &str = "cache-";

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidName {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// True for `[a-z0-9]+(-[a-z0-9]+)*`.
fn is_dashed_alnum(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Checks a namespace name: [`MIN_NAMESPACE_LEN`] to [`MAX_NAMESPACE_LEN`] characters,
/// `[a-z0-9]` runs joined by single `-`, starting with a lowercase letter.
pub fn validate_namespace(name: &str) -> std::result::Result<(), String> {
    let len = name.len();
    if !(MIN_NAMESPACE_LEN..=MAX_NAMESPACE_LEN).contains(&len) {
        return Err(format!(
            "Scaleway namespace names are {MIN_NAMESPACE_LEN} to {MAX_NAMESPACE_LEN} characters long, this one has {len}"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("a namespace name starts with a lowercase letter".into());
    }
    if !is_dashed_alnum(name) {
        return Err(
            "a namespace name is made of lowercase letters and digits joined by single `-`".into(),
        );
    }
    Ok(())
}

/// Checks a namespace prefix: 1 to [`MAX_PREFIX_LEN`] characters of the namespace grammar,
/// starting with a lowercase letter.
pub fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid(
            prefix,
            format!(
                "namespace prefix: 1 to {MAX_PREFIX_LEN} characters, this one has {}",
                prefix.len()
            ),
        ));
    }
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) || !is_dashed_alnum(prefix) {
        return Err(invalid(
            prefix,
            "namespace prefix: lowercase letters and digits joined by single `-`, starting with a letter",
        ));
    }
    Ok(())
}

/// The project discriminator: the first [`DISCRIMINATOR_LEN`] hex characters of
/// `SHA-256("mirror-core/scaleway-namespace\0" ‖ project id)`. Stable across runs and
/// machines; distinct projects get distinct values except with probability 2⁻³².
pub fn discriminator(project_id: &str) -> String {
    let hash = Sha256::new()
        .chain_update(b"mirror-core/scaleway-namespace\0")
        .chain_update(project_id.trim().to_ascii_lowercase().as_bytes())
        .finalize();
    hex::encode(hash)[..DISCRIMINATOR_LEN].to_string()
}

/// The namespace of `cluster`: `<prefix>-<cluster>-<discriminator>` (see the module docs).
/// [`Error::InvalidName`] for an empty cluster id or an invalid prefix.
pub fn namespace_name(prefix: &str, project_id: &str, cluster: &str) -> Result<String> {
    check_prefix(prefix)?;
    let budget = MAX_NAMESPACE_LEN - prefix.len() - DISCRIMINATOR_LEN - 2;
    let cluster = id_component("cluster", cluster, budget)?;
    let name = format!("{prefix}-{cluster}-{}", discriminator(project_id));
    validate_namespace(&name).map_err(|reason| invalid(&name, reason))?;
    Ok(name)
}

/// The image (inside the cluster's namespace) of a scope.
pub fn image_name(scope: &RepositoryScope) -> Result<String> {
    let name = match scope {
        RepositoryScope::Cluster { cluster } => {
            // Validates the cluster id (empty ids are errors in every scope).
            id_component("cluster", cluster, MAX_SERVICE_LEN)?;
            CLUSTER_IMAGE.to_string()
        }
        RepositoryScope::Service { cluster, service } => {
            id_component("cluster", cluster, MAX_SERVICE_LEN)?;
            format!(
                "{SERVICE_IMAGE_PREFIX}{}",
                id_component("service", service, MAX_SERVICE_LEN)?
            )
        }
        RepositoryScope::Build { cluster, service } => {
            id_component("cluster", cluster, MAX_SERVICE_LEN)?;
            format!(
                "{BUILD_IMAGE_PREFIX}{}",
                id_component("service", service, MAX_SERVICE_LEN)?
            )
        }
        RepositoryScope::BuildCache {
            cluster,
            service,
            dockerfile_id,
        } => {
            let build = image_name(&RepositoryScope::Build {
                cluster: cluster.clone(),
                service: service.clone(),
            })?;
            check_dockerfile_id(dockerfile_id)?;
            format!("{CACHE_IMAGE_PREFIX}{dockerfile_id}-{build}")
        }
        other => {
            return Err(invalid(
                other.kind(),
                "a scope this version of provider-scaleway does not know",
            ))
        }
    };
    Ok(name)
}

/// The repository (`<namespace>/<image>`) of a scope.
pub fn repository_name(prefix: &str, project_id: &str, scope: &RepositoryScope) -> Result<String> {
    let image = image_name(scope)?;
    let namespace = namespace_name(prefix, project_id, scope.cluster())?;
    let name = format!("{namespace}/{image}");
    check_repository(&name)?;
    Ok(name)
}

/// Splits a repository name into (namespace, image), checking both: the namespace against
/// [`validate_namespace`], the image against the distribution grammar and [`MAX_IMAGE_LEN`].
pub fn parse_repository(name: &str) -> Result<(&str, &str)> {
    let (namespace, image) = name.split_once('/').ok_or_else(|| {
        invalid(
            name,
            "a Scaleway repository is `<namespace>/<image>`: no `/` in this name",
        )
    })?;
    validate_namespace(namespace).map_err(|reason| invalid(name, reason))?;
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        return Err(invalid(
            name,
            format!(
                "image names are 1 to {MAX_IMAGE_LEN} characters, this one has {}",
                image.len()
            ),
        ));
    }
    validate_repository(name).map_err(|reason| invalid(name, reason))?;
    Ok((namespace, image))
}

/// Checks a repository name (see [`parse_repository`]).
pub fn check_repository(name: &str) -> Result<()> {
    parse_repository(name).map(|_| ())
}

/// The build-cache repository of the builds pushed to `build_repository` from the Dockerfile
/// named by `dockerfile_id` (lowercase hex): `<namespace>/cache-<dockerfile id>-<build image>`,
/// in the same namespace and flat (Scaleway images are one path component here). Distinct
/// inputs give distinct names: the id is hex (no `-`), so the build image starts right after
/// the first `-` that follows it.
pub fn cache_repository(build_repository: &str, dockerfile_id: &str) -> Result<String> {
    let (namespace, image) = parse_repository(build_repository)?;
    check_dockerfile_id(dockerfile_id)?;
    if image.contains('/') {
        return Err(invalid(
            build_repository,
            "build repositories on Scaleway are a single image name below the namespace",
        ));
    }
    let name = format!("{namespace}/{CACHE_IMAGE_PREFIX}{dockerfile_id}-{image}");
    check_repository(&name)?;
    Ok(name)
}

/// Checks a Dockerfile id: 1 to 32 lowercase hex characters.
fn check_dockerfile_id(dockerfile_id: &str) -> Result<()> {
    if dockerfile_id.is_empty()
        || dockerfile_id.len() > 32
        || !dockerfile_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            dockerfile_id,
            "a Dockerfile id is 1 to 32 lowercase hex characters",
        ));
    }
    Ok(())
}

/// What a repository of the layout is: (namespace, scope kind — `cluster`, `service`,
/// `build`, `build-cache` —, the image's id part). `None` for images not in the layout.
pub fn classify_repository(name: &str) -> Option<(&str, &'static str, &str)> {
    let (namespace, image) = name.split_once('/')?;
    if image == CLUSTER_IMAGE {
        return Some((namespace, "cluster", ""));
    }
    if let Some(s) = image.strip_prefix(SERVICE_IMAGE_PREFIX) {
        return Some((namespace, "service", s));
    }
    if let Some(s) = image.strip_prefix(BUILD_IMAGE_PREFIX) {
        return Some((namespace, "build", s));
    }
    if let Some(s) = image.strip_prefix(CACHE_IMAGE_PREFIX) {
        return Some((namespace, "build-cache", s));
    }
    None
}

/// The data-plane host of a region: `rg.<region>.scw.cloud`.
pub fn registry_host(region: &str) -> String {
    format!("rg.{region}.scw.cloud")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PROJECT: &str = "4b0c6bd4-5a39-4d48-8c1e-6a2f2e4e1b11";

    /// The namespace grammar as a direct reading of the rule, independent of the validator.
    fn namespace_ok(name: &str) -> bool {
        let b = name.as_bytes();
        (4..=50).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !name.contains("--")
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
    fn namespace_grammar() {
        for ok in ["abcd", "mirror-prod-0a1b2c3d", "a123", &"a".repeat(50)] {
            assert!(validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in [
            "abc",
            &"a".repeat(51),
            "1abc",
            "-abc",
            "abc-",
            "ab--cd",
            "Abcd",
            "ab_cd",
            "ab.cd",
            "abcé",
        ] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layout_is_readable() {
        let [s, c, b] = scopes("prod-eu", "api");
        let disc = discriminator(PROJECT);
        assert_eq!(disc.len(), DISCRIMINATOR_LEN);
        let ns = format!("mirror-prod-eu-{disc}");
        assert_eq!(
            repository_name("mirror", PROJECT, &s).unwrap(),
            format!("{ns}/svc-api")
        );
        assert_eq!(
            repository_name("mirror", PROJECT, &c).unwrap(),
            format!("{ns}/mirror")
        );
        assert_eq!(
            repository_name("mirror", PROJECT, &b).unwrap(),
            format!("{ns}/build-api")
        );
        assert_eq!(
            cache_repository(&format!("{ns}/build-api"), "0123abcdef01").unwrap(),
            format!("{ns}/cache-0123abcdef01-build-api")
        );
        assert_eq!(
            classify_repository(&format!("{ns}/svc-api")),
            Some((ns.as_str(), "service", "api"))
        );
        assert_eq!(
            classify_repository(&format!("{ns}/cache-01-build-api")),
            Some((ns.as_str(), "build-cache", "01-build-api"))
        );
        assert_eq!(classify_repository(&format!("{ns}/other")), None);
        assert_eq!(registry_host("nl-ams"), "rg.nl-ams.scw.cloud");
    }

    #[test]
    fn an_existing_systems_cluster_namespace_would_not_fit_but_ours_does() {
        // `<prefix>-mirror-cluster-<uuid>` is 58+ characters: over the limit.
        let theirs = "qovery-mirror-cluster-6f2a4e1c-3b7d-4c2a-9e8f-1a2b3c4d5e6f";
        assert!(validate_namespace(theirs).is_err());
        let ours = namespace_name(
            "mirror",
            PROJECT,
            "cluster-6f2a4e1c-3b7d-4c2a-9e8f-1a2b3c4d5e6f",
        )
        .unwrap();
        assert!(ours.len() <= MAX_NAMESPACE_LEN, "{ours}");
        assert!(validate_namespace(&ours).is_ok(), "{ours}");
    }

    #[test]
    fn the_project_keeps_customers_apart() {
        let other = "9d3f0a57-0e36-4c5e-8f3c-2d1b0a9e8f7c";
        assert_ne!(
            namespace_name("mirror", PROJECT, "prod").unwrap(),
            namespace_name("mirror", other, "prod").unwrap()
        );
        // Case and surrounding spaces of a project id do not change it.
        assert_eq!(
            discriminator(PROJECT),
            discriminator(&format!(" {} ", PROJECT.to_uppercase()))
        );
    }

    #[test]
    fn bad_inputs_are_invalid_names() {
        for prefix in ["", "Mirror", "1mirror", "a--b", "a_b", &"p".repeat(17)] {
            assert!(
                matches!(
                    namespace_name(prefix, PROJECT, "c"),
                    Err(Error::InvalidName { .. })
                ),
                "{prefix:?}"
            );
        }
        assert!(matches!(
            namespace_name("mirror", PROJECT, "  "),
            Err(Error::InvalidName { .. })
        ));
        for repo in [
            "noslash",
            "abc/x",
            "mirror-x-00000000/",
            "mirror-x-00000000/A",
        ] {
            assert!(parse_repository(repo).is_err(), "{repo}");
        }
        let ns = namespace_name("mirror", PROJECT, "c").unwrap();
        for id in ["", "ABC", "xyz", &"a".repeat(33)] {
            assert!(
                cache_repository(&format!("{ns}/build-api"), id).is_err(),
                "{id}"
            );
        }
        assert!(cache_repository(&format!("{ns}/a/b"), "01").is_err());
    }

    proptest! {
        #[test]
        fn validator_agrees_with_the_rule(name in "[a-z0-9A-Z._-]{0,55}") {
            prop_assert_eq!(validate_namespace(&name).is_ok(), namespace_ok(&name));
        }

        #[test]
        fn every_generated_name_is_valid(
            cluster in "\\PC{1,300}",
            service in "\\PC{1,300}",
            project in "[0-9a-f-]{36}",
            prefix in "[a-z]([a-z0-9]{0,6}(-[a-z0-9]{1,3}){0,2})?",
            dockerfile_id in "[0-9a-f]{12}",
        ) {
            prop_assume!(!cluster.trim().is_empty() && !service.trim().is_empty());
            let ns = namespace_name(&prefix, &project, &cluster).unwrap();
            prop_assert!(namespace_ok(&ns), "{}", ns);
            prop_assert!(ns.len() <= MAX_NAMESPACE_LEN);
            for scope in scopes(&cluster, &service) {
                let name = repository_name(&prefix, &project, &scope).unwrap();
                prop_assert!(validate_repository(&name).is_ok(), "{}", name);
                let (n, image) = parse_repository(&name).unwrap();
                prop_assert_eq!(n, ns.as_str());
                prop_assert!(image.len() <= MAX_IMAGE_LEN);
                prop_assert_eq!(&repository_name(&prefix, &project, &scope).unwrap(), &name);
                if let RepositoryScope::Build { .. } = scope {
                    let cache = cache_repository(&name, &dockerfile_id).unwrap();
                    prop_assert!(validate_repository(&cache).is_ok(), "{}", cache);
                }
            }
        }

        #[test]
        fn distinct_ids_give_distinct_names(a in "\\PC{1,80}", b in "\\PC{1,80}") {
            prop_assume!(a != b && !a.trim().is_empty() && !b.trim().is_empty());
            let name = |s: &RepositoryScope| repository_name("mirror", PROJECT, s).unwrap();
            for (x, y) in scopes(&a, "api").iter().zip(scopes(&b, "api").iter()) {
                prop_assert_ne!(name(x), name(y));
            }
            for (x, y) in scopes("c", &a).iter().zip(scopes("c", &b).iter()) {
                if !matches!(x, RepositoryScope::Cluster { .. }) {
                    prop_assert_ne!(name(x), name(y));
                }
            }
            // No two scopes share a name either.
            let all: std::collections::HashSet<String> = scopes("c", &a).iter().map(name).collect();
            prop_assert_eq!(all.len(), 3);
        }
    }
}
