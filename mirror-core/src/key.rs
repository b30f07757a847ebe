//! Build keys: which image a commit and its build inputs produce, and the tag that names it.
//!
//! A [`BuildKey`] is SHA-256 over a canonical, versioned encoding of `BuildKeyInputs`. The
//! same inputs give the same key on every machine, in every run and with every compiler
//! version (no `DefaultHasher`, no `Debug` or serde output in the hash); any input that changes
//! the built image changes the key. When the mirror already holds an image tagged with
//! [`BuildKey::tag`], the build is skipped.
//!
//! # What the key covers
//!
//! - The **commit** stands for the content of the build context: the key assumes the context
//!   is a clean checkout of that commit. A deployer that builds a dirty tree must add what
//!   differs (for example a digest of `git diff HEAD`) with
//!   [`BuildSpec::with_extra`](crate::BuildSpec::with_extra).
//! - The **Dockerfile** by path and by content, because it may live outside the repository or
//!   be generated.
//! - The **context path**, the **target stage**, the **platforms** and the **build args**.
//! - **Extra inputs** the deployer defines, such as the builder and its version.
//!
//! Paths are relative to the repository root, so that keys agree between checkouts in
//! different directories; absolute paths are rejected.
//!
//! # Secrets
//!
//! Build-arg values (and extra-input values) are hashed but never printed: the `Debug` output
//! of `BuildKeyInputs` shows their names only, and errors name the argument, never its
//! value. Keys end up in public tags, and a low-entropy secret hashed into one could be
//! recovered by trying candidates, so pass secrets as build secrets (which are not build
//! inputs), never as build args.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::validate_tag;

/// The version of the build-key encoding, hashed into every key.
///
/// Bump rule: bump it whenever the set of hashed inputs or their encoding changes (a field
/// added, removed or reordered, a normalisation changed, another length prefix). Every image
/// is then rebuilt once, instead of an image built from other inputs being reused. The pinned
/// test vectors in this module fail until the version is bumped and the vectors updated.
pub(crate) const KEY_VERSION: u32 = 1;

/// Separates build keys from any other SHA-256 over similar bytes.
const DOMAIN: &[u8] = b"mirror-core/build-key";

/// Characters of the commit id at the start of a tag.
const TAG_COMMIT_CHARS: usize = 12;

/// Hex characters of the key at the end of a tag (128 bits).
const TAG_KEY_HEX: usize = 32;

/// Everything that determines an image built from source.
///
/// Plain data: [`BuildKeyInputs::new`] fills the required inputs, the optional ones are set
/// as fields (a [`BuildSpec`](crate::BuildSpec) is the builder deployers use);
/// [`BuildKeyInputs::compute`] validates the inputs and returns the [`BuildKey`]. `Debug`
/// shows build-arg and extra-input names, never their values.
#[derive(Clone)]
pub(crate) struct BuildKeyInputs {
    /// The commit id (a git hash, or any id without whitespace).
    pub(crate) commit: String,
    /// The Dockerfile's path relative to the repository root; `\` counts as `/` and `./`
    /// prefixes are dropped.
    pub(crate) dockerfile_path: String,
    /// The digest of the Dockerfile's content.
    pub(crate) dockerfile_digest: Digest,
    /// The build context's path relative to the repository root, normalised as the
    /// Dockerfile's.
    pub(crate) context_path: String,
    /// The stage built (`--target`) rather than the last one; empty or `None` means the last
    /// stage, as it does for Docker.
    pub(crate) target: Option<String>,
    /// Target platforms, `os/arch[/variant]` (`linux/amd64`, `linux/arm/v7`). Order and
    /// repetitions do not matter; case is ignored.
    pub(crate) platforms: Vec<String>,
    /// Build args by name, hashed as given and never printed. Only the args the Dockerfile
    /// declares belong here (see
    /// [`build_args_from_env`](crate::builder::dockerfile::build_args_from_env)): any other
    /// would change the key without changing the image.
    pub(crate) build_args: BTreeMap<String, String>,
    /// Deployer-defined inputs (the builder and its version, a digest of local changes, a
    /// base-image digest...), hashed and never printed.
    pub(crate) extra: BTreeMap<String, String>,
}

