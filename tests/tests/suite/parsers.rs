//! Bounded regression for every parser of untrusted input (issue 5, item 6).
//!
//! The deep runs are the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`); CI runs this
//! file instead, in a few seconds:
//!
//! 1. every file of `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/` goes through the
//!    same check as the fuzz target (the checks are one file, `fuzz/src/checks.rs`, compiled
//!    here too);
//! 2. proptest runs a few hundred structured cases per parser: references, OCI locations,
//!    digests, `WWW-Authenticate` and `Link` headers, manifests, Dockerfiles and docker
//!    `config.json` files built from valid and invalid parts;
//! 3. each finding of the fuzz runs has a named regression case.
//!
//! Findings the library has not fixed yet are listed in `checks::OPEN_FINDINGS`: the checks
//! tolerate the inputs that trigger them, except in strict mode, where their artifacts and
//! regression cases are expected to fail. When a fix lands, `open_findings_still_reproduce`
//! fails and says which entry to delete.

#[path = "../../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use checks::OPEN_FINDINGS;

fn is_open(id: &str) -> bool {
    OPEN_FINDINGS.iter().any(|f| f.id == id)
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn check_for(target: &str) -> checks::Check {
    checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no check for fuzz target {target}"))
        .1
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.expect("read corpus directory").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Runs `check` on `data`, returning the panic message if it panicked.
fn run_check(check: checks::Check, data: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| check(data)))
        .err()
        .map(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into())
        })
}

/// Quiets the default panic hook while expected panics are caught.
/// Runs `f` with panic messages of this thread silenced (the panics are still caught and
/// reported by `run_check`). Tests run in parallel threads, so the process-wide hook is
/// installed once and asks a thread-local flag, rather than being swapped per call.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = f();
    QUIET.with(|q| q.set(false));
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Corpus and artifact replay

