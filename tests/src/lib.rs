//! Shared helpers of the end-to-end tests (`tests/tests/`) and of the load benchmark.

pub mod authed;
pub mod chromium;
pub mod cli;
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