impl BuildKeyInputs {
    /// The required inputs: the commit id, the Dockerfile's path and content, and the build
    /// context's path; no target, platforms, build args or extra inputs.
    ///
    /// Nothing is validated until [`compute`](Self::compute).
    pub fn new(
        commit: &str,
        dockerfile_path: &str,
        dockerfile_content: &[u8],
        context_path: &str,
    ) -> Self {
        BuildKeyInputs {
            commit: commit.to_string(),
            dockerfile_path: dockerfile_path.to_string(),
            dockerfile_digest: Digest::sha256_of(dockerfile_content),
            context_path: context_path.to_string(),
            target: None,
            platforms: Vec::new(),
            build_args: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Validates the inputs and computes their key.
    ///
    /// Fails with [`Error::Config`] for an empty commit id or one holding whitespace or
    /// control characters, an absolute or empty Dockerfile path, an absolute context path, a
    /// platform not of the form `os/arch[/variant]`, a target stage with whitespace, or an
    /// empty or malformed build-arg or extra-input name.
    pub fn compute(&self) -> Result<BuildKey> {
        let commit = normalise_commit(&self.commit)?;
        let encoding = self.encode(&commit)?;
        let key = BuildKey {
            digest: Digest::sha256_of(&encoding),
            commit,
        };
        // The tag is built to pass; this guards the construction against a change of rules.
        validate_tag(&key.tag())
            .map_err(|reason| Error::config("build key", format!("tag: {reason}")))?;
        Ok(key)
    }

    /// The canonical encoding hashed into the key.
    ///
    /// Every field is written as a one-byte field number, a `u64` big-endian length and the
    /// bytes; a list is written as its field number and a `u64` big-endian item count, then
    /// each item as a field. Every field is thus self-delimiting and no two input sets encode
    /// alike (commit `ab` with path `c` differs from commit `a` with path `bc`).
    ///
    /// The fields, in order (bump [`KEY_VERSION`] when this list or an encoding changes):
    ///
    /// 0. the domain `mirror-core/build-key`;
    /// 1. [`KEY_VERSION`], `u32` big-endian;
    /// 2. the commit id (hexadecimal ids lowercased);
    /// 3. the Dockerfile path, normalised;
    /// 4. the Dockerfile content digest as text, `sha256:<hex>`;
    /// 5. the context path, normalised (`.` for the root);
    /// 6. the target stage: a list of zero or one name (an empty name is none);
    /// 7. the platforms, lowercased, sorted and deduplicated: a list;
    /// 8. the build args, sorted by name: a list of name and value pairs (each pair two
    ///    items, so the count is twice the number of args);
    /// 9. the extra inputs, sorted by name: a list of pairs as for build args.
    fn encode(&self, commit: &str) -> Result<Vec<u8>> {
        let dockerfile_path = normalise_path("Dockerfile path", &self.dockerfile_path)?;
        if dockerfile_path == "." {
            return Err(Error::config(
                "Dockerfile path",
                format!("{:?} names no file", self.dockerfile_path),
            ));
        }
        let context_path = normalise_path("context path", &self.context_path)?;
        let target = self.target.as_deref().filter(|t| !t.is_empty());
        if let Some(target) = target {
            if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::config(
                    "target stage",
                    format!("{target:?} holds whitespace or control characters"),
                ));
            }
        }
        let platforms = self
            .platforms
            .iter()
            .map(|p| normalise_platform(p))
            .collect::<Result<BTreeSet<String>>>()?;
        for name in self.build_args.keys() {
            check_name("build arg", name, true)?;
        }
        for name in self.extra.keys() {
            check_name("extra build-key input", name, false)?;
        }

        let mut e = Encoder::default();
        e.field(0, DOMAIN);
        e.field(1, &KEY_VERSION.to_be_bytes());
        e.field(2, commit.as_bytes());
        e.field(3, dockerfile_path.as_bytes());
        e.field(4, self.dockerfile_digest.to_string().as_bytes());
        e.field(5, context_path.as_bytes());
        e.list(6, target.iter().map(|t| t.as_bytes()));
        e.list(7, platforms.iter().map(|p| p.as_bytes()));
        e.list(8, pairs(&self.build_args));
        e.list(9, pairs(&self.extra));
        Ok(e.0)
    }
}

