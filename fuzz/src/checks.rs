// The invariants every parser of untrusted input must keep, shared by the cargo-fuzz targets
// (`fuzz/fuzz_targets/*.rs`, through `mirror_fuzz::checks`) and the CI regression test
// (`tests/tests/suite/parsers.rs`, through `#[path = "../../../fuzz/src/checks.rs"] mod checks;`).
//
// Each function takes one input, runs the parser, and panics (with the input in the message)
// when an invariant is broken. Errors are fine; panics inside the parser and results that
// contradict themselves are not. Nothing here touches the network or spawns a process.
//
// Only `mirror_core`, `serde_json` and `std` may be used here: both crates that include this
// file have those dependencies and no others in common.

use std::path::Path;

use mirror_core::builder::dockerfile::declared_args;
use mirror_core::kit::store::http::auth::{parse_challenge, Challenge};
use mirror_core::kit::store::http::credentials::{Credentials, DockerConfig};
use mirror_core::kit::store::http::parse_next_link;
use mirror_core::kit::store::layout::parse_oci_location;
use mirror_core::media::{
    ParsedManifest, RawManifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST,
};
use mirror_core::reference::{normalise_host, validate_repository, validate_tag};
use mirror_core::{Digest, Error, Reference, Source};

/// Every manifest media type `RawManifest` knows, readable or not.
pub const KNOWN_MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
];

/// The registries the docker `config.json` check asks credentials for.
pub const CONFIG_REGISTRIES: &[&str] = &["registry.example.com", "docker.io"];

/// A finding of the fuzz runs that the library has not fixed yet (see "Findings" in
/// `fuzz/README.md`).
pub struct OpenFinding {
    /// The id used in `fuzz/README.md`.
    pub id: &'static str,
    /// The fuzz target whose check it breaks.
    pub target: &'static str,
    /// Its minimised input, `fuzz/artifacts/<target>/<artifact>`.
    pub artifact: &'static str,
}

/// Open findings. While one is listed, the checks tolerate the inputs that trigger it (so a
/// fuzz run goes on to find something new instead of re-finding it) unless strict mode is on
/// ([`set_strict`]). Delete an entry with the library fix; `tests/tests/suite/parsers.rs` says when.
pub const OPEN_FINDINGS: &[OpenFinding] = &[];

thread_local! {
    static STRICT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Strict mode (for this thread): open findings are reported like any other failure.
pub fn set_strict(on: bool) {
    STRICT.with(|s| s.set(on));
}

/// True when finding `id` is open, strict mode is off, and `triggered` says this input
/// triggers it: then the assertion it breaks is skipped.
pub fn tolerated(id: &str, triggered: impl FnOnce() -> bool) -> bool {
    !STRICT.with(|s| s.get()) && OPEN_FINDINGS.iter().any(|f| f.id == id) && triggered()
}

/// F1: the first component is a registry host only because it holds an upper-case letter
/// (`MyReg/app`); lowercased, it reads as a Docker Hub path.
pub fn triggers_f1(input: &str) -> bool {
    let Some((first, _)) = input.split_once('/') else {
        return false;
    };
    first.chars().any(|c| c.is_ascii_uppercase())
        && !first.contains(['.', ':'])
        && !first.starts_with('[')
        && !first.eq_ignore_ascii_case("localhost")
}

/// F4: a registry source whose host is `oci` with a port, written in another case
/// (`OCI:5000/app`): lowercased, its `Display` (`oci:5000/app:latest`) reads as a layout.
pub fn triggers_f4(input: &str) -> bool {
    !input.starts_with("oci:")
        && input
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("oci:"))
}

/// F2: a layout path that ends in `@sha256` or `@sha512`, without a tag (`oci:x@sha256`): it
/// is accepted, but its `Display` (`oci:x@sha256:latest`) is refused as a digest.
pub fn triggers_f2(input: &str) -> bool {
    matches!(parse_oci_location(input), Ok((p, None))
        if p.to_str().is_some_and(|p| p.ends_with("@sha256") || p.ends_with("@sha512")))
}

