//! The repository layout the core registries share, and the helpers providers build theirs
//! with.
//!
//! `[prefix/]<cluster>/services/<service>`, `[prefix/]<cluster>/mirror`,
//! `[prefix/]<cluster>/builds/<service>` and, one level below a build repository,
//! `[prefix/]<cluster>/builds/<service>/cache-<dockerfile id>`: the middle component keeps
//! scopes apart, and no cache can be named like a repository of another scope.

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::reference::validate_repository;
use crate::registry::{Repository, RepositoryScope};

/// Longest path component produced from an id.
pub(crate) const MAX_COMPONENT: usize = 48;

/// Checks a repository name against the distribution grammar.
pub fn check_name(name: &str) -> Result<()> {
    validate_repository(name).map_err(|reason| Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Turns an id (cluster, service) into a repository path component valid in the distribution
/// grammar: lowercase `[a-z0-9]` runs joined by single `-`. When that changes the id (case,
/// punctuation, Unicode, length), a hash of the exact id is appended so distinct ids never
/// share a name. Empty ids (or ids made only of whitespace) are an error.
pub fn id_component(kind: &str, id: &str, max_len: usize) -> Result<String> {
    if id.trim().is_empty() {
        return Err(Error::InvalidName {
            name: id.to_string(),
            reason: format!("the {kind} id is empty"),
        });
    }
    let mut out = String::new();
    for c in id.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    let max_len = max_len.max(12);
    if out == id && out.len() <= max_len {
        return Ok(out);
    }
    let hash = hex::encode(&Sha256::digest(id.as_bytes())[..4]);
    let keep = max_len - hash.len() - 1;
    out.truncate(keep);
    while out.ends_with('-') {
        out.pop();
    }
    Ok(if out.is_empty() {
        format!("x-{hash}")
    } else {
        format!("{out}-{hash}")
    })
}

/// Checks a Dockerfile id (lowercase hex, 1 to 64 characters).
pub fn check_dockerfile_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(Error::InvalidName {
            name: id.to_string(),
            reason: "a Dockerfile id is 1 to 64 lowercase hex characters".into(),
        });
    }
    Ok(())
}

/// The repository of `scope` named by [`default_repository_name`] under an optional prefix
/// (what the core registries' [`Registry::repository`](crate::Registry::repository) returns).
pub fn default_repository(prefix: Option<&str>, scope: &RepositoryScope) -> Result<Repository> {
    Ok(Repository::new(
        default_repository_name(prefix, scope)?,
        scope.clone(),
    ))
}

/// The default layout (see the module docs) under an optional prefix.
pub fn default_repository_name(prefix: Option<&str>, scope: &RepositoryScope) -> Result<String> {
    let cluster = id_component("cluster", scope.cluster(), MAX_COMPONENT)?;
    let tail = match scope {
        RepositoryScope::Service { service, .. } => {
            format!(
                "services/{}",
                id_component("service", service, MAX_COMPONENT)?
            )
        }
        RepositoryScope::Cluster { .. } => "mirror".to_string(),
        RepositoryScope::Build { service, .. } => {
            format!(
                "builds/{}",
                id_component("service", service, MAX_COMPONENT)?
            )
        }
        RepositoryScope::BuildCache {
            service,
            dockerfile_id,
            ..
        } => {
            check_dockerfile_id(dockerfile_id)?;
            format!(
                "builds/{}/cache-{dockerfile_id}",
                id_component("service", service, MAX_COMPONENT)?
            )
        }
    };
    let name = match prefix {
        Some(p) if !p.is_empty() => format!("{p}/{cluster}/{tail}"),
        _ => format!("{cluster}/{tail}"),
    };
    check_name(&name)?;
    Ok(name)
}

/// The name prefix (ending in `/`) of every repository of `cluster` in the default layout.
pub fn cluster_prefix(prefix: Option<&str>, cluster: &str) -> Result<String> {
    let c = id_component("cluster", cluster, MAX_COMPONENT)?;
    Ok(match prefix {
        Some(p) if !p.is_empty() => format!("{p}/{c}/"),
        _ => format!("{c}/"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_become_valid_distinct_components() {
        assert_eq!(id_component("service", "api", 48).unwrap(), "api");
        assert_eq!(id_component("service", "web-1", 48).unwrap(), "web-1");
        let a = id_component("service", "Web_1", 48).unwrap();
        let b = id_component("service", "web-1!", 48).unwrap();
        assert!(
            a.starts_with("web-1-") && b.starts_with("web-1-") && a != b,
            "{a} {b}"
        );
        assert!(id_component("service", "  ", 48).is_err());
        assert!(matches!(
            id_component("cluster", "", 48),
            Err(Error::InvalidName { .. })
        ));
        assert!(id_component("service", "ÄÖÜ", 48)
            .unwrap()
            .starts_with("x-"));
    }

    #[test]
    fn scopes_never_share_a_repository() {
        let s = RepositoryScope::Service {
            cluster: "c".into(),
            service: "mirror".into(),
        };
        let c = RepositoryScope::Cluster {
            cluster: "c".into(),
        };
        let b = RepositoryScope::Build {
            cluster: "c".into(),
            service: "mirror".into(),
        };
        let k = RepositoryScope::BuildCache {
            cluster: "c".into(),
            service: "mirror".into(),
            dockerfile_id: "0123abcd".into(),
        };
        let names: HashSet<String> = [&s, &c, &b, &k]
            .iter()
            .map(|x| default_repository_name(None, x).unwrap())
            .collect();
        assert_eq!(names.len(), 4);
        assert_eq!(
            default_repository_name(Some("m"), &c).unwrap(),
            "m/c/mirror"
        );
        assert_eq!(
            default_repository_name(None, &k).unwrap(),
            "c/builds/mirror/cache-0123abcd"
        );
        assert!(default_repository_name(
            None,
            &RepositoryScope::BuildCache {
                cluster: "c".into(),
                service: "s".into(),
                dockerfile_id: "../x".into()
            }
        )
        .is_err());
    }

    proptest! {
        #[test]
        fn names_are_valid_for_any_ids(cluster in "\\PC{1,300}", service in "\\PC{1,300}") {
            prop_assume!(!cluster.trim().is_empty() && !service.trim().is_empty());
            for scope in [
                RepositoryScope::Service { cluster: cluster.clone(), service: service.clone() },
                RepositoryScope::Cluster { cluster: cluster.clone() },
                RepositoryScope::Build { cluster: cluster.clone(), service: service.clone() },
                RepositoryScope::BuildCache { cluster: cluster.clone(), service: service.clone(), dockerfile_id: "00ff".into() },
            ] {
                let name = default_repository_name(Some("mirror"), &scope).unwrap();
                prop_assert!(validate_repository(&name).is_ok(), "{}", name);
            }
        }

        #[test]
        fn distinct_ids_give_distinct_components(a in "\\PC{1,80}", b in "\\PC{1,80}") {
            prop_assume!(a != b && !a.trim().is_empty() && !b.trim().is_empty());
            prop_assert_ne!(id_component("service", &a, 48).unwrap(), id_component("service", &b, 48).unwrap());
        }
    }
}
