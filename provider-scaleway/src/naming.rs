//! Scaleway's naming rules and this crate's layout in them.
//!
//! Images are addressed as `rg.<region>.scw.cloud/<namespace>/<image>`. Namespaces are the
//! only resource created through the API, and their names are global per region (whoever
//! takes a name first owns it). Scaleway publishes no grammar; this crate produces and
//! accepts the narrowest reading of what its console enforces ([`NAMESPACE`]). Images are
//! single components of distribution names, at most [`MAX_IMAGE_LEN`] characters.
//!
//! One namespace per cluster (namespaces are counted, global and slow to create; images are
//! free), `<prefix>-<cluster>-<discriminator>`: the cluster id made into the grammar and cut
//! to fit, a hash of the exact id appended when it had to change ([`id_component`]), and
//! [`DISCRIMINATOR_LEN`] hex characters of a hash of the project id, so two customers'
//! `prod` clusters get different namespaces. One image per scope: `mirror` (Cluster),
//! `svc-<service>`, `build-<service>`, and `cache-<dockerfile id>-build-<service>` for build
//! caches; the prefixes keep the scopes apart.

use mirror_core::kit::provider::naming::invalid;
use mirror_core::kit::provider::Grammar;
use mirror_core::reference::validate_repository;
use mirror_core::registry::id_component;
use mirror_core::{RepositoryScope, Result};
use sha2::{Digest as _, Sha256};

/// Namespace names: 4 to 50 characters, a lowercase letter first, `[a-z0-9]` runs joined by
/// single `-`.
pub const NAMESPACE: Grammar = Grammar {
    what: "Scaleway namespace name",
    min: 4,
    max: MAX_NAMESPACE_LEN,
    separators: "-",
    repeated_separators: false,
    letter_first: true,
};
/// Namespace prefixes: the namespace grammar, 1 to 16 characters.
pub const PREFIX: Grammar = Grammar {
    what: "namespace prefix",
    min: 1,
    max: 16,
    ..NAMESPACE
};
/// Longest namespace name produced or accepted (the most restrictive limit known).
pub const MAX_NAMESPACE_LEN: usize = 50;
/// Hex characters of the project discriminator.
pub const DISCRIMINATOR_LEN: usize = 8;
/// The default namespace prefix.
pub const DEFAULT_PREFIX: &str = "mirror";
/// Longest image name produced or accepted (a bound of this crate's own).
pub const MAX_IMAGE_LEN: usize = 128;
const MAX_SERVICE_LEN: usize = 48;

/// Checks a namespace name.
pub fn validate_namespace(name: &str) -> std::result::Result<(), String> {
    NAMESPACE.check(name)
}

/// Checks a namespace prefix.
pub fn check_prefix(prefix: &str) -> Result<()> {
    PREFIX.validate(prefix)
}

/// The project discriminator: [`DISCRIMINATOR_LEN`] hex characters of
/// `SHA-256("mirror-core/scaleway-namespace\0" ‖ project id)` (trimmed, lowercase).
pub fn discriminator(project_id: &str) -> String {
    let hash = Sha256::new()
        .chain_update(b"mirror-core/scaleway-namespace\0")
        .chain_update(project_id.trim().to_ascii_lowercase().as_bytes())
        .finalize();
    hex::encode(hash)[..DISCRIMINATOR_LEN].to_string()
}

/// The namespace of `cluster`: `<prefix>-<cluster>-<discriminator>`.
pub fn namespace_name(prefix: &str, project_id: &str, cluster: &str) -> Result<String> {
    check_prefix(prefix)?;
    let budget = MAX_NAMESPACE_LEN - prefix.len() - DISCRIMINATOR_LEN - 2;
    let cluster = id_component("cluster", cluster, budget)?;
    let name = format!("{prefix}-{cluster}-{}", discriminator(project_id));
    NAMESPACE.validate(&name)?;
    Ok(name)
}

/// The image (inside the cluster's namespace) of a scope.
pub fn image_name(scope: &RepositoryScope) -> Result<String> {
    id_component("cluster", scope.cluster(), MAX_SERVICE_LEN)?;
    let service = || id_component("service", scope.service().unwrap_or(""), MAX_SERVICE_LEN);
    Ok(match scope {
        RepositoryScope::Cluster { .. } => "mirror".to_string(),
        RepositoryScope::Service { .. } => format!("svc-{}", service()?),
        RepositoryScope::Build { .. } => format!("build-{}", service()?),
        RepositoryScope::BuildCache { dockerfile_id, .. } => {
            check_dockerfile_id(dockerfile_id)?;
            format!("cache-{dockerfile_id}-build-{}", service()?)
        }
        other => {
            return Err(invalid(
                other.kind(),
                "a scope provider-scaleway does not know",
            ))
        }
    })
}