/// F5: a manifest body that is not UTF-8 (so not JSON, RFC 8259 section 8.1) is accepted
/// when the invalid bytes sit in a string the parser skips (an unknown field).
pub fn triggers_f5(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_err()
}

/// The `auths` key normalisation of docker (`https://host/v1/` → `host`), to tell which keys
/// name the same registry.
fn auth_key_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key)
        .trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

/// The `auths` object of a config text (also in the array form serde accepts).
fn auths_of(config: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let v = serde_json::from_slice::<serde_json::Value>(config).ok()?;
    let auths = match v {
        serde_json::Value::Object(mut m) => m.remove("auths"),
        serde_json::Value::Array(mut a) if !a.is_empty() => Some(a.swap_remove(0)),
        _ => None,
    };
    match auths {
        Some(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// F3: two `auths` keys name the same registry (`docker.io` and
/// `https://index.docker.io/v1/`): which one `credentials_for` uses depends on `HashMap`
/// order, so the answer changes from one parse (one process) to the next.
pub fn triggers_f3(config: &[u8], registry: &str) -> bool {
    auths_of(config).is_some_and(|m| m.keys().filter(|k| auth_key_host(k) == registry).count() > 1)
}

/// Fuzz input bytes as text: invalid UTF-8 is replaced, not dropped, so no input is wasted.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

// ---------------------------------------------------------------------------------------------
// Digests

/// `Digest::parse`: a parsed digest is canonical text (its `Display` is the input) and
/// round-trips.
pub fn digest(input: &str) {
    let d = match Digest::parse(input) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                matches!(e, Error::InvalidDigest { .. }),
                "Digest::parse({input:?}) failed with the wrong error: {e:?}"
            );
            return;
        }
    };
    let shown = d.to_string();
    assert_eq!(shown, input, "digest {input:?} is displayed as {shown:?}");
    assert_eq!(
        Digest::parse(&shown).ok(),
        Some(d.clone()),
        "{input:?} does not round-trip"
    );
    let expected_len = match d.algorithm().as_str() {
        "sha256" => 64,
        "sha512" => 128,
        other => panic!("{input:?}: unexpected algorithm {other}"),
    };
    assert_eq!(d.hex().len(), expected_len, "{input:?}: hex length");
    assert!(
        d.hex()
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{input:?}: hex is not lowercase hexadecimal"
    );
    assert_eq!(d.short().len(), 12);
}

// ---------------------------------------------------------------------------------------------
// Image references

/// `Reference::parse`: a parsed reference is valid part by part, and its `Display` re-parses
/// to an equal reference (and is a fixed point).
pub fn reference(input: &str) {
    let r = match Reference::parse(input) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                matches!(e, Error::InvalidReference { .. }),
                "Reference::parse({input:?}) failed with the wrong error: {e:?}"
            );
            let _ = e.to_string();
            return;
        }
    };
    assert!(
        r.tag().is_some() || r.digest().is_some(),
        "{input:?}: neither tag nor digest"
    );
    if let Some(t) = r.tag() {
        assert!(
            validate_tag(t).is_ok(),
            "{input:?}: invalid tag {t:?} accepted"
        );
    }
    assert!(
        validate_repository(r.repository()).is_ok(),
        "{input:?}: invalid repository {:?} accepted",
        r.repository()
    );
    assert_eq!(
        normalise_host(r.registry()).as_deref(),
        Ok(r.registry()),
        "{input:?}: registry {:?} is not normalised",
        r.registry()
    );
    let rebuilt = Reference::new(r.registry(), r.repository(), r.tag(), r.digest().cloned())
        .unwrap_or_else(|e| panic!("{input:?}: Reference::new refuses the parsed parts: {e}"));
    assert_eq!(
        rebuilt, r,
        "{input:?}: Reference::new gives another reference"
    );
    let m = r.manifest_reference();
    assert!(
        Digest::parse(&m).is_ok() || validate_tag(&m).is_ok(),
        "{input:?}: manifest reference {m:?} is neither digest nor tag"
    );
    if tolerated("F1", || triggers_f1(input)) {
        return;
    }
    let shown = r.to_string();
    let again = Reference::parse(&shown)
        .unwrap_or_else(|e| panic!("{input:?} parses to {shown:?}, which does not parse: {e}"));
    assert_eq!(
        again, r,
        "{input:?} parses to {shown:?}, which parses to another reference"
    );
    assert_eq!(
        again.to_string(),
        shown,
        "{input:?}: Display is not a fixed point"
    );
}

