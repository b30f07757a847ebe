//! ECR naming: repository names, the repository prefix, registry hosts and repository tag
//! values.
//!
//! ECR accepts `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*` of 2 to 256
//! characters: lowercase alphanumeric runs joined by single `.`, `_` or `-`, in
//! `/`-separated components ([`COMPONENT`]). That is stricter than the distribution grammar
//! (which allows `__` and runs of `-`), so every name is checked against both. Repositories
//! follow the core layout ([`default_repository_name`]): `[prefix/]<cluster>/services/<service>`,
//! `[prefix/]<cluster>/mirror`, `[prefix/]<cluster>/builds/<service>`.

use mirror_core::kit::provider::naming::invalid;
use mirror_core::kit::provider::Grammar;
use mirror_core::reference::validate_repository;
use mirror_core::registry::default_repository_name;
use mirror_core::{RepositoryScope, Result};

/// One `/`-separated component of a repository name.
pub const COMPONENT: Grammar = Grammar {
    what: "ECR repository name component",
    min: 1,
    max: 256,
    separators: "._-",
    repeated_separators: false,
    letter_first: false,
};
/// Longest repository prefix: leaves room for the longest name of the layout (107
/// characters) under the distribution limit of 255.
pub const MAX_PREFIX_LEN: usize = 128;

/// Checks `name` against ECR's repository grammar and length limits.
pub fn validate_ecr_repository(name: &str) -> std::result::Result<(), String> {
    let len = name.len();
    if !(2..=256).contains(&len) {
        return Err(format!(
            "ECR repository names are 2 to 256 characters long, this one has {len}"
        ));
    }
    name.split('/').try_for_each(|c| COMPONENT.check(c))
}

/// Checks a repository name against ECR's rules and the distribution grammar.
pub fn check_repository(name: &str) -> Result<()> {
    let valid = validate_ecr_repository(name).and_then(|()| validate_repository(name));
    valid.map_err(|reason| invalid(name, reason))
}

/// Checks a repository prefix: components of the grammar, at most [`MAX_PREFIX_LEN`]
/// characters.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let len = prefix.len();
    let valid = match (1..=MAX_PREFIX_LEN).contains(&len) {
        false => Err(format!(
            "1 to {MAX_PREFIX_LEN} characters, this one has {len}"
        )),
        true => prefix.split('/').try_for_each(|c| COMPONENT.check(c)),
    };
    let valid = valid.and_then(|()| validate_repository(prefix));
    valid.map_err(|reason| invalid(prefix, format!("repository prefix: {reason}")))
}

/// The repository name of `scope` under `prefix`.
pub fn repository_name(prefix: Option<&str>, scope: &RepositoryScope) -> Result<String> {
    prefix.map_or(Ok(()), check_prefix)?;
    let name = default_repository_name(prefix, scope)?;
    check_repository(&name)?;
    Ok(name)
}

/// The prefix every repository of `cluster` starts with (`[prefix/]<cluster>/`, the core
/// layout's), `prefix` checked.
pub fn cluster_prefix(prefix: Option<&str>, cluster: &str) -> Result<String> {
    prefix.map_or(Ok(()), check_prefix)?;
    mirror_core::registry::naming::cluster_prefix(prefix, cluster)
}

/// The parts of a repository name of the layout: (cluster component, scope kind, service
/// component); `None` for names not in the layout.
pub use mirror_core::kit::provider::scope::parse_layout_name as parse_repository;

/// The registry host of an account in a region: `<account>.dkr.ecr.<region>.amazonaws.com`
/// (`.amazonaws.com.cn` in the China regions).
pub fn registry_host(account: &str, region: &str) -> String {
    let cn = if region.starts_with("cn-") { ".cn" } else { "" };
    format!("{account}.dkr.ecr.{region}.amazonaws.com{cn}")
}

/// Reads an ECR registry host (with or without `https://`): (account, region).
pub fn parse_registry_host(host: &str) -> Option<(String, String)> {
    let host = host
        .strip_prefix("https://")
        .unwrap_or(host)
        .trim_end_matches('/');
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (account, region) = rest.split_once(".dkr.ecr.")?;
    (is_account(account) && is_region(region)).then(|| (account.to_string(), region.to_string()))
}

/// Whether `a` is an AWS account id: 12 digits.
pub fn is_account(a: &str) -> bool {
    a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `r` reads as an AWS region: lowercase letters, digits and `-`.
pub fn is_region(r: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    !r.is_empty() && r.bytes().all(ok)
}

/// Any text as a valid AWS tag value: letters, digits, spaces and `_ . : / = + - @` kept,
/// every other character `_`, at most 256 characters.
pub fn tag_value(text: &str) -> String {
    let keep = |c: char| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c);
    text.chars()
        .map(|c| if keep(c) { c } else { '_' })
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    mirror_core::naming_properties! {
        name: |scope: &RepositoryScope| repository_name(Some("team/mirror"), scope),
        valid: matches_ecr_regex,
    }

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
    }
}
