//! Image references: parse, normalise and validate as Docker does.
//!
//! `nginx` becomes `docker.io/library/nginx:latest`; `host:5000/team/app:1.2@sha256:…` keeps
//! host, port, tag and digest. The first path component is a registry host when it contains a
//! `.` or a `:`, is `localhost`, or is a bracketed IPv6 address; otherwise the reference is on
//! Docker Hub. Repository components follow the distribution grammar
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
//!
//! Written by hand rather than with a crate because the only maintained parsers either pull in a
//! whole client (`oci-client`) or do not report *why* a reference is invalid, which the CLI and
//! the deployer must show.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Docker Hub's canonical registry name.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub(crate) const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Longest repository name (registry excluded) the distribution spec allows.
pub(crate) const MAX_REPOSITORY_LEN: usize = 255;
/// Longest tag.
pub(crate) const MAX_TAG_LEN: usize = 128;

/// A normalised image reference: `registry/repository[:tag][@digest]`.
///
/// At least one of tag and digest is set: a reference without either gets the tag `latest`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference the way `docker pull` reads it.
    ///
    /// ```
    /// use mirror_core::Reference;
    /// let r = Reference::parse("nginx").unwrap();
    /// assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
    /// let r = Reference::parse("localhost:5000/team/app:1.2").unwrap();
    /// assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "team/app", Some("1.2")));
    /// assert!(Reference::parse("Team/App").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidReference {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("empty reference".into()));
        }
        if input.trim() != input || input.chars().any(char::is_whitespace) {
            return Err(invalid("references contain no whitespace".into()));
        }
        if input.contains("://") {
            return Err(invalid(
                "a reference has no URL scheme: write host/repository:tag".into(),
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|e| invalid(e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(&invalid)?;
        }
        if name.is_empty() {
            return Err(invalid("missing repository name".into()));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_host(first) => {
                let host = normalise_host(first).map_err(&invalid)?;
                // Docker reads `MyReg/app` as registry `MyReg` only because of its capitals;
                // lowercased it would read as a Docker Hub path: refuse the ambiguity.
                if !looks_like_host(&host) {
                    return Err(invalid(format!(
                        "{first:?} is read as a registry host only because of its capitals; \
                         write a host with a domain or port, or the repository in lowercase"
                    )));
                }
                (host, remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository).map_err(&invalid)?;
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Builds a reference from parts, validating each.
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self> {
        let shown = format!("{registry}/{repository}");
        let invalid = |reason: String| Error::InvalidReference {
            input: shown.clone(),
            reason,
        };
        let registry = normalise_host(registry).map_err(&invalid)?;
        validate_repository(repository).map_err(&invalid)?;
        if let Some(t) = tag {
            validate_tag(t).map_err(&invalid)?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(invalid("a tag or a digest is required".into()));
        }
        Ok(Reference {
            registry,
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            // Constructors guarantee one of the two.
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository pinned to `digest` (tag dropped): what Kubernetes should pull.
    pub fn pinned(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository with another tag (digest dropped).
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        Reference::new(&self.registry, &self.repository, Some(tag), None)
    }

    /// True when the registry host is a loopback address and so talks plain HTTP by default.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        write_tag_and_digest(f, self.tag.as_deref(), self.digest.as_ref())
    }
}

/// Writes the `[:tag][@digest]` end of a reference (a [`Reference`], a source id).
pub(crate) fn write_tag_and_digest(
    f: &mut fmt::Formatter<'_>,
    tag: Option<&str>,
    digest: Option<&Digest>,
) -> fmt::Result {
    if let Some(t) = tag {
        write!(f, ":{t}")?;
    }
    if let Some(d) = digest {
        write!(f, "@{d}")?;
    }
    Ok(())
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn looks_like_host(component: &str) -> bool {
    component.contains('.')
        || component.contains(':')
        || component == "localhost"
        || component.starts_with('[')
        || component.chars().any(|c| c.is_ascii_uppercase())
}

/// Validates a registry host (`name[:port]`, `ipv4[:port]`, `[ipv6][:port]`) and normalises
/// Docker Hub's aliases to `docker.io`.
pub fn normalise_host(host: &str) -> std::result::Result<String, String> {
    if host.is_empty() {
        return Err("empty registry host".into());
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("registry host {host:?}: unclosed '['"))?;
        let addr = &rest[..end];
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("registry host {host:?}: {addr:?} is not an IPv6 address"))?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("registry host {host:?}: junk after ']'"))?,
            ),
        };
        (&host[..end + 2], port)
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!(
                "registry host {host:?}: port {p:?} is not a number 1-65535"
            ));
        }
        if p.parse::<u16>() == Ok(0) {
            return Err(format!("registry host {host:?}: port 0 is not valid"));
        }
    }
    if !name.starts_with('[') {
        for label in name.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "registry host {host:?}: {label:?} is not a valid host name label"
                ));
            }
        }
    }
    let lower = host.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => lower,
    })
}