/// `parse_oci_location` and `Source::parse` on `input` and on `oci:` + `input` (so that
/// random bytes reach the layout branch).
pub fn oci_source_fuzz(input: &str) {
    oci_source(input);
    if !input.starts_with("oci:") {
        oci_source(&format!("oci:{input}"));
    }
}

/// `parse_oci_location`: the parts re-assemble into the input; `Source::parse`: the `Display`
/// of a parsed source re-parses to an equal source, and the branch taken matches the prefix.
pub fn oci_source(input: &str) {
    match parse_oci_location(input) {
        Ok((path, tag)) => {
            assert!(input.starts_with("oci:"), "{input:?} accepted without oci:");
            let path = path
                .to_str()
                .unwrap_or_else(|| panic!("{input:?}: path is not UTF-8"));
            assert!(!path.is_empty(), "{input:?}: empty path accepted");
            let rebuilt = match &tag {
                Some(t) => {
                    assert!(
                        validate_tag(t).is_ok(),
                        "{input:?}: invalid tag {t:?} accepted"
                    );
                    format!("oci:{path}:{t}")
                }
                None => format!("oci:{path}"),
            };
            assert_eq!(
                rebuilt, input,
                "{input:?}: path and tag do not make up the input"
            );
        }
        Err(e) => assert!(
            matches!(e, Error::InvalidReference { .. }),
            "parse_oci_location({input:?}) failed with the wrong error: {e:?}"
        ),
    }
    let src = match Source::parse(input) {
        Ok(s) => s,
        Err(_) => return,
    };
    match &src {
        Source::Layout { tag, .. } => {
            assert!(input.starts_with("oci:"), "{input:?}: layout without oci:");
            assert!(
                validate_tag(tag).is_ok(),
                "{input:?}: invalid layout tag {tag:?}"
            );
        }
        Source::Registry(_) => {
            assert!(
                !input.starts_with("oci:"),
                "{input:?}: oci: read as a registry"
            );
        }
    }
    if tolerated("F1", || triggers_f1(input))
        || tolerated("F2", || triggers_f2(input))
        || tolerated("F4", || triggers_f4(input))
    {
        return;
    }
    let shown = src.to_string();
    let again = Source::parse(&shown).unwrap_or_else(|e| {
        panic!("source {input:?} is shown as {shown:?}, which does not parse: {e}")
    });
    assert_eq!(
        again, src,
        "source {input:?} is shown as {shown:?}, which parses to another source"
    );
}

// ---------------------------------------------------------------------------------------------
// WWW-Authenticate

