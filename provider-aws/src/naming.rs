//! ECR naming rules: repository names, the repository prefix, registry hosts and the values of
//! the tags put on repositories.
//!
//! ECR accepts repository names matching
//! `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*` of 2 to 256 characters:
//! lowercase alphanumeric runs joined by single `.`, `_` or `-`, in `/`-separated components.
//! That is stricter than the distribution grammar (which allows `__` and runs of `-`), so every
//! name is checked against both.
//!
//! Repositories follow the core layout ([`default_repository_name`]):
//! `[prefix/]<cluster>/services/<service>`, `[prefix/]<cluster>/mirror`,
//! `[prefix/]<cluster>/builds/<service>`, each id turned into `[a-z0-9]+(-[a-z0-9]+)*` of at most
//! 48 characters, with a hash of the exact id appended whenever the id had to be changed
//! ([`id_component`](mirror_core::registry::id_component)). Names therefore stay readable,
//! never collide for distinct ids, and are at most `prefix + 107` characters long.

use mirror_core::reference::validate_repository;
use mirror_core::registry::default_repository_name;
use mirror_core::{Error, RepositoryScope, Result};

/// Shortest repository name ECR accepts.
pub const MIN_REPOSITORY_LEN: usize = 2;
/// Longest repository name ECR accepts.
pub const MAX_REPOSITORY_LEN: usize = 256;
/// Longest repository prefix accepted: leaves room for the longest name the layout produces
/// (`<48>/services/<48>`, 107 characters) under the distribution limit of 255.
pub const MAX_PREFIX_LEN: usize = 128;
/// Longest value of an AWS resource tag.
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// Checks `name` against ECR's repository grammar and length limits.
pub fn validate_ecr_repository(name: &str) -> std::result::Result<(), String> {
    let len = name.len();
    if !(MIN_REPOSITORY_LEN..=MAX_REPOSITORY_LEN).contains(&len) {
        return Err(format!(
            "ECR repository names are {MIN_REPOSITORY_LEN} to {MAX_REPOSITORY_LEN} characters long, this one has {len}"
        ));
    }
    for component in name.split('/') {
        validate_component(component)?;
    }
    Ok(())
}

/// One `/`-separated component: `[a-z0-9]+(?:[._-][a-z0-9]+)*`.
fn validate_component(component: &str) -> std::result::Result<(), String> {
    if component.is_empty() {
        return Err("empty path component (leading, trailing or double `/`)".into());
    }
    let mut previous_separator = true; // a component may not start with a separator
    for c in component.chars() {
        match c {
            'a'..='z' | '0'..='9' => previous_separator = false,
            '.' | '_' | '-' => {
                if previous_separator {
                    return Err(format!(
                        "component {component:?}: `.`, `_` and `-` must sit between lowercase letters or digits"
                    ));
                }
                previous_separator = true;
            }
            other => {
                return Err(format!(
                    "component {component:?}: character {other:?} is not allowed (lowercase letters, digits, `.`, `_`, `-`)"
                ))
            }
        }
    }
    if previous_separator {
        return Err(format!("component {component:?} ends with a separator"));
    }
    Ok(())
}

/// Checks a repository name against both ECR's rules and the distribution grammar, as an
/// [`Error::InvalidName`].
pub fn check_repository(name: &str) -> Result<()> {
    validate_ecr_repository(name)
        .and_then(|()| validate_repository(name))
        .map_err(|reason| Error::InvalidName {
            name: name.to_string(),
            reason,
        })
}

/// Checks a repository prefix (a valid repository path of at most [`MAX_PREFIX_LEN`]
/// characters; a single character is allowed since names are longer).
pub fn check_prefix(prefix: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidName {
        name: prefix.to_string(),
        reason: format!("repository prefix: {reason}"),
    };
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid(format!(
            "at most {MAX_PREFIX_LEN} characters, this one has {}",
            prefix.len()
        )));
    }
    if prefix.is_empty() {
        return Err(invalid("empty".into()));
    }
    for component in prefix.split('/') {
        validate_component(component).map_err(invalid)?;
    }
    validate_repository(prefix).map_err(invalid)
}