#[test]
fn every_fuzz_target_has_a_check_and_a_corpus() {
    let mut dirs: Vec<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
        .expect("fuzz/corpus exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = checks::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(dirs, names, "fuzz/corpus/* and checks::TARGETS differ");
    for (name, _) in checks::TARGETS {
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
        assert!(
            !files("corpus", name).is_empty(),
            "fuzz/corpus/{name} is empty"
        );
    }
}

#[test]
fn corpus_replays_clean() {
    let mut failures = Vec::new();
    let mut count = 0;
    quietly(|| {
        for (target, check) in checks::TARGETS {
            for path in files("corpus", target) {
                count += 1;
                let data = std::fs::read(&path).unwrap();
                if let Some(msg) = run_check(*check, &data) {
                    failures.push(format!("{}: {msg}", path.display()));
                }
            }
        }
    });
    assert!(
        count > 0,
        "no corpus files found under {}",
        fuzz_dir().display()
    );
    assert!(
        failures.is_empty(),
        "corpus inputs fail their check:\n{}",
        failures.join("\n")
    );
}

#[test]
fn fixed_artifacts_replay_clean() {
    let mut failures = Vec::new();
    checks::set_strict(true);
    quietly(|| {
        for (target, check) in checks::TARGETS {
            for path in files("artifacts", target) {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if OPEN_FINDINGS
                    .iter()
                    .any(|f| f.target == *target && f.artifact == name)
                {
                    continue;
                }
                let data = std::fs::read(&path).unwrap();
                if let Some(msg) = run_check(*check, &data) {
                    failures.push(format!("{}: {msg}", path.display()));
                }
            }
        }
    });
    assert!(
        failures.is_empty(),
        "fixed findings are back:\n{}",
        failures.join("\n")
    );
}

#[test]
fn open_findings_still_reproduce() {
    let mut fixed = Vec::new();
    checks::set_strict(true);
    quietly(|| {
        for f in OPEN_FINDINGS {
            let path = fuzz_dir().join("artifacts").join(f.target).join(f.artifact);
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if run_check(check_for(f.target), &data).is_none() {
                fixed.push(f.id);
            }
        }
    });
    assert!(
        fixed.is_empty(),
        "findings {fixed:?} no longer reproduce: the library fixed them. Delete them from \
         OPEN_FINDINGS in fuzz/src/checks.rs and mark them fixed in fuzz/README.md"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Named regression cases of the findings

/// Asserts that every input fails `check` in strict mode while finding `id` is open, and
/// passes once it is fixed (deleted from `OPEN_FINDINGS`).
fn regression(id: &str, check: checks::Check, inputs: &[&str]) {
    checks::set_strict(true);
    for input in inputs {
        let outcome = quietly(|| run_check(check, input.as_bytes()));
        if is_open(id) {
            assert!(
                outcome.is_some(),
                "{id} no longer reproduces with {input:?}: delete it from OPEN_FINDINGS (fuzz/src/checks.rs)"
            );
        } else {
            assert_eq!(outcome, None, "{id} is back with {input:?}");
        }
    }
    checks::set_strict(false);
}

/// F1: a single-label registry host written with upper-case letters (`A/c`, `MyReg/app`) is
/// a host only because of its case; `normalise_host` lowercases it and the reference's
/// `Display` (`a/c:latest`) then reads as Docker Hub's `docker.io/a/c`.
#[test]
fn f1_host_lowercasing_changes_how_a_reference_reads() {
    regression(
        "F1",
        checks::fuzz_reference,
        &[
            "A/c",
            "MyRegistry/team/app:1.0",
            "E2/0:0",
            "Registry/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ],
    );
    regression("F1", checks::fuzz_oci_source, &["A/c", "MyReg/app"]);
}

/// F4: the registry source `OCI:5000/app` (host `OCI`, port 5000) is lowercased to
/// `oci:5000/app:latest`, which `Source::parse` reads as the layout `5000/app`.
#[test]
fn f4_registry_source_is_not_shown_as_a_layout() {
    regression(
        "F4",
        checks::fuzz_oci_source,
        &["OCI:5000/app", "Oci:443/a/b:1"],
    );
}

/// F2: `oci:x@sha256` is accepted as the layout path `x@sha256` with tag `latest`, but its
/// `Display`, `oci:x@sha256:latest`, is refused ("digests are not supported").
#[test]
fn f2_layout_path_ending_in_a_digest_algorithm_round_trips() {
    regression(
        "F2",
        checks::fuzz_oci_source,
        &["oci:x@sha256", "oci:/srv/images/app@sha512", "oci:@sha256"],
    );
}

/// F3: with two `auths` keys for one registry (`docker.io` and `index.docker.io`, or
/// `registry.example.com` and `https://registry.example.com`), `credentials_for` returns
/// whichever `HashMap` iteration meets first: another process (or another parse) can send
/// other credentials.
#[test]
fn f3_credentials_do_not_depend_on_hash_order() {
    let artifact =
        std::fs::read_to_string(fuzz_dir().join("artifacts/docker_config/F3-auths-aliases-order"))
            .unwrap();
    regression("F3", checks::docker_config, &[&artifact]);
}

/// F5: `RawManifest::parse` (and `detect`) accept a body with invalid UTF-8 inside a field
/// they skip: such a body is not JSON, and a registry may refuse it when it is pushed.
#[test]
fn f5_manifest_that_is_not_utf8_is_refused() {
    let artifact =
        std::fs::read(fuzz_dir().join("artifacts/manifest/F5-invalid-utf8-in-unknown-field"))
            .unwrap();
    let (_, body) = checks::split_manifest_input(&artifact);
    assert!(
        std::str::from_utf8(body).is_err(),
        "the artifact must hold invalid UTF-8"
    );
    checks::set_strict(true);
    let outcome = quietly(|| run_check(checks::manifest_fuzz, &artifact));
    checks::set_strict(false);
    if is_open("F5") {
        assert!(
            outcome.is_some(),
            "F5 no longer reproduces: delete it from OPEN_FINDINGS (fuzz/src/checks.rs)"
        );
    } else {
        assert_eq!(outcome, None, "F5 is back");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Structured property runs

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hex(len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(prop::sample::select(b"0123456789abcdef".to_vec()), len)
        .prop_map(|v| String::from_utf8(v).unwrap())
}

/// Digests: valid sha256/sha512, and near misses (case, length, algorithm).
fn digest_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => hex(64).prop_map(|h| format!("sha256:{h}")),
        2 => hex(128).prop_map(|h| format!("sha512:{h}")),
        1 => (prop::sample::select(vec!["sha256", "sha512", "SHA256", "md5", "", "sha256+b64"]),
              "[0-9a-fA-F]{62,66}")
            .prop_map(|(a, h)| format!("{a}:{h}")),
        1 => hex(64).prop_map(|h| format!("sha256:{}", h.to_uppercase())),
        1 => "\\PC{0,20}",
    ]
}

fn registry_part() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        4 => prop::sample::select(vec![
            // valid
            "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com",
            "localhost", "LocalHost:5000", "ghcr.io", "Registry.Example.COM:443",
            "127.0.0.1:5000", "[::1]:5000", "[::1]", "[fe80::1]:80", "xn--bcher-kva.example",
            // invalid
            "host:0", "host:65536", "host:", "-bad.com", "bad-.com", "a..b", "[zz]:1",
            "[::1]x", "[::1", "h_st.com", "oci:5000", "OCI:5000",
        ])
        .prop_map(|s| Some(s.to_string())),
        2 => "[a-z0-9-]{1,8}(\\.[a-zA-Z0-9-]{1,8}){1,2}(:[0-9]{1,6})?".prop_map(Some),
        1 => "[A-Za-z][A-Za-z0-9]{0,6}".prop_map(Some),
    ]
}

fn path_component() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}",
        2 => "[a-zA-Z0-9._-]{0,6}",
        1 => Just("a".repeat(120)),
    ]
}

fn tag_part() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        4 => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}".prop_map(Some),
        1 => "[A-Za-z0-9_.:@-]{0,5}".prop_map(Some),
        1 => Just(Some("t".repeat(129))),
    ]
}

/// References assembled from valid and invalid registries, paths, tags and digests.
fn reference_text() -> impl Strategy<Value = String> {
    (
        registry_part(),
        proptest::collection::vec(path_component(), 1..4),
        tag_part(),
        prop::option::of(digest_text()),
    )
        .prop_map(|(reg, path, tag, digest)| {
            let mut s = String::new();
            if let Some(r) = reg {
                s.push_str(&r);
                s.push('/');
            }
            s.push_str(&path.join("/"));
            if let Some(t) = tag {
                s.push(':');
                s.push_str(&t);
            }
            if let Some(d) = digest {
                s.push('@');
                s.push_str(&d);
            }
            s
        })
}

/// `oci:` locations: paths with colons, slashes, `@sha256` ends, and tags valid or not.
fn oci_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["oci:", "oci:", "oci:", "OCI:", ""]),
        "[a-z/.:@_-]{0,12}",
        prop::sample::select(vec!["", "/img", "@sha256", "@sha512", "/", ":"]),
        prop::option::of(prop_oneof![
            "[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}",
            "[-./a-z]{0,3}"
        ]),
    )
        .prop_map(|(prefix, path, end, tag)| match tag {
            Some(t) => format!("{prefix}{path}{end}:{t}"),
            None => format!("{prefix}{path}{end}"),
        })
}

fn quoted(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// `WWW-Authenticate` values: schemes in any case, known and unknown parameters, quoted
/// values with escapes, unquoted tokens, stray separators and blanks.
fn challenge_text() -> impl Strategy<Value = String> {
    let param = (
        prop::sample::select(vec![
            "realm", "service", "scope", "error", "Realm", "nonce", "",
        ]),
        prop_oneof![
            "[a-z0-9:/._-]{0,16}".prop_map(|v| quoted(&v)),
            "[a-z0-9:/._-]{0,16}",
            "[ a-z\"\\\\,=]{0,8}".prop_map(|v| quoted(&v)),
            "\"[a-z]{0,4}",
        ],
        prop::sample::select(vec!["=", " = ", "= ", " "]),
    )
        .prop_map(|(k, v, eq)| format!("{k}{eq}{v}"));
    (
        prop::sample::select(vec![
            "Bearer", "bearer", "BASIC", "Basic", "Digest", "", "Bearer\t",
        ]),
        prop::sample::select(vec![" ", "  ", "\t", ""]),
        proptest::collection::vec(param, 0..5),
        prop::sample::select(vec![",", ", ", " , ", ",,"]),
    )
        .prop_map(|(scheme, gap, params, sep)| format!("{scheme}{gap}{}", params.join(sep)))
}

/// `Link` values: several links with `rel` in its spellings, URLs with query strings.
fn link_text() -> impl Strategy<Value = String> {
    let one = (
        prop_oneof![
            "/v2/[a-z]{1,5}/tags/list\\?n=[0-9]{1,3}&last=[a-z0-9._-]{0,8}",
            "https://[a-z]{1,6}\\.example\\.com/v2/[a-z/]{1,8}/tags/list\\?last=[a-z]{0,4}",
            "[^<>,;]{0,10}",
        ],
        prop::sample::select(vec![
            "; rel=\"next\"",
            ";rel=next",
            "; REL = \"Next\"",
            "; rel=\"prev\"",
            "",
            "; type=x; rel=next",
        ]),
        prop::sample::select(vec![("<", ">"), ("<", ""), ("", ">"), (" <", "> ")]),
    )
        .prop_map(|(url, rel, (open, close))| format!("{open}{url}{close}{rel}"));
    proptest::collection::vec(one, 1..4).prop_map(|v| v.join(", "))
}

const MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.config.v1+json",
];

fn descriptor() -> impl Strategy<Value = serde_json::Value> {
    (
        prop::option::of(prop::sample::select(MEDIA_TYPES.to_vec())),
        prop_oneof![
            4 => hex(64).prop_map(|h| serde_json::json!(format!("sha256:{h}"))),
            1 => Just(serde_json::json!("sha256:nothex")),
            1 => Just(serde_json::json!(12)),
        ],
        prop_oneof![
            4 => (0u64..1 << 40).prop_map(|n| serde_json::json!(n)),
            1 => Just(serde_json::json!(-1)),
            1 => Just(serde_json::json!("12")),
        ],
        prop::option::of((
            prop::sample::select(vec!["amd64", "arm64", "unknown"]),
            prop::sample::select(vec!["linux", "windows"]),
            prop::option::of(Just("v8")),
        )),
    )
        .prop_map(|(mt, digest, size, platform)| {
            let mut d = serde_json::json!({ "digest": digest, "size": size });
            if let Some(mt) = mt {
                d["mediaType"] = serde_json::json!(mt);
            }
            if let Some((arch, os, variant)) = platform {
                d["platform"] = serde_json::json!({ "architecture": arch, "os": os });
                if let Some(v) = variant {
                    d["platform"]["variant"] = serde_json::json!(v);
                }
            }
            d
        })
}

/// A descriptor as registries write them.
fn good_descriptor() -> impl Strategy<Value = serde_json::Value> {
    (hex(64), 0u64..1 << 32, prop::sample::select(MEDIA_TYPES.to_vec())).prop_map(|(h, size, mt)| {
        serde_json::json!({ "mediaType": mt, "digest": format!("sha256:{h}"), "size": size })
    })
}

/// Well-formed image manifests and indexes (OCI or Docker), with or without their
/// `mediaType` field, served with their type, a generic type, or none.
fn coherent_manifest_input() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        good_descriptor(),
        proptest::collection::vec(good_descriptor(), 0..4),
        prop::sample::select(vec![0u8, 1, 2, 3, 4]),
    )
        .prop_map(|(index, docker, with_mt, config, children, served)| {
            let mt = match (index, docker) {
                (false, false) => MEDIA_TYPES[0],
                (true, false) => MEDIA_TYPES[1],
                (false, true) => MEDIA_TYPES[2],
                (true, true) => MEDIA_TYPES[3],
            };
            let mut doc = serde_json::json!({ "schemaVersion": 2 });
            if with_mt {
                doc["mediaType"] = serde_json::json!(mt);
            }
            if index {
                doc["manifests"] = serde_json::Value::Array(children);
            } else {
                doc["config"] = config;
                doc["layers"] = serde_json::Value::Array(children);
            }
            let ct = match served {
                0 | 1 => Some(mt.to_string()),
                2 => Some(format!("{mt}; charset=utf-8")),
                3 => Some("application/json".to_string()),
                _ => None,
            };
            (ct, serde_json::to_vec_pretty(&doc).unwrap())
        })
}

/// Manifest inputs: well-formed ones and ones with fields missing or wrong.
fn manifest_input() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    prop_oneof![coherent_manifest_input(), random_manifest_input()]
}

/// Manifest documents (image or index, OCI or Docker, with fields missing or wrong) and the
/// `Content-Type` they are served with.
fn random_manifest_input() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    (
        prop_oneof![
            Just(serde_json::json!(2)),
            Just(serde_json::json!(1)),
            Just(serde_json::Value::Null),
            Just(serde_json::json!("2")),
        ],
        prop::option::of(prop::sample::select(MEDIA_TYPES.to_vec())),
        prop::option::of(descriptor()),
        prop::option::of(proptest::collection::vec(descriptor(), 0..3)),
        prop::option::of(proptest::collection::vec(descriptor(), 0..3)),
        prop_oneof![
            Just(None),
            prop::sample::select(MEDIA_TYPES.to_vec()).prop_map(|s| Some(s.to_string())),
            prop::sample::select(vec![
                "application/json",
                "text/plain; charset=utf-8",
                "",
                "x/y"
            ])
            .prop_map(|s| Some(s.to_string())),
            prop::sample::select(MEDIA_TYPES.to_vec())
                .prop_map(|s| Some(format!("{s}; charset=utf-8"))),
        ],
        any::<bool>(),
    )
        .prop_map(|(sv, mt, config, layers, manifests, ct, pretty)| {
            let mut doc = serde_json::Map::new();
            if !sv.is_null() {
                doc.insert("schemaVersion".into(), sv);
            }
            if let Some(mt) = mt {
                doc.insert("mediaType".into(), serde_json::json!(mt));
            }
            if let Some(c) = config {
                doc.insert("config".into(), c);
            }
            if let Some(l) = layers {
                doc.insert("layers".into(), serde_json::Value::Array(l));
            }
            if let Some(m) = manifests {
                doc.insert("manifests".into(), serde_json::Value::Array(m));
            }
            let doc = serde_json::Value::Object(doc);
            let body = if pretty {
                serde_json::to_vec_pretty(&doc).unwrap()
            } else {
                serde_json::to_vec(&doc).unwrap()
            };
            (ct, body)
        })
}

/// Dockerfile lines: instructions in any case, ARGs with valid and invalid names, quoted
/// values, continuations, comments, directives, heredocs and their terminators.
fn dockerfile_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        3 => "(ARG|arg|Arg|  ARG) [A-Za-z_0-9-]{1,6}(=[a-z0-9\"' ]{0,6})?( [A-Za-z_]{1,4})?",
        1 => Just("FROM alpine AS build".to_string()),
        1 => prop::sample::select(vec![
            "ARG A=1 \\", "    B=2", "ARG C `", "  D", "# escape=`", "# syntax=docker/dockerfile:1",
            "# comment", "", "   ", "RUN <<EOF", "RUN <<-'END' cat && cat <<X", "EOF", "\tEND", "X",
            "COPY <<\"EOF\" /f", "ONBUILD ARG LATER", "ONBUILD RUN <<EOF", "RUN [\"sh\", \"-c\", \"<<EOF\"]",
            "ARG \"Q=1 2\" R", "ARG S\\", "ARG T='u v' \\", "\u{feff}ARG BOM", "ARG \\", "ARG",
        ])
        .prop_map(str::to_string),
    ];
    (proptest::collection::vec(line, 0..14), any::<bool>()).prop_map(|(lines, trailing)| {
        let mut s = lines.join("\n");
        if trailing {
            s.push('\n');
        }
        s
    })
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `auths` keys docker and podman write, for the two registries the check asks about
/// and for others.
const AUTH_KEYS: &[&str] = &[
    "https://index.docker.io/v1/",
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.example.com",
    "https://registry.example.com",
    "http://registry.example.com/v2/",
    "registry.example.com:5000",
    "ghcr.io",
];

fn auth_entry() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        3 => ("[a-z]{0,5}", "[a-z0-9:]{0,8}")
            .prop_map(|(u, p)| serde_json::json!({ "auth": base64(format!("{u}:{p}").as_bytes()) })),
        1 => "[a-z]{0,5}".prop_map(|u| serde_json::json!({ "auth": base64(u.as_bytes()) })),
        1 => Just(serde_json::json!({ "auth": "!!not base64" })),
        1 => Just(serde_json::json!({ "auth": base64(&[0xff, 0xfe, b':', b'x']) })),
        1 => ("[a-z]{1,5}", "[a-z]{1,5}")
            .prop_map(|(u, p)| serde_json::json!({ "username": u, "password": p })),
        1 => "[a-z]{0,6}".prop_map(|t| serde_json::json!({ "identitytoken": t })),
        1 => "[a-z]{0,6}".prop_map(|t| serde_json::json!({ "registrytoken": t })),
        1 => Just(serde_json::json!({})),
        1 => Just(serde_json::json!({ "auth": 12 })),
    ]
}

/// docker `config.json` texts (never with credential helpers: the check runs no program)
/// and the `auths` keys they hold.
fn docker_config_input() -> impl Strategy<Value = (Vec<&'static str>, Vec<u8>)> {
    (
        proptest::collection::btree_map(
            prop::sample::select(AUTH_KEYS.to_vec()),
            auth_entry(),
            0..4,
        ),
        any::<bool>(),
        prop::sample::select(vec![0u8, 0, 0, 1, 2]),
    )
        .prop_map(|(auths, extra, shape)| {
            let keys: Vec<&'static str> = auths.keys().copied().collect();
            let mut doc = serde_json::json!({ "auths": auths });
            if extra {
                doc["HttpHeaders"] = serde_json::json!({ "User-Agent": "Docker-Client/24.0.7" });
            }
            let text = match shape {
                0 => serde_json::to_vec_pretty(&doc).unwrap(),
                1 => serde_json::to_vec(&serde_json::json!([doc["auths"].clone()])).unwrap(),
                _ => b"{\"auths\": {\"registry.example.com\": {\"auth\": ".to_vec(),
            };
            (keys, text)
        })
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn digests(input in digest_text()) {
        checks::digest(&input);
    }

    #[test]
    fn references(input in reference_text()) {
        checks::reference(&input);
    }

    #[test]
    fn oci_locations_and_sources(input in prop_oneof![oci_text(), reference_text()]) {
        checks::oci_source(&input);
    }

    #[test]
    fn www_authenticate(input in challenge_text()) {
        checks::challenge(&input);
    }

    #[test]
    fn token_answers(expires in prop_oneof![
        Just("18446744073709551615".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,40}",
        Just("1e400".to_string()),
        Just("null".to_string()),
    ], field in prop_oneof![Just("token"), Just("access_token"), Just("other")]) {
        checks::token_answer(format!(r#"{{"{field}":"t","expires_in":{expires}}}"#).as_bytes());
    }

    #[test]
    fn bookkeeping_tags(
        prefix in prop_oneof![Just("mirror.pushed."), Just("mirror.anchor.until."), Just("mirror.anchor.")],
        millis in prop_oneof![any::<u64>().prop_map(|n| n.to_string()), "[0-9]{1,25}", "[+-]?[0-9a-z.]{0,8}"],
        hex in "[0-9a-fA-Fg]{10,14}",
    ) {
        checks::bookkeeping_tag(&format!("{prefix}{millis}.{hex}"));
    }

    #[test]
    fn links(input in link_text()) {
        checks::link(&input);
    }

    #[test]
    fn dockerfiles(input in dockerfile_text()) {
        checks::dockerfile(&input);
    }
}

proptest! {
    #![proptest_config(config(250))]

    #[test]
    fn manifests((content_type, body) in manifest_input()) {
        checks::manifest(content_type.as_deref(), &body);
    }

    #[test]
    fn docker_configs((_keys, text) in docker_config_input()) {
        checks::docker_config(&text);
    }
}

// ---------------------------------------------------------------------------------------------
// A few facts the generators rely on, so a silent change in the library cannot make the
// property runs vacuous.

#[test]
fn generators_reach_the_accepting_paths() {
    use mirror_core::builder::dockerfile::declared_args;
    use mirror_core::kit::store::http::auth::parse_challenge;
    use mirror_core::kit::store::http::parse_next_link;
    assert!(mirror_core::Reference::parse("registry.example.com:5000/a/b:c").is_ok());
    assert!(mirror_core::Source::parse("oci:/x:y").is_ok());
    assert!(parse_challenge("Bearer realm=\"https://a/t\",service=\"a\"").is_some());
    assert_eq!(
        parse_next_link("</v2/x/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
        Some("/v2/x/tags/list?n=2&last=b")
    );
    assert_eq!(declared_args("ARG A=1 \\\n    B=2\n").len(), 2);
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64(b"ab"), "YWI=");
}

/// The share of generated inputs each parser accepts, so that the property runs above test
/// the accepting paths and not only the error paths.
#[test]
fn generators_produce_accepted_inputs() {
    use mirror_core::builder::dockerfile::declared_args;
    use mirror_core::kit::store::http::auth::parse_challenge;
    use mirror_core::kit::store::http::credentials::DockerConfig;
    use mirror_core::kit::store::http::parse_next_link;
    use mirror_core::media::RawManifest;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    fn share<T: std::fmt::Debug>(s: impl Strategy<Value = T>, ok: impl Fn(&T) -> bool) -> f64 {
        let mut runner = TestRunner::deterministic();
        let n = 300;
        let hits = (0..n)
            .filter(|_| ok(&s.new_tree(&mut runner).unwrap().current()))
            .count();
        hits as f64 / n as f64
    }
    let shares = [
        (
            "digest",
            share(digest_text(), |s| mirror_core::Digest::parse(s).is_ok()),
        ),
        (
            "reference",
            share(reference_text(), |s| {
                mirror_core::Reference::parse(s).is_ok()
            }),
        ),
        (
            "oci",
            share(oci_text(), |s| mirror_core::Source::parse(s).is_ok()),
        ),
        (
            "challenge",
            share(challenge_text(), |s| parse_challenge(s).is_some()),
        ),
        ("link", share(link_text(), |s| parse_next_link(s).is_some())),
        (
            "manifest",
            share(manifest_input(), |(ct, body)| {
                RawManifest::detect(body.clone(), ct.as_deref(), "t")
                    .and_then(|r| r.parse("t"))
                    .is_ok()
            }),
        ),
        (
            "dockerfile",
            share(dockerfile_text(), |s| !declared_args(s).is_empty()),
        ),
        (
            "docker config",
            share(docker_config_input(), |(_, t)| {
                DockerConfig::parse(std::path::Path::new("c"), t)
                    .and_then(|c| c.credentials_for("docker.io"))
                    .is_ok_and(|c| !c.is_anonymous())
            }),
        ),
    ];
    for (name, s) in shares {
        eprintln!("SHARE {name}: {:.0}%", s * 100.0);
        assert!(
            (0.1..=0.95).contains(&s),
            "{name}: {:.0}% of generated inputs are accepted; the generator needs a look",
            s * 100.0
        );
    }
}
