//! How the CLI shows times and what keeps an image.

/// RFC 3339 seconds, `-` for none. A time RFC 3339 cannot show (before 1970 or after the
/// year 9999: a registry or a tag may claim one) is shown as its Unix seconds instead of
/// panicking in the formatter.
pub fn time_string(t: Option<std::time::SystemTime>) -> String {
    /// 9999-12-31T23:59:59Z.
    const LAST_RFC3339_SECOND: u64 = 253_402_300_799;
    match t.map(|t| t.duration_since(std::time::UNIX_EPOCH)) {
        None => "-".into(),
        Some(Ok(d)) if d.as_secs() <= LAST_RFC3339_SECOND => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + d).to_string()
        }
        Some(Ok(d)) => format!("@{} (after the year 9999)", d.as_secs()),
        Some(Err(e)) => format!("-{} s before 1970", e.duration().as_secs()),
    }
}

/// `  in use by deployment shop/api, pod shop/api-1; anchored; expires 2026-12-09T10:00:00Z`:
/// what keeps the image, and when a sweep may take it.
pub fn use_summary(img: &mirror_core::InventoryImage) -> String {
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
    use mirror_core::kit::image::referrers::ReferrerKind;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_no_calendar_can_show_are_shown_without_panicking() {
        assert_eq!(time_string(None), "-");
        assert_eq!(
            time_string(Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))),
            "2023-11-14T22:13:20Z"
        );
        let far = UNIX_EPOCH + Duration::from_secs(999_999_999_999_999 / 1000 * 1000);
        assert!(time_string(Some(far)).contains("after the year 9999"));
        assert!(time_string(Some(UNIX_EPOCH - Duration::from_secs(5))).contains("before 1970"));
    }
}