/// The repository name of `scope` under `prefix`, valid for ECR and the distribution grammar.
pub fn repository_name(prefix: Option<&str>, scope: &RepositoryScope) -> Result<String> {
    if let Some(p) = prefix {
        check_prefix(p)?;
    }
    let name = default_repository_name(prefix, scope)?;
    check_repository(&name)?;
    Ok(name)
}

/// The prefix every repository of `cluster` starts with (`[prefix/]<cluster>/`).
pub fn cluster_prefix(prefix: Option<&str>, cluster: &str) -> Result<String> {
    // The cluster repository is `<cluster prefix>mirror`: derive the prefix from it so it
    // always agrees with `repository_name`.
    let name = repository_name(
        prefix,
        &RepositoryScope::Cluster {
            cluster: cluster.to_string(),
        },
    )?;
    Ok(name
        .strip_suffix("mirror")
        .map(str::to_string)
        .unwrap_or(name))
}

/// The parts of a repository name in the core layout: (cluster component, scope kind —
/// `service`, `cluster`, `build` or `build-cache` —, service component). `None` when the
/// name is not in the layout.
pub fn parse_repository<'a>(
    prefix: Option<&str>,
    name: &'a str,
) -> Option<(&'a str, &'static str, Option<&'a str>)> {
    let rest = match prefix {
        Some(p) => name.strip_prefix(p)?.strip_prefix('/')?,
        None => name,
    };
    let mut parts = rest.split('/');
    let cluster = parts.next()?;
    let kind = parts.next()?;
    let service = parts.next();
    let cache = parts.next();
    if parts.next().is_some() {
        return None;
    }
    match (kind, service, cache) {
        ("mirror", None, None) => Some((cluster, "cluster", None)),
        ("services", Some(s), None) => Some((cluster, "service", Some(s))),
        ("builds", Some(s), None) => Some((cluster, "build", Some(s))),
        ("builds", Some(s), Some(c)) if c.starts_with("cache-") => {
            Some((cluster, "build-cache", Some(s)))
        }
        _ => None,
    }
}

/// The ECR registry host of an account in a region:
/// `<account>.dkr.ecr.<region>.amazonaws.com` (`.amazonaws.com.cn` in the China regions).
pub fn registry_host(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}")
}

/// Reads an ECR registry host (`<account>.dkr.ecr.<region>.amazonaws.com[.cn]`, with or
/// without `https://`): (account, region). `None` for any other host.
pub fn parse_registry_host(host: &str) -> Option<(String, String)> {
    let host = host
        .strip_prefix("https://")
        .unwrap_or(host)
        .trim_end_matches('/');
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (account, rest) = rest.split_once(".dkr.ecr.")?;
    let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let valid_region = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (valid_account && valid_region).then(|| (account.to_string(), rest.to_string()))
}

