//! Shared helpers of the end-to-end tests (`tests/tests/`) and of the load benchmark.

pub mod authed;
pub mod chromium;
pub mod cli;
pub mod cli_suite;
pub mod hostile;
pub mod kube_api;
pub mod prometheus;
pub mod referrers;
pub mod tls;

use std::collections::HashMap;

use mirror_core::testing::TestRegistry;

/// Completed blob uploads per digest, read from a test registry's access log: every
/// `PUT …/blobs/uploads/…?digest=…` answered 201.
pub fn completed_uploads(reg: &TestRegistry) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for line in reg.log().lines() {
        if !line.contains("\"PUT ")
            || !line.contains("/blobs/uploads/")
            || !line.contains("\" 201 ")
        {
            continue;
        }
        if let Some(i) = line.find("digest=") {
            let d: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '%')
                .collect();
            *out.entry(d.replace("%3A", ":")).or_insert(0) += 1;
        }
    }
    out
}

/// Request lines (`METHOD /path`) of a test registry's access log.
pub fn access_lines(reg: &TestRegistry) -> Vec<String> {
    reg.log()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find('"')? + 1..];
            let req = &rest[..rest.find(" HTTP/")?];
            let method = req.split(' ').next()?;
            ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]
                .contains(&method)
                .then(|| req.to_string())
        })
        .collect()
}

/// Peak resident memory of this process since the last [`reset_peak_rss`] (`VmHWM`, Linux),
/// in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Resets the peak of [`peak_rss`] to the current resident memory (`5` into
/// `/proc/self/clear_refs`, Linux 4.0 and later).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `attack`, then prints one line for the notes (`attack: <name>: <ms> ms, peak RSS
/// <MiB> MiB above the start`) and returns what it returned with the peak growth in bytes.
/// Meaningful when nothing else runs in the process at the same time.
pub async fn measured<T>(name: &str, attack: impl std::future::Future<Output = T>) -> (T, u64) {
    let before = {
        reset_peak_rss();
        peak_rss()
    };
    let started = std::time::Instant::now();
    let out = attack.await;
    let grown = peak_rss().saturating_sub(before);
    println!(
        "attack: {name}: {} ms, peak RSS +{:.1} MiB",
        started.elapsed().as_millis(),
        grown as f64 / (1 << 20) as f64
    );
    (out, grown)
}

/// The descriptor of `manifest` in an image index, naming `platform` (`"os/architecture"`)
/// when given.
pub fn descriptor(
    manifest: &mirror_core::RawManifest,
    platform: Option<&str>,
) -> serde_json::Value {
    let mut entry = serde_json::json!({
        "mediaType": manifest.media_type,
        "digest": manifest.digest.to_string(),
        "size": manifest.bytes.len(),
    });
    if let Some((os, architecture)) = platform.and_then(|p| p.split_once('/')) {
        entry["platform"] = serde_json::json!({ "architecture": architecture, "os": os });
    }
    entry
}

/// An OCI image index of `manifests` (descriptors, [`descriptor`]).
pub fn oci_index(manifests: Vec<serde_json::Value>) -> mirror_core::RawManifest {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mirror_core::media::OCI_INDEX,
        "manifests": manifests,
    });
    mirror_core::RawManifest::new(doc.to_string().into_bytes(), mirror_core::media::OCI_INDEX)
}

/// A fault-proxy rule answering the next manifest `GET` `429` with `Retry-After: seconds`.
pub fn manifest_get_rate_limited(seconds: u64) -> mirror_core::testing::Rule {
    let fault = mirror_core::testing::Fault::Status {
        status: 429,
        retry_after: Some(seconds),
    };
    mirror_core::testing::Rule::new(Some("GET"), "/manifests/", fault, 1)
}