impl fmt::Debug for BuildKeyInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildKeyInputs")
            .field("commit", &self.commit)
            .field("dockerfile_path", &self.dockerfile_path)
            .field("dockerfile_digest", &self.dockerfile_digest)
            .field("context_path", &self.context_path)
            .field("target", &self.target)
            .field("platforms", &self.platforms)
            .field("build_args", &self.build_args.keys().collect::<Vec<_>>())
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The key of an image built from a commit: a SHA-256 digest over its `BuildKeyInputs`.
///
/// `Display` writes [`BuildKey::tag`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildKey {
    digest: Digest,
    commit: String,
}

impl BuildKey {
    /// The key itself.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The commit id the key was computed for (hexadecimal ids lowercased).
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The tag of the image built for this key: `<commit>-<key>`, the first 12 characters of
    /// the commit id lowercased, then the first 32 hex characters of the key.
    ///
    /// Characters a tag cannot hold become `-`, and a `c` goes in front of a commit part that
    /// would start with `.` or `-`, so the tag passes [`validate_tag`] for every valid commit
    /// id. The commit
    /// part is for people reading a tag list; the key part is what identifies the image.
    pub fn tag(&self) -> String {
        let mut tag: String = self
            .commit
            .chars()
            .take(TAG_COMMIT_CHARS)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        if tag.starts_with(['.', '-']) {
            tag.insert(0, 'c');
        }
        let hex = self.digest.hex();
        tag.push('-');
        tag.push_str(hex.get(..TAG_KEY_HEX).unwrap_or(hex));
        tag
    }
}

impl fmt::Display for BuildKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag())
    }
}

/// The canonical encoding being written (see [`BuildKeyInputs::encode`]).
#[derive(Default)]
struct Encoder(Vec<u8>);

impl Encoder {
    fn field(&mut self, number: u8, bytes: &[u8]) {
        self.0.push(number);
        self.0
            .extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn list<'a>(&mut self, number: u8, items: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.0.push(number);
        self.0
            .extend_from_slice(&(items.len() as u64).to_be_bytes());
        for item in items {
            self.field(number, item);
        }
    }
}

/// A sorted map as a flat list: name, value, name, value...
fn pairs(map: &BTreeMap<String, String>) -> std::vec::IntoIter<&[u8]> {
    map.iter()
        .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()])
        .collect::<Vec<_>>()
        .into_iter()
}

/// Validates a commit id; hexadecimal ids (git, Mercurial) are lowercased because their case
/// does not matter.
fn normalise_commit(commit: &str) -> Result<String> {
    if commit.is_empty() {
        return Err(Error::config("commit id", "empty"));
    }
    if let Some(c) = commit.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::config(
            "commit id",
            format!(
                "{commit:?} holds {c:?}: whitespace and control characters \
             are not allowed (trim the output of `git rev-parse`)"
            ),
        ));
    }
    if commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(commit.to_ascii_lowercase())
    } else {
        Ok(commit.to_string())
    }
}

/// Normalises a path relative to the repository root: `\` becomes `/`, empty and `.`
/// segments go (`./a//b/` is `a/b`), the root is `.`. Absolute paths are rejected because
/// they differ between checkouts.
fn normalise_path(what: &str, path: &str) -> Result<String> {
    let slashed = path.replace('\\', "/");
    let bytes = slashed.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if slashed.starts_with('/') || drive {
        return Err(Error::config(
            "path",
            format!(
                "{what} {path:?} is absolute: give it relative to the repository root, so that \
             the build key is the same in every checkout"
            ),
        ));
    }
    let segments: Vec<&str> = slashed
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    Ok(if segments.is_empty() {
        ".".to_string()
    } else {
        segments.join("/")
    })
}