/// Turns any text into a valid AWS tag value: letters, digits, spaces and `_ . : / = + - @`
/// are kept, every other character becomes `_`, and the value is cut to
/// [`MAX_TAG_VALUE_LEN`] characters.
pub fn tag_value(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_TAG_VALUE_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The ECR grammar written as a direct state machine over the documented regex, to check
    /// `validate_ecr_repository` against an independent reading.
    fn matches_ecr_regex(name: &str) -> bool {
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        name.split('/').all(|comp| {
            let b = comp.as_bytes();
            !b.is_empty()
                && alnum(b[0])
                && alnum(b[b.len() - 1])
                && b.windows(2).all(|w| alnum(w[0]) || alnum(w[1]))
                && b.iter()
                    .all(|&c| alnum(c) || c == b'.' || c == b'_' || c == b'-')
        }) && (2..=256).contains(&name.len())
    }

    #[test]
    fn grammar_accepts_and_rejects() {
        for ok in ["ab", "a/b", "a.b_c-d/e", "mirror/prod/services/api", "0/1"] {
            assert!(validate_ecr_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a", "", "A/b", "a//b", "/a", "a/", "a__b", "a--b", "-a", "a-", "a.-b", "a b", "ü/x",
        ] {
            assert!(validate_ecr_repository(bad).is_err(), "{bad}");
        }
        assert!(validate_ecr_repository(&"a".repeat(256)).is_ok());
        assert!(validate_ecr_repository(&"a".repeat(257)).is_err());
    }

    #[test]
    fn layout_and_prefixes() {
        let scope = RepositoryScope::Service {
            cluster: "Prod EU".into(),
            service: "api".into(),
        };
        let name = repository_name(Some("mirror"), &scope).unwrap();
        assert!(name.starts_with("mirror/prod-eu-"), "{name}");
        assert!(name.ends_with("/services/api"), "{name}");
        assert!(repository_name(Some("Mirror"), &scope).is_err());
        assert!(repository_name(Some("a//b"), &scope).is_err());
        assert!(repository_name(Some(&"p".repeat(129)), &scope).is_err());
        let prefix = cluster_prefix(Some("m"), "c").unwrap();
        assert_eq!(prefix, "m/c/");
        assert_eq!(
            parse_repository(Some("m"), "m/c/services/api"),
            Some(("c", "service", Some("api")))
        );
        assert_eq!(
            parse_repository(None, "c/mirror"),
            Some(("c", "cluster", None))
        );
        assert_eq!(
            parse_repository(None, "c/builds/api/cache-0123abcd"),
            Some(("c", "build-cache", Some("api")))
        );
        assert_eq!(parse_repository(None, "c/other/x"), None);
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(
            registry_host("123456789012", "eu-west-1"),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            registry_host("123456789012", "cn-north-1"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            parse_registry_host("https://123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            Some(("123456789012".into(), "us-east-1".into()))
        );
        assert_eq!(
            parse_registry_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(("123456789012".into(), "cn-north-1".into()))
        );
        assert_eq!(parse_registry_host("127.0.0.1:5000"), None);
        assert_eq!(parse_registry_host("12.dkr.ecr.x.amazonaws.com"), None);
    }

    #[test]
    fn tag_values_are_cleaned() {
        assert_eq!(tag_value("prod/eu-1"), "prod/eu-1");
        assert_eq!(tag_value("a;b\n"), "a_b_");
        assert_eq!(tag_value("日本"), "日本");
        assert_eq!(tag_value(&"x".repeat(300)).chars().count(), 256);
    }

    proptest! {
        #[test]
        fn validator_agrees_with_the_documented_regex(name in "[a-z0-9._/A-Z-]{0,12}") {
            prop_assert_eq!(validate_ecr_repository(&name).is_ok(), matches_ecr_regex(&name));
        }

        #[test]
        fn every_scope_name_is_valid_for_ecr(
            cluster in "\\PC{1,300}",
            service in "\\PC{1,300}",
            prefix in proptest::option::of("[a-z0-9]{1,20}(/[a-z0-9]{1,20}){0,2}"),
        ) {
            prop_assume!(!cluster.trim().is_empty() && !service.trim().is_empty());
            for scope in [
                RepositoryScope::Service { cluster: cluster.clone(), service: service.clone() },
                RepositoryScope::Cluster { cluster: cluster.clone() },
                RepositoryScope::Build { cluster: cluster.clone(), service: service.clone() },
            ] {
                let name = repository_name(prefix.as_deref(), &scope).unwrap();
                prop_assert!(matches_ecr_regex(&name), "{}", name);
                prop_assert!(validate_repository(&name).is_ok(), "{}", name);
                prop_assert_eq!(&repository_name(prefix.as_deref(), &scope).unwrap(), &name);
                let cp = cluster_prefix(prefix.as_deref(), &cluster).unwrap();
                prop_assert!(name.starts_with(&cp), "{} does not start with {}", name, cp);
            }
        }

        #[test]
        fn distinct_ids_give_distinct_names(a in "\\PC{1,80}", b in "\\PC{1,80}") {
            prop_assume!(a != b && !a.trim().is_empty() && !b.trim().is_empty());
            let svc = |s: &str| RepositoryScope::Service { cluster: "c".into(), service: s.into() };
            let clu = |c: &str| RepositoryScope::Cluster { cluster: c.into() };
            prop_assert_ne!(repository_name(None, &svc(&a)).unwrap(), repository_name(None, &svc(&b)).unwrap());
            prop_assert_ne!(repository_name(None, &clu(&a)).unwrap(), repository_name(None, &clu(&b)).unwrap());
        }
    }
}
