//! How the CLI shows times and what keeps an image.

/// RFC 3339 seconds, `-` for none.
pub fn time_string(t: Option<std::time::SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "-".into())
}

/// `  in use by deployment shop/api, pod shop/api-1; anchored; expires 2026-12-09T10:00:00Z`:
/// what keeps the image, and when a sweep may take it.
pub fn use_summary(img: &mirror_core::ImageRecord) -> String {
    let mut parts = Vec::new();
    if !img.in_use_by.is_empty() {
        let users: Vec<String> = img.in_use_by.iter().map(|w| w.to_string()).collect();
        parts.push(format!("in use by {}", users.join(", ")));
    }
    if img.anchored {
        parts.push("anchored".to_string());
    }
    if let Some(at) = img.expires_at {
        parts.push(format!("expires {}", time_string(Some(at))));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("  {}", parts.join("; "))
    }
}

/// `  [2 signature, 1 sbom]` for an image with referrers, empty otherwise.
pub fn referrer_summary(img: &mirror_core::ImageRecord) -> String {
    let parts = referrer_counts(img);
    if parts.is_empty() {
        String::new()
    } else {
        format!("  [{}]", parts.join(", "))
    }
}

/// `["2 signature", "1 sbom"]`: an image's referrers counted by kind.
pub fn referrer_counts(img: &mirror_core::ImageRecord) -> Vec<String> {
    use mirror_core::image::referrers::ReferrerKind;
    [
        (ReferrerKind::Signature, "signature"),
        (ReferrerKind::Sbom, "sbom"),
        (ReferrerKind::Attestation, "attestation"),
        (ReferrerKind::Other, "other"),
    ]
    .into_iter()
    .filter_map(|(k, name)| match img.count(k) {
        0 => None,
        n => Some(format!("{n} {name}")),
    })
    .collect()
}