/// Writes a challenge back as a header, quoting every value.
pub fn render_challenge(c: &Challenge) -> String {
    fn quote(v: &str) -> String {
        let mut s = String::from("\"");
        for ch in v.chars() {
            if ch == '"' || ch == '\\' {
                s.push('\\');
            }
            s.push(ch);
        }
        s.push('"');
        s
    }
    match c {
        Challenge::Basic => "Basic realm=\"registry\"".to_string(),
        Challenge::Bearer {
            realm,
            service,
            scope,
            error,
        } => {
            let mut h = format!("Bearer realm={}", quote(realm));
            for (k, v) in [("service", service), ("scope", scope), ("error", error)] {
                if let Some(v) = v {
                    h.push_str(&format!(",{k}={}", quote(v)));
                }
            }
            h
        }
        // `Challenge` may grow; nothing to compare then.
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

/// `parse_challenge`: a bearer challenge has a non-empty realm, and writing the parsed
/// challenge back as a header parses to the same challenge.
pub fn challenge(input: &str) {
    let Some(c) = parse_challenge(input) else {
        return;
    };
    if let Challenge::Bearer { realm, .. } = &c {
        assert!(
            !realm.is_empty(),
            "{input:?}: bearer challenge with an empty realm"
        );
    }
    let rendered = render_challenge(&c);
    if rendered.is_empty() {
        return;
    }
    assert_eq!(
        parse_challenge(&rendered).as_ref(),
        Some(&c),
        "{input:?} parses to {c:?}, written back as {rendered:?}, which parses differently"
    );
}

// ---------------------------------------------------------------------------------------------
// Link

/// `parse_next_link`: the target is non-empty text of the header, and a header written from
/// it (alone, or after a `prev` link) gives it back.
pub fn link(input: &str) {
    let Some(t) = parse_next_link(input) else {
        return;
    };
    assert!(!t.is_empty(), "{input:?}: empty next link");
    assert!(
        input.contains(t.as_str()),
        "{input:?}: target {t:?} is not in the header"
    );
    // Commas may appear inside `<…>` (RFC 8288); they never split a target.
    let alone = format!("<{t}>; rel=\"next\"");
    assert_eq!(
        parse_next_link(&alone).as_deref(),
        Some(t.as_str()),
        "{input:?}: {alone:?} does not give the target back"
    );
    let second = format!("</v2/x/tags/list?n=1>; rel=\"prev\", <{t}>; rel=next");
    assert_eq!(
        parse_next_link(&second).as_deref(),
        Some(t.as_str()),
        "{input:?}: {second:?} does not give the target back"
    );
}

// ---------------------------------------------------------------------------------------------
// Manifests and indexes

/// Splits a fuzz input into a declared `Content-Type` (first line; `None` when empty) and the
/// body (the rest). The corpus files are written in that shape.
pub fn split_manifest_input(data: &[u8]) -> (Option<String>, &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let ct = String::from_utf8_lossy(&data[..i]).into_owned();
            (if ct.is_empty() { None } else { Some(ct) }, &data[i + 1..])
        }
        None => (None, data),
    }
}

fn check_parsed(what: &str, raw: &RawManifest, parsed: &ParsedManifest, body: &[u8]) {
    // What was accepted is JSON with schemaVersion 2, and says what the parse says.
    let doc: serde_json::Value = match serde_json::from_slice(body) {
        Ok(doc) => doc,
        // A lone surrogate escape (`"\ud800"`) is JSON by the grammar (RFC 8259 section 8.2)
        // that a Rust string cannot hold: nothing to compare with then.
        Err(e) if e.to_string().contains("surrogate") => return,
        Err(_) if tolerated("F5", || triggers_f5(body)) => return,
        Err(e) => panic!("{what}: accepted a body that is not JSON: {e}"),
    };
    assert_eq!(
        doc.get("schemaVersion").and_then(|v| v.as_u64()),
        Some(2),
        "{what}: accepted without schemaVersion 2"
    );
    if let Some(mt) = doc.get("mediaType").and_then(|v| v.as_str()) {
        assert_eq!(
            mt, raw.media_type,
            "{what}: mediaType field differs from media type"
        );
    }
    let count = |field: &str| {
        doc.get(field)
            .and_then(|v| v.as_array())
            .map(|a| a.len())
            .unwrap_or(0)
    };
    let kind = raw
        .kind("fuzz")
        .unwrap_or_else(|e| panic!("{what}: parsed, but kind() fails: {e}"));
    match parsed {
        ParsedManifest::Image { config, layers } => {
            assert_eq!(
                kind,
                mirror_core::media::ManifestKind::Image,
                "{what}: kind"
            );
            assert_eq!(layers.len(), count("layers"), "{what}: layer count");
            assert_eq!(
                doc.pointer("/config/digest").and_then(|v| v.as_str()),
                Some(config.digest.to_string().as_str()),
                "{what}: config digest"
            );
            for d in std::iter::once(config).chain(layers) {
                digest(&d.digest.to_string());
            }
        }
        ParsedManifest::Index { manifests } => {
            assert_eq!(
                kind,
                mirror_core::media::ManifestKind::Index,
                "{what}: kind"
            );
            assert_eq!(
                manifests.len(),
                count("manifests"),
                "{what}: manifest count"
            );
            for d in manifests {
                digest(&d.digest.to_string());
            }
        }
    }
}