/// True for `localhost`, 127.0.0.0/8 and `[::1]`, with or without a port.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Validates a repository path against the distribution grammar.
pub fn validate_repository(repository: &str) -> std::result::Result<(), String> {
    if repository.is_empty() {
        return Err("empty repository name".into());
    }
    if repository.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "repository name is {} characters, the limit is {MAX_REPOSITORY_LEN}",
            repository.len()
        ));
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    for component in repository.split('/') {
        validate_component(component)
            .map_err(|r| format!("repository component {component:?}: {r}"))?;
    }
    Ok(())
}

fn validate_component(c: &str) -> std::result::Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err("must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or one or more '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return Err("allowed characters are a-z, 0-9, '.', '_', '-'"),
        }
        if i >= b.len() || !alnum(b[i]) || i == start {
            return Err("separators ('.', '_', '__', '-') must sit between letters or digits");
        }
    }
    Ok(())
}

/// Validates a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    if tag.is_empty() {
        return Err("empty tag".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag is {} characters, the limit is {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    let b = tag.as_bytes();
    if !(b[0].is_ascii_alphanumeric() || b[0] == b'_') {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if !b
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "tag {tag:?} may only hold letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(norm("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            norm("index.docker.io/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            norm("docker.io/library/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b/c:v1"), "localhost:5000/a/b/c:v1");
        assert_eq!(
            norm("ghcr.io/org/app:v1.2.3-rc_1"),
            "ghcr.io/org/app:v1.2.3-rc_1"
        );
        assert_eq!(
            norm(&format!("nginx@{D}")),
            format!("docker.io/library/nginx@{D}")
        );
        assert_eq!(
            norm(&format!("nginx:1@{D}")),
            format!("docker.io/library/nginx:1@{D}")
        );
        assert_eq!(norm("[::1]:5000/app:x"), "[::1]:5000/app:x");
        assert_eq!(
            norm("127.0.0.1:5000/a__b-c.d"),
            "127.0.0.1:5000/a__b-c.d:latest"
        );
    }

    #[test]
    fn manifest_reference_prefers_the_digest() {
        let r = Reference::parse(&format!("h.io/a:1@{D}")).unwrap();
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(
            Reference::parse("h.io/a:1").unwrap().manifest_reference(),
            "1"
        );
    }

    #[test]
    fn rejects_malformed_references_with_a_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("host.io/Team/app", "lowercase"),
            ("nginx:", "empty tag"),
            ("nginx:-x", "must start"),
            ("nginx:a/b", "port"),
            ("nginx@sha256:abc", "hex"),
            ("http://host/app", "scheme"),
            ("host.io//app", "empty path"),
            ("host.io/app-", "start and end"),
            ("host.io/a..b", "separators"),
            ("host.io/a b", "whitespace"),
            ("host:99999/app", "port"),
            ("ho_st.io:1/app", "host name"),
            ("[::1/app", "unclosed"),
        ] {
            let err = Reference::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidReference { .. }),
                "{bad:?} gave {err:?}"
            );
            assert!(
                err.to_string().contains(why),
                "{bad:?}: {err} lacks {why:?}"
            );
        }
        let long_tag = format!("app:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_repo = format!("h.io/{}", "a".repeat(256));
        assert!(Reference::parse(&long_repo).is_err());
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:80",
            "127.3.4.5",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_display_round_trips(s in "\\PC{0,80}") {
            if let Ok(r) = Reference::parse(&s) {
                let again = Reference::parse(&r.to_string()).unwrap();
                proptest::prop_assert_eq!(again, r);
            }
        }
    }
}