/// The repository (`<namespace>/<image>`) of a scope.
pub fn repository_name(prefix: &str, project_id: &str, scope: &RepositoryScope) -> Result<String> {
    let image = image_name(scope)?;
    let name = format!(
        "{}/{image}",
        namespace_name(prefix, project_id, scope.cluster())?
    );
    check_repository(&name)?;
    Ok(name)
}

/// Splits a repository name into (namespace, image), checking both.
pub fn parse_repository(name: &str) -> Result<(&str, &str)> {
    let shape = "a Scaleway repository is `<namespace>/<image>`: no `/` in this name";
    let (namespace, image) = name.split_once('/').ok_or_else(|| invalid(name, shape))?;
    validate_namespace(namespace).map_err(|reason| invalid(name, reason))?;
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        let reason = format!("image names are 1 to {MAX_IMAGE_LEN} characters");
        return Err(invalid(name, reason));
    }
    validate_repository(name).map_err(|reason| invalid(name, reason))?;
    Ok((namespace, image))
}

/// Checks a repository name (see [`parse_repository`]).
pub fn check_repository(name: &str) -> Result<()> {
    parse_repository(name).map(|_| ())
}

/// The build-cache repository of `build_repository` for one Dockerfile (lowercase hex id):
/// `<namespace>/cache-<dockerfile id>-<build image>`, flat in the same namespace (the id has
/// no `-`, so distinct inputs give distinct names).
pub fn cache_repository(build_repository: &str, dockerfile_id: &str) -> Result<String> {
    let (namespace, image) = parse_repository(build_repository)?;
    check_dockerfile_id(dockerfile_id)?;
    if image.contains('/') {
        let reason = "build repositories on Scaleway are one image name below the namespace";
        return Err(invalid(build_repository, reason));
    }
    let name = format!("{namespace}/cache-{dockerfile_id}-{image}");
    check_repository(&name)?;
    Ok(name)
}

/// Dockerfile ids of at most 32 lowercase hex characters keep cache image names short.
fn check_dockerfile_id(id: &str) -> Result<()> {
    mirror_core::registry::naming::check_dockerfile_id(id)?;
    match id.len() <= 32 {
        true => Ok(()),
        false => Err(invalid(
            id,
            "a Dockerfile id is 1 to 32 lowercase hex characters",
        )),
    }
}

/// The data-plane host of a region: `rg.<region>.scw.cloud`.
pub fn registry_host(region: &str) -> String {
    format!("rg.{region}.scw.cloud")
}

/// The region of a host `rg.<region>.scw.cloud` (any port; the region's characters checked).
pub fn region_of_host(host: &str) -> Option<&str> {
    let name = host.split(':').next().unwrap_or(host);
    let region = name.strip_prefix("rg.")?.strip_suffix(".scw.cloud")?;
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    (!region.is_empty() && region.bytes().all(ok)).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_core::Error;
    use proptest::prelude::*;

    /// What a repository of the layout is: (namespace, scope kind, the image's id part): the
    /// layout read back, to show the prefixes keep the scopes apart.
    fn classify_repository(name: &str) -> Option<(&str, &'static str, &str)> {
        let (namespace, image) = name.split_once('/')?;
        if image == "mirror" {
            return Some((namespace, "cluster", ""));
        }
        let kinds = [
            ("svc-", "service"),
            ("build-", "build"),
            ("cache-", "build-cache"),
        ];
        let mut found = kinds
            .iter()
            .filter_map(|(p, k)| Some((*k, image.strip_prefix(p)?)));
        found.next().map(|(kind, rest)| (namespace, kind, rest))
    }

    const PROJECT: &str = "4b0c6bd4-5a39-4d48-8c1e-6a2f2e4e1b11";

    mirror_core::naming_properties! {
        name: |scope: &RepositoryScope| repository_name("mirror", PROJECT, scope),
        valid: |name: &str| parse_repository(name)
            .is_ok_and(|(ns, image)| namespace_ok(ns) && image.len() <= MAX_IMAGE_LEN),
    }

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

    use mirror_core::testing::conformance::all_scopes as scopes;

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

    }
}