/// `RawManifest::detect(body, content_type)` then `.parse`, and `RawManifest::new(body, mt)`
/// then `.parse` for every known media type: the digest is the body's sha256, the bytes are
/// kept as they are, schema 1 is never accepted, and what is accepted agrees with the JSON.
pub fn manifest(content_type: Option<&str>, body: &[u8]) {
    let sha = Digest::sha256_of(body);
    match RawManifest::detect(body.to_vec(), content_type, "fuzz") {
        Ok(raw) => {
            assert_eq!(&raw.bytes[..], body, "detect changed the bytes");
            assert_eq!(raw.digest, sha, "detect: digest is not the body's sha256");
            let declared = content_type
                .map(|c| c.split(';').next().unwrap_or(c).trim())
                .filter(|c| {
                    !c.is_empty()
                        && !matches!(
                            *c,
                            "application/json" | "application/octet-stream" | "text/plain"
                        )
                });
            if let Some(d) = declared {
                assert_eq!(raw.media_type, d, "detect ignored the declared type");
            }
            if let Ok(parsed) = raw.parse("fuzz") {
                let what = format!("detect({content_type:?}) as {}", raw.media_type);
                check_parsed(&what, &raw, &parsed, body);
            }
        }
        Err(e) => assert!(
            matches!(
                e,
                Error::InvalidManifest { .. } | Error::UnsupportedMediaType { .. }
            ),
            "detect failed with the wrong error: {e:?}"
        ),
    }
    for mt in KNOWN_MANIFEST_TYPES {
        let raw = RawManifest::new(body.to_vec(), *mt);
        assert_eq!(raw.digest, sha);
        match raw.parse("fuzz") {
            Ok(parsed) => {
                assert!(
                    *mt != DOCKER_SCHEMA1 && *mt != DOCKER_SCHEMA1_SIGNED,
                    "schema 1 accepted"
                );
                check_parsed(mt, &raw, &parsed, body);
            }
            Err(e) => assert!(
                matches!(
                    e,
                    Error::InvalidManifest { .. } | Error::UnsupportedMediaType { .. }
                ),
                "parse as {mt} failed with the wrong error: {e:?}"
            ),
        }
    }
}

/// The fuzz entry point: first line is the content type, the rest the body.
pub fn manifest_fuzz(data: &[u8]) {
    let (ct, body) = split_manifest_input(data);
    manifest(ct.as_deref(), body);
}

// ---------------------------------------------------------------------------------------------
// Dockerfile ARG scanning