/// Lowercases and validates `os/arch[/variant]`.
fn normalise_platform(platform: &str) -> Result<String> {
    let lower = platform.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    let valid = (2..=3).contains(&parts.len())
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        });
    if valid {
        Ok(lower)
    } else {
        Err(Error::config(
            "platform",
            format!("{platform:?} is not of the form os/arch[/variant] (e.g. linux/amd64)"),
        ))
    }
}

/// Validates a build-arg name (`strict`: no `=`, whitespace or control characters, as
/// `--build-arg NAME=value` needs) or an extra-input name (non-empty).
fn check_name(what: &str, name: &str, strict: bool) -> Result<()> {
    if name.is_empty() {
        return Err(Error::config("name", format!("empty {what}")));
    }
    if strict
        && name
            .chars()
            .any(|c| c == '=' || c.is_whitespace() || c.is_control())
    {
        return Err(Error::config(
            "name",
            format!("{what} {name:?} holds '=', whitespace or control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::dockerfile::{build_args_from_env, declared_args};
    use proptest::prelude::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    const DOCKERFILE: &[u8] = b"FROM scratch AS runtime\nARG VERSION\n";

    /// `(name, value)` pairs as a map of build args or extra inputs.
    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn plain() -> BuildKeyInputs {
        BuildKeyInputs::new(COMMIT, "Dockerfile", b"", ".")
    }

    fn platforms(platforms: &[&str]) -> BuildKeyInputs {
        BuildKeyInputs {
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            ..plain()
        }
    }

    fn target(stage: &str) -> BuildKeyInputs {
        BuildKeyInputs {
            target: Some(stage.to_string()),
            ..plain()
        }
    }

    fn build_args(args: &[(&str, &str)]) -> BuildKeyInputs {
        BuildKeyInputs {
            build_args: map(args),
            ..plain()
        }
    }

    fn extra(name: &str, value: &str) -> BuildKeyInputs {
        BuildKeyInputs {
            extra: map(&[(name, value)]),
            ..plain()
        }
    }

    fn full_inputs() -> BuildKeyInputs {
        BuildKeyInputs {
            target: Some("runtime".into()),
            platforms: vec!["linux/arm64".into(), "linux/amd64".into()],
            build_args: map(&[("VERSION", "1.2.3")]),
            extra: map(&[("builder", "buildah 1.33")]),
            ..BuildKeyInputs::new(COMMIT, "./docker/Dockerfile", DOCKERFILE, ".")
        }
    }

    fn key(inputs: &BuildKeyInputs) -> BuildKey {
        inputs.compute().unwrap()
    }

    /// Pinned vectors, cross-checked against an independent implementation of the encoding
    /// documented on `BuildKeyInputs::encode`. Changing any expected value here requires
    /// bumping KEY_VERSION: a different key for the same inputs rebuilds every image, and the
    /// same key for different inputs would reuse a wrong one.
    #[test]
    fn pinned_test_vectors() {
        let full = key(&full_inputs());
        assert_eq!(
            full.digest().to_string(),
            "sha256:c10eec1b12f1e5ca5ae8a17cbedcf9b3c405f1ab617b3a34d244aeeacdad6b67"
        );
        assert_eq!(full.tag(), "0123456789ab-c10eec1b12f1e5ca5ae8a17cbedcf9b3");

        let minimal = key(&plain());
        assert_eq!(
            minimal.digest().to_string(),
            "sha256:993d57ca5f761ce676a87b8d465a01a18104dd7ded21dda98a354b424f5ca365"
        );
        assert_eq!(KEY_VERSION, 1, "bumped: update the pinned vectors above");
    }

    #[test]
    fn display_is_the_tag() {
        let k = key(&full_inputs());
        assert_eq!(k.to_string(), k.tag());
        assert_eq!(k.commit(), COMMIT);
    }

    #[test]
    fn fields_are_delimited() {
        let base = |commit: &str, path: &str| BuildKeyInputs::new(commit, path, b"", "ctx");
        assert_ne!(key(&base("ab", "c")), key(&base("a", "bc")));
        let with_args = |args: &[(&str, &str)]| key(&build_args(args));
        assert_ne!(with_args(&[("A", "bc")]), with_args(&[("Ab", "c")]));
        assert_ne!(
            with_args(&[("A", "1"), ("B", "2")]),
            with_args(&[("A", "1B2")])
        );
        assert_ne!(with_args(&[("A", "")]), with_args(&[]));
        assert_ne!(key(&build_args(&[("A", "1")])), key(&extra("A", "1")));
        assert_ne!(key(&target("linux")), key(&platforms(&["linux/amd64"])));
    }

    #[test]
    fn paths_are_normalised() {
        let k = |df: &str, ctx: &str| key(&BuildKeyInputs::new(COMMIT, df, b"x", ctx));
        let reference = k("docker/Dockerfile", ".");
        for (df, ctx) in [
            ("./docker/Dockerfile", "./"),
            ("././docker//Dockerfile", ""),
            (".\\docker\\Dockerfile", "."),
            ("docker/./Dockerfile", "./."),
        ] {
            assert_eq!(k(df, ctx), reference, "{df:?} {ctx:?}");
        }
        assert_eq!(k("Dockerfile", "app/"), k("Dockerfile", "./app"));
        assert_ne!(k("Dockerfile", "app"), k("Dockerfile", "."));
    }

    #[test]
    fn absolute_and_empty_paths_are_rejected() {
        for (df, ctx) in [
            ("/src/Dockerfile", "."),
            ("C:\\src\\Dockerfile", "."),
            ("Dockerfile", "/home/ci/checkout"),
            ("Dockerfile", "d:/x"),
            ("", "."),
            ("./", "."),
        ] {
            let err = BuildKeyInputs::new(COMMIT, df, b"", ctx)
                .compute()
                .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{df:?} {ctx:?}: {err}");
        }
    }

    #[test]
    fn hex_commits_ignore_case() {
        let k = |c: &str| key(&BuildKeyInputs::new(c, "Dockerfile", b"", "."));
        assert_eq!(k("ABCDEF0123"), k("abcdef0123"));
        assert_eq!(k("ABCDEF0123").commit(), "abcdef0123");
        // Other ids keep their case in the key; only the tag lowercases them.
        assert_ne!(k("Release-A"), k("release-a"));
        assert!(k("Release-A").tag().starts_with("release-a-"));
    }

    #[test]
    fn tags_map_characters_tags_cannot_hold() {
        let tag = |c: &str| key(&BuildKeyInputs::new(c, "Dockerfile", b"", ".")).tag();
        assert!(tag("feature/ü+x").starts_with("feature---x-"));
        assert!(tag(".hidden").starts_with("c.hidden-"));
        assert!(tag("-x").starts_with("c-x-"));
        assert!(tag("ééé").starts_with("c----"));
        let t = tag(COMMIT);
        assert_eq!(t.len(), 12 + 1 + 32);
        assert!(t.starts_with("0123456789ab-"));
    }

    #[test]
    fn invalid_commits_give_a_clear_error() {
        for commit in [
            "", " ", " abc", "abc ", "ab cd", "abc\n", "\t", "a\u{0}b", "a\u{a0}b",
        ] {
            match BuildKeyInputs::new(commit, "Dockerfile", b"", ".").compute() {
                Err(e @ Error::Config { .. }) => {
                    assert!(e.to_string().contains("commit"), "{e}")
                }
                other => panic!("{commit:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_platforms_args_and_targets_are_rejected() {
        for bad in [
            platforms(&["linux"]),
            platforms(&["linux/amd64/v8/x"]),
            platforms(&["linux//amd64"]),
            platforms(&["linux/amd 64"]),
            build_args(&[("", "x")]),
            build_args(&[("A=B", "x")]),
            build_args(&[("A B", "x")]),
            extra("", "x"),
            target("a b"),
        ] {
            assert!(
                matches!(bad.compute(), Err(Error::Config { .. })),
                "{bad:?}"
            );
        }
        // An empty target is the last stage, as for Docker.
        assert_eq!(key(&target("")), key(&plain()));
        // Platform case does not matter.
        assert_eq!(
            key(&platforms(&["Linux/AMD64"])),
            key(&platforms(&["linux/amd64"]))
        );
    }

    #[test]
    fn debug_shows_build_arg_names_not_values() {
        let mut inputs = full_inputs();
        inputs
            .build_args
            .insert("NPM_TOKEN".into(), "s3cr3t-value".into());
        inputs
            .extra
            .insert("diff".into(), "hidden-extra-value".into());
        let debug = format!("{inputs:?}");
        assert!(
            debug.contains("NPM_TOKEN") && debug.contains("VERSION"),
            "{debug}"
        );
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert!(!debug.contains("1.2.3"), "{debug}");
        assert!(!debug.contains("hidden-extra-value"), "{debug}");
        let key_debug = format!("{:?}", key(&inputs));
        assert!(!key_debug.contains("s3cr3t-value"), "{key_debug}");
    }

    #[test]
    fn undeclared_environment_variables_do_not_change_the_key() {
        let dockerfile = "ARG BASE=debian\nFROM $BASE\nARG VERSION\nRUN <<EOF\nARG HIDDEN\nEOF\n";
        let declared = declared_args(dockerfile);
        let k = |env: &[(&str, &str)]| {
            key(&BuildKeyInputs {
                build_args: build_args_from_env(&declared, env.iter().copied()),
                ..BuildKeyInputs::new(COMMIT, "Dockerfile", dockerfile.as_bytes(), ".")
            })
        };
        let reference = k(&[("VERSION", "1"), ("BASE", "debian:12")]);
        assert_eq!(
            reference,
            k(&[
                ("HOME", "/root"),
                ("VERSION", "1"),
                ("HIDDEN", "x"),
                ("BASE", "debian:12")
            ])
        );
        assert_ne!(reference, k(&[("VERSION", "2"), ("BASE", "debian:12")]));
        assert_ne!(reference, k(&[("VERSION", "1")]));
    }

    /// Build inputs with the Dockerfile's content rather than its digest, so that a test can
    /// vary the content.
    #[derive(Debug, Clone)]
    struct Parts {
        inputs: BuildKeyInputs,
        content: Vec<u8>,
    }

    impl Parts {
        fn inputs(&self) -> BuildKeyInputs {
            BuildKeyInputs {
                dockerfile_digest: Digest::sha256_of(&self.content),
                ..self.inputs.clone()
            }
        }

        fn key(&self) -> BuildKey {
            key(&self.inputs())
        }
    }

    const PLATFORMS: [&str; 6] = [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
        "linux/s390x",
        "windows/amd64",
        "linux/riscv64",
    ];

    fn parts() -> impl Strategy<Value = Parts> {
        (
            prop_oneof![
                "[0-9a-f]{7,40}",
                "[A-Za-z0-9._-]{1,40}",
                "[^\\s\\p{Cc}]{1,20}"
            ],
            "[a-z]{1,8}(/[a-z]{1,8}){0,2}",
            prop::collection::vec(any::<u8>(), 0..64),
            "(\\.|[a-z]{1,8}(/[a-z]{1,8}){0,2})",
            prop::option::of("[a-z][a-z0-9]{0,8}"),
            prop::sample::subsequence(PLATFORMS[..5].to_vec(), 0..5),
            prop::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", ".{0,12}", 0..5),
            prop::collection::btree_map("[a-z]{1,8}", ".{0,12}", 0..3),
        )
            .prop_map(
                |(commit, df, content, ctx, target, platforms, build_args, extra)| Parts {
                    inputs: BuildKeyInputs {
                        target,
                        platforms: platforms.into_iter().map(String::from).collect(),
                        build_args,
                        extra,
                        ..BuildKeyInputs::new(&commit, &df, &content, &ctx)
                    },
                    content,
                },
            )
    }

    proptest! {
        #[test]
        fn keys_are_deterministic(p in parts()) {
            prop_assert_eq!(p.key(), p.key());
            prop_assert_eq!(p.key(), p.clone().key());
        }

        #[test]
        fn order_of_build_args_and_platforms_is_irrelevant(
            (p, args, platforms) in parts().prop_flat_map(|p| {
                let args: Vec<(String, String)> = p.inputs.build_args.clone().into_iter().collect();
                let mut platforms = p.inputs.platforms.clone();
                platforms.extend(p.inputs.platforms.iter().take(2).cloned());
                (Just(p), Just(args).prop_shuffle(), Just(platforms).prop_shuffle())
            })
        ) {
            let shuffled = BuildKeyInputs {
                build_args: args.into_iter().collect(),
                platforms,
                ..p.inputs()
            };
            prop_assert_eq!(key(&shuffled), p.key());
        }

        #[test]
        fn changing_any_single_input_changes_the_key(p in parts(), byte in any::<u8>(), value in ".{0,8}") {
            let reference = p.key();
            let mut variants: Vec<(&str, Parts)> = Vec::new();
            let q = &p.inputs;
            let mut v = p.clone(); v.inputs.commit.push('z'); variants.push(("commit", v));
            let mut v = p.clone(); v.inputs.dockerfile_path.push('x'); variants.push(("dockerfile path", v));
            let mut v = p.clone(); v.content.push(byte); variants.push(("content", v));
            let mut v = p.clone();
            v.inputs.context_path = if q.context_path == "." { "sub".into() } else { format!("{}x", q.context_path) };
            variants.push(("context", v));
            let mut v = p.clone();
            v.inputs.target = match &q.target { Some(t) => Some(format!("{t}x")), None => Some("build".into()) };
            variants.push(("target", v));
            if q.target.is_some() {
                let mut v = p.clone(); v.inputs.target = None; variants.push(("no target", v));
            }
            let mut v = p.clone();
            let vp = &mut v.inputs.platforms;
            if vp.is_empty() { vp.push(PLATFORMS[5].into()) } else { vp[0] = PLATFORMS[5].into() }
            variants.push(("one platform", v));
            if let Some((name, old)) = q.build_args.iter().next() {
                let mut v = p.clone();
                v.inputs.build_args.insert(name.clone(), format!("{old}{value}x"));
                variants.push(("arg value", v));
            }
            let mut v = p.clone(); v.inputs.build_args.insert("ADDED_ARG_NOT_GENERATED".into(), value.clone()); variants.push(("added arg", v));
            let mut v = p.clone(); v.inputs.extra.insert("zz-added".into(), value); variants.push(("added extra", v));
            for (what, variant) in variants {
                prop_assert_ne!(&variant.key(), &reference, "changing the {} kept the key", what);
            }
        }

        #[test]
        fn tags_are_valid_for_every_accepted_commit(commit in prop_oneof![any::<String>(), "\\PC{1,30}", "[.-][a-zA-Z0-9._/+-]{0,20}"]) {
            let result = BuildKeyInputs::new(&commit, "Dockerfile", b"", ".").compute();
            let acceptable = !commit.is_empty() && !commit.chars().any(|c| c.is_whitespace() || c.is_control());
            match result {
                Ok(k) => {
                    prop_assert!(acceptable, "{:?} accepted", commit);
                    let tag = k.tag();
                    prop_assert!(validate_tag(&tag).is_ok(), "{:?} gave tag {:?}", commit, tag);
                    prop_assert!(tag.ends_with(&k.digest().hex()[..32]));
                }
                Err(e) => {
                    prop_assert!(!acceptable, "{:?} rejected: {}", commit, e);
                    let is_config = matches!(e, Error::Config { .. });
                    prop_assert!(is_config, "{}", e);
                }
            }
        }
    }
}