fn is_arg_name(name: &str) -> bool {
    let mut c = name.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// `declared_args`: every name matches `[A-Za-z_][A-Za-z0-9_]*`; CRLF line ends and a leading
/// byte-order mark change nothing.
pub fn dockerfile(input: &str) {
    let args = declared_args(input);
    for name in &args {
        assert!(
            is_arg_name(name),
            "{input:?}: invalid ARG name {name:?} declared"
        );
    }
    if !input.contains('\r') {
        let crlf = input.replace('\n', "\r\n");
        assert_eq!(
            declared_args(&crlf),
            args,
            "{input:?}: CRLF line ends change the ARGs"
        );
    }
    if !input.starts_with('\u{feff}') {
        let bom = format!("\u{feff}{input}");
        assert_eq!(
            declared_args(&bom),
            args,
            "{input:?}: a BOM changes the ARGs"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// docker config.json

/// Removes what would make `credentials_for` run a program: the `credHelpers` and
/// `credsStore` keys of an object, and (because serde also reads a struct from a JSON array,
/// positionally `[auths, credHelpers, credsStore]`) every array element after the first.
/// `None` when the text is not JSON (then it is only parsed, never asked for credentials).
pub fn strip_helpers(text: &[u8]) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(text).ok()?;
    match &mut v {
        serde_json::Value::Object(m) => {
            m.remove("credHelpers");
            m.remove("credsStore");
        }
        serde_json::Value::Array(a) => a.truncate(1),
        _ => {}
    }
    Some(serde_json::to_vec(&v).expect("a Value serialises"))
}

/// How many times `docker_config` parses a config with two or more `auths` keys to see
/// whether the answer depends on `HashMap` order: with two candidate keys, 8 parses all agree
/// by chance with probability 2^-7.
pub const CONFIG_PARSES: usize = 8;

/// `DockerConfig::parse` on the raw bytes (parse only), then on the bytes without credential
/// helpers, `credentials_for` each of [`CONFIG_REGISTRIES`]: errors are `Error::Credentials`,
/// `Debug` never shows a password, and the answer does not depend on the parse (every parse
/// of the same text gives the same credentials).
pub fn docker_config(data: &[u8]) {
    let path = Path::new("/fuzz/config.json");
    if let Err(e) = DockerConfig::parse(path, data) {
        assert!(
            matches!(e, Error::Credentials { .. }),
            "parse failed with the wrong error: {e:?}"
        );
    }
    let Some(stripped) = strip_helpers(data) else {
        return;
    };
    let Ok(first) = DockerConfig::parse(path, &stripped) else {
        return;
    };
    // More parses (more HashMap seeds) only where an order could matter.
    let others: Vec<DockerConfig> = if auths_of(&stripped).is_some_and(|m| m.len() > 1) {
        (1..CONFIG_PARSES)
            .map(|_| DockerConfig::parse(path, &stripped).expect("it parsed once"))
            .collect()
    } else {
        Vec::new()
    };
    let show = |r: &mirror_core::Result<Credentials>| match r {
        Ok(Credentials::Basic { username, password }) => {
            format!("Basic({username:?}, {:?})", password.expose())
        }
        Ok(Credentials::IdentityToken(t)) => format!("IdentityToken({:?})", t.expose()),
        Ok(Credentials::Bearer(t)) => format!("Bearer({:?})", t.expose()),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("Err({e})"),
    };
    for registry in CONFIG_REGISTRIES {
        let answer = first.credentials_for(registry);
        match &answer {
            Ok(c @ Credentials::Basic { username, password }) => {
                assert_eq!(
                    format!("{c:?}"),
                    format!("Basic {{ username: {username:?}, password: \"***\" }}"),
                    "Debug of basic credentials"
                );
                assert_eq!(format!("{password:?}"), "Secret(***)");
            }
            Ok(c @ (Credentials::IdentityToken(_) | Credentials::Bearer(_))) => {
                let d = format!("{c:?}");
                assert!(d.ends_with("(***)"), "Debug shows a token: {d}");
            }
            Ok(_) => {}
            Err(e) => assert!(
                matches!(e, Error::Credentials { .. }),
                "credentials_for({registry}) failed with the wrong error: {e:?}"
            ),
        }
        if tolerated("F3", || triggers_f3(&stripped, registry)) {
            continue;
        }
        let expected = show(&answer);
        for other in &others {
            assert_eq!(
                show(&other.credentials_for(registry)),
                expected,
                "credentials_for({registry}) depends on the parse (HashMap order) for {:?}",
                String::from_utf8_lossy(&stripped)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fuzz targets, by name (the directory names under fuzz/corpus/ and fuzz/artifacts/).

/// `Reference::parse` on the input as text.
pub fn fuzz_reference(data: &[u8]) {
    reference(&text(data));
}

/// `parse_oci_location` and `Source::parse` on the input, and on it behind `oci:`.
pub fn fuzz_oci_source(data: &[u8]) {
    oci_source_fuzz(&text(data));
}

/// `Digest::parse` on the input as text.
pub fn fuzz_digest(data: &[u8]) {
    digest(&text(data));
}

/// `parse_challenge` on the input as text.
pub fn fuzz_www_authenticate(data: &[u8]) {
    challenge(&text(data));
}

/// `parse_next_link` on the input as text.
pub fn fuzz_link(data: &[u8]) {
    link(&text(data));
}

/// `declared_args` on the input as text.
pub fn fuzz_dockerfile_args(data: &[u8]) {
    dockerfile(&text(data));
}

// ---------------------------------------------------------------------------------------------
// Numbers a registry or a tag supplies

/// `token_answer`: never panics; a token's lifetime is at least a second and at most
/// `MAX_TOKEN_LIFETIME`, whatever `expires_in` says; its refresh time can be computed.
pub fn token_answer(data: &[u8]) {
    use mirror_core::kit::store::http::auth::{token_answer, MAX_TOKEN_LIFETIME};
    if let Some((_, ttl)) = token_answer(data) {
        assert!(
            ttl >= std::time::Duration::from_secs(1) && ttl <= MAX_TOKEN_LIFETIME,
            "{:?}: lifetime {ttl:?}",
            text(data)
        );
        assert!(std::time::Instant::now().checked_add(ttl).is_some());
    }
}

/// The bookkeeping tags (`mirror.pushed.<ms>.<hex12>`, `mirror.anchor.until.<ms>.<hex12>`):
/// a tag reads as one only with a time no later than the year 9999 (so every clock can add to
/// it and every calendar show it) and twelve hex digits; one that reads is written back the
/// same when it was written canonically.
pub fn bookkeeping_tag(input: &str) {
    use mirror_core::kit::image::{
        handed_out_tag, parse_handed_out_tag, parse_pushed_tag, pushed_tag, MAX_BOOKKEEPING_MILLIS,
    };
    for (parsed, write) in [
        (
            parse_pushed_tag(input),
            pushed_tag as fn(std::time::SystemTime, &Digest) -> String,
        ),
        (parse_handed_out_tag(input), handed_out_tag),
    ] {
        let Some((at, hex)) = parsed else { continue };
        let millis = at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        assert!(
            millis <= u128::from(MAX_BOOKKEEPING_MILLIS),
            "{input:?}: {millis} ms"
        );
        assert!(
            hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{input:?}: {hex:?}"
        );
        assert!(at
            .checked_add(std::time::Duration::from_secs(365 * 86_400))
            .is_some());
        let digest = Digest::parse(&format!(
            "sha256:{}{}",
            hex.to_ascii_lowercase(),
            "0".repeat(52)
        ))
        .expect("twelve hex digits and zeros make a digest");
        let again = write(at, &digest);
        let canonical =
            !input.contains("+") && !input.contains(".0") && hex == hex.to_ascii_lowercase();
        if canonical && input.len() == again.len() {
            assert_eq!(again, input, "{input:?} written back as {again:?}");
        }
    }
}

/// `token_answer` on the input.
pub fn fuzz_token_answer(data: &[u8]) {
    token_answer(data);
}

/// The bookkeeping tag readers on the input as text.
pub fn fuzz_bookkeeping_tag(data: &[u8]) {
    bookkeeping_tag(&text(data));
}

/// The check of one fuzz target, on one input.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("reference", fuzz_reference),
    ("oci_source", fuzz_oci_source),
    ("digest", fuzz_digest),
    ("www_authenticate", fuzz_www_authenticate),
    ("link", fuzz_link),
    ("manifest", manifest_fuzz),
    ("dockerfile_args", fuzz_dockerfile_args),
    ("docker_config", docker_config),
    ("token_answer", fuzz_token_answer),
    ("bookkeeping_tag", fuzz_bookkeeping_tag),
];
