//! The page of `mirror serve`: plain server-rendered HTML with a little CSS, no script and
//! no build step.
//!
//! Written with `format!` and one escaping function rather than a template engine: the page
//! is one table per repository, and every text that reaches it (registry names, tags,
//! workload names, error messages) goes through [`escape`].

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use mirror_core::{Inventory, InventoryImage, RepositoryInventory};
use serde::Deserialize;

use super::Snapshot;

/// The page's query: `?q=FILTER&sort=KEY&order=asc|desc`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PageQuery {
    /// Shows only images whose repository, digest, tags or workloads contain this text
    /// (case-insensitive).
    #[serde(default)]
    pub q: Option<String>,
    /// `pushed` (the default), `size`, `digest`, `tag`, `expires` or `in_use`.
    #[serde(default)]
    pub sort: Option<String>,
    /// `desc` (the default) or `asc`.
    #[serde(default)]
    pub order: Option<String>,
}

/// The sort keys, in the order the page offers them.
const SORTS: [(&str, &str); 6] = [
    ("pushed", "Pushed"),
    ("size", "Size"),
    ("digest", "Digest"),
    ("tag", "Tags"),
    ("in_use", "In use"),
    ("expires", "Expires"),
];

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2430;background:#fbfcfd}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .3em}
code{font:12.5px ui-monospace,monospace}
.meta{color:#5b6576;margin:.2em 0 1em}.error{background:#fde8e8;color:#8a1c1c;padding:.5em .8em;border-radius:4px}
.totals{display:flex;gap:1.5em;margin:.5em 0 1em;padding:0}.totals div{background:#eef2f7;padding:.4em .8em;border-radius:4px}
.totals dt{font-size:.8em;color:#5b6576}.totals dd{margin:0;font-weight:600;font-size:1.1em}
form{margin:.5em 0 1em}input[type=search]{width:22em;padding:.3em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e3e7ee;vertical-align:top}
th a{color:inherit}td.size,th.size{text-align:right}td.size,td.pushed,td.digest,td.expires{white-space:nowrap}
.badge{font-size:.75em;font-weight:normal;background:#e4e9f2;border-radius:3px;padding:.1em .4em;margin-left:.4em}
.in-use .marker{color:#0b7a3e;font-weight:600}.anchored{color:#7a4b0b}.none{color:#9aa3b2}
.repo-totals{color:#5b6576;margin:0 0 .4em}
";

/// The whole page for `snapshot` (refreshed every `refresh`), as of `now`.
pub fn render(
    snapshot: &Snapshot,
    query: &PageQuery,
    refresh: Duration,
    now: SystemTime,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let title = match &snapshot.inventory {
        Some(inv) => format!("mirror · {} · cluster {}", inv.registry, inv.cluster),
        None => "mirror".to_string(),
    };
    let _ = writeln!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        escape(&title)
    );
    let Some(inv) = &snapshot.inventory else {
        let _ = write!(out, "<h1>mirror</h1><p class=\"meta\" id=\"status\">");
        match &snapshot.error {
            Some(e) => {
                let _ = write!(
                    out,
                    "</p><p class=\"error\">No inventory yet: {}</p>",
                    escape(e)
                );
            }
            None => out.push_str("The first inventory is being taken; reload in a moment.</p>"),
        }
        out.push_str("</body></html>\n");
        return out;
    };
    header(&mut out, inv, snapshot, refresh, now);
    let filter = query.q.as_deref().unwrap_or("").trim().to_lowercase();
    let (sort, desc) = sort_of(query);
    let repositories: Vec<(&RepositoryInventory, Vec<&InventoryImage>)> = inv
        .repositories
        .iter()
        .map(|r| (r, visible(r, &filter, sort, desc)))
        .filter(|(r, images)| {
            filter.is_empty() || !images.is_empty() || matches(&r.repository, &filter)
        })
        .collect();
    totals(&mut out, inv);
    form(&mut out, query, sort, desc);
    if repositories.is_empty() {
        out.push_str("<p class=\"none\" id=\"empty\">No image matches.</p>");
    }
    for (repo, images) in repositories {
        repository(&mut out, repo, &images, query, sort, desc);
    }
    out.push_str("</body></html>\n");
    out
}

fn header(
    out: &mut String,
    inv: &Inventory,
    snapshot: &Snapshot,
    refresh: Duration,
    now: SystemTime,
) {
    let _ = write!(
        out,
        "<header><h1>Mirror registry <code id=\"registry\">{}</code> · cluster <code id=\"cluster\">{}</code></h1>",
        escape(&inv.registry),
        escape(&inv.cluster)
    );
    let age = snapshot
        .refreshed_at
        .and_then(|t| now.duration_since(t).ok())
        .map(|d| format!(" ({} ago)", short_duration(d)))
        .unwrap_or_default();
    let took = snapshot
        .took
        .map(|d| format!(", took {:.1} s", d.as_secs_f64()))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<p class=\"meta\" id=\"status\">Inventory of {}{age}{took}; refreshed every {}.</p>",
        crate::show::time_string(snapshot.refreshed_at),
        short_duration(refresh)
    );
    if let Some(e) = &snapshot.error {
        let _ = write!(
            out,
            "<p class=\"error\" id=\"refresh-error\">The last refresh failed (showing the one before): {}</p>",
            escape(e)
        );
    }
    for w in &inv.warnings {
        let _ = write!(
            out,
            "<p class=\"error warning\">{}</p>",
            escape(&w.to_string())
        );
    }
    out.push_str("</header>\n");
}

fn totals(out: &mut String, inv: &Inventory) {
    let t = inv.totals();
    let _ = writeln!(
        out,
        "<dl class=\"totals\" id=\"cluster-totals\">\
         <div><dt>Repositories</dt><dd data-total=\"repositories\">{}</dd></div>\
         <div><dt>Images</dt><dd data-total=\"images\">{}</dd></div>\
         <div><dt>In use</dt><dd data-total=\"in-use\">{}</dd></div>\
         <div><dt>Stored</dt><dd data-total=\"stored\" data-bytes=\"{}\">{}</dd></div></dl>",
        t.repositories,
        t.images,
        t.in_use,
        t.stored_bytes,
        human_size(t.stored_bytes)
    );
}

fn form(out: &mut String, query: &PageQuery, sort: &str, desc: bool) {
    let _ = write!(
        out,
        "<form method=\"get\" action=\"\"><input type=\"search\" name=\"q\" value=\"{}\" \
         placeholder=\"repository, tag, digest or workload\"> <select name=\"sort\">",
        escape(query.q.as_deref().unwrap_or(""))
    );
    for (key, label) in SORTS {
        let selected = if key == sort { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{key}\"{selected}>{label}</option>");
    }
    let _ = writeln!(
        out,
        "</select> <select name=\"order\"><option value=\"desc\"{}>descending</option>\
         <option value=\"asc\"{}>ascending</option></select> <button>Show</button></form>",
        if desc { " selected" } else { "" },
        if desc { "" } else { " selected" }
    );
}

fn repository(
    out: &mut String,
    repo: &RepositoryInventory,
    images: &[&InventoryImage],
    query: &PageQuery,
    sort: &str,
    desc: bool,
) {
    let in_use = repo
        .images
        .iter()
        .filter(|i| !i.in_use_by.is_empty())
        .count();
    let badge = if repo.build_cache {
        "<span class=\"badge\">build cache</span>"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<section class=\"repository\" data-repository=\"{name}\"><h2>{name}{badge}</h2>\
         <p class=\"repo-totals\" data-images=\"{}\" data-stored=\"{}\">{} {}, {} in use, {} stored{}</p>",
        repo.images.len(),
        repo.stored_bytes,
        repo.images.len(),
        if repo.images.len() == 1 { "image" } else { "images" },
        in_use,
        human_size(repo.stored_bytes),
        match repo.orphaned_referrers {
            0 => String::new(),
            n => format!(", {n} orphaned referrers"),
        },
        name = escape(&repo.repository),
    );
    out.push_str("<table><thead><tr>");
    for (key, label) in [
        ("digest", "Digest"),
        ("tag", "Tags"),
        ("size", "Size"),
        ("pushed", "Pushed"),
        ("in_use", "In use"),
        ("", "Referrers"),
        ("expires", "Expires"),
    ] {
        let class = if key == "size" { " class=\"size\"" } else { "" };
        if key.is_empty() {
            let _ = write!(out, "<th{class}>{label}</th>");
            continue;
        }
        // A header sorts by its column; clicking the current one flips the order.
        let order = if key == sort && desc { "asc" } else { "desc" };
        let mark = match (key == sort, desc) {
            (true, true) => " ▾",
            (true, false) => " ▴",
            _ => "",
        };
        let _ = write!(
            out,
            "<th{class}><a href=\"?{}\">{label}{mark}</a></th>",
            link_query(query.q.as_deref(), key, order)
        );
    }
    out.push_str("</tr></thead><tbody>\n");
    for img in images {
        image_row(out, img);
    }
    out.push_str("</tbody></table></section>\n");
}

fn image_row(out: &mut String, img: &InventoryImage) {
    let digest = img.digest.to_string();
    let short = short_digest(&digest);
    let size = img.size.unwrap_or(0);
    let in_use = !img.in_use_by.is_empty();
    let _ = write!(
        out,
        "<tr class=\"image\" data-digest=\"{}\" data-size=\"{size}\" data-in-use=\"{in_use}\" \
         data-anchored=\"{}\"{}>",
        escape(&digest),
        img.anchored,
        match img.expires_at {
            Some(at) => format!(" data-expires=\"{}\"", crate::show::time_string(Some(at))),
            None => String::new(),
        }
    );
    let _ = write!(
        out,
        "<td class=\"digest\"><code title=\"{}\">{}</code></td>",
        escape(&digest),
        escape(short)
    );
    let tags: Vec<String> = img
        .tags
        .iter()
        .map(|t| format!("<code>{}</code>", escape(t)))
        .collect();
    let _ = write!(
        out,
        "<td class=\"tags\">{}</td>",
        if tags.is_empty() {
            "<span class=\"none\">untagged</span>".to_string()
        } else {
            tags.join(" ")
        }
    );
    let _ = write!(
        out,
        "<td class=\"size\" title=\"{size} bytes\">{}</td>",
        match img.size {
            Some(s) => human_size(s),
            None => "-".into(),
        }
    );
    let _ = write!(
        out,
        "<td class=\"pushed\">{}</td>",
        crate::show::time_string(img.pushed_at)
    );
    out.push_str("<td class=\"in-use\">");
    if in_use {
        let users: Vec<String> = img
            .in_use_by
            .iter()
            .map(|w| escape(&w.to_string()))
            .collect();
        let _ = write!(
            out,
            "<span class=\"marker\">● in use</span> <span class=\"workloads\">{}</span>",
            users.join(", ")
        );
    } else {
        out.push_str("<span class=\"none\">not in use</span>");
    }
    if img.anchored {
        out.push_str(" <span class=\"anchored\" title=\"carries an anchor tag: native retention keeps it\">⚓ anchored</span>");
    }
    out.push_str("</td>");
    let _ = write!(out, "<td class=\"referrers\">{}</td>", referrers(img));
    let expires = match img.expires_at {
        Some(at) if in_use => format!(
            "{} <span class=\"none\">(kept while in use)</span>",
            crate::show::time_string(Some(at))
        ),
        Some(at) => crate::show::time_string(Some(at)),
        None => "<span class=\"none\">-</span>".to_string(),
    };
    let _ = writeln!(out, "<td class=\"expires\">{expires}</td></tr>");
}

fn referrers(img: &InventoryImage) -> String {
    let parts = crate::show::referrer_counts(img);
    if parts.is_empty() {
        "<span class=\"none\">none</span>".to_string()
    } else {
        escape(&parts.join(", "))
    }
}

/// The images of `repo` the filter lets through, sorted.
fn visible<'a>(
    repo: &'a RepositoryInventory,
    filter: &str,
    sort: &str,
    desc: bool,
) -> Vec<&'a InventoryImage> {
    let mut images: Vec<&InventoryImage> = repo
        .images
        .iter()
        .filter(|i| filter.is_empty() || image_matches(&repo.repository, i, filter))
        .collect();
    images.sort_by(|a, b| {
        let ord = match sort {
            "size" => a.size.cmp(&b.size),
            "digest" => a.digest.cmp(&b.digest),
            "tag" => a.tags.first().cmp(&b.tags.first()),
            "in_use" => a.in_use_by.len().cmp(&b.in_use_by.len()),
            "expires" => a.expires_at.cmp(&b.expires_at),
            _ => a.pushed_at.cmp(&b.pushed_at),
        }
        .then_with(|| a.digest.cmp(&b.digest));
        if desc {
            ord.reverse()
        } else {
            ord
        }
    });
    images
}

fn image_matches(repository: &str, img: &InventoryImage, filter: &str) -> bool {
    matches(repository, filter)
        || matches(&img.digest.to_string(), filter)
        || img.tags.iter().any(|t| matches(t, filter))
        || img
            .in_use_by
            .iter()
            .any(|w| matches(&w.to_string(), filter))
}

fn matches(text: &str, filter: &str) -> bool {
    text.to_lowercase().contains(filter)
}

fn sort_of(query: &PageQuery) -> (&'static str, bool) {
    let wanted = query.sort.as_deref().unwrap_or("pushed");
    let sort = SORTS
        .iter()
        .map(|(k, _)| *k)
        .find(|k| *k == wanted)
        .unwrap_or("pushed");
    (sort, query.order.as_deref() != Some("asc"))
}

fn link_query(q: Option<&str>, sort: &str, order: &str) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    if let Some(q) = q.filter(|q| !q.is_empty()) {
        s.append_pair("q", q);
    }
    s.append_pair("sort", sort).append_pair("order", order);
    escape(&s.finish())
}

/// `sha256:` and the first 12 hex digits.
pub fn short_digest(digest: &str) -> &str {
    match digest.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 => &digest[..algo.len() + 1 + 12],
        _ => digest,
    }
}

/// Bytes in binary units with one decimal: `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_a_registry_cannot_open_an_element_or_leave_an_attribute() {
        assert_eq!(
            escape("<script>alert('x')</script>\" onload=\"x"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot; onload=&quot;x"
        );
    }

    #[test]
    fn sizes_and_digests_are_shortened_for_people() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&d), "sha256:abababababab");
        assert_eq!(short_digest("sha256:ab"), "sha256:ab");
    }

    #[test]
    fn an_unknown_sort_key_falls_back_to_push_time_newest_first() {
        let q = PageQuery {
            sort: Some("\"><script>".into()),
            ..PageQuery::default()
        };
        assert_eq!(sort_of(&q), ("pushed", true));
        let q = PageQuery {
            sort: Some("size".into()),
            order: Some("asc".into()),
            ..PageQuery::default()
        };
        assert_eq!(sort_of(&q), ("size", false));
    }

    #[test]
    fn a_page_before_the_first_inventory_says_so() {
        let page = render(
            &Snapshot::default(),
            &PageQuery::default(),
            Duration::from_secs(60),
            SystemTime::now(),
        );
        assert!(
            page.contains("The first inventory is being taken"),
            "{page}"
        );
    }

    #[test]
    fn an_anchored_image_in_use_shows_its_marker_users_and_escaped_names() {
        use mirror_core::inuse::{Workload, WorkloadKind};
        let digest = mirror_core::Digest::sha256_of(b"image");
        let mut img = InventoryImage::new(mirror_core::ImageRecord::new(
            "prod/services/<api>",
            digest.clone(),
        ));
        img.tags = vec!["v1\"><b>".into()];
        img.size = Some(3 * 1024 * 1024);
        img.anchored = true;
        img.in_use_by = vec![Workload::new(WorkloadKind::Deployment, Some("shop"), "api")];
        let inv = Inventory {
            registry: "registry.example".into(),
            cluster: "prod".into(),
            repositories: vec![RepositoryInventory {
                repository: "prod/services/<api>".into(),
                images: vec![img],
                orphaned_referrers: 0,
                build_cache: false,
                stored_bytes: 3 * 1024 * 1024,
            }],
            warnings: Vec::new(),
        };
        let snapshot = Snapshot {
            inventory: Some(std::sync::Arc::new(inv)),
            refreshed_at: Some(SystemTime::now()),
            took: Some(Duration::from_millis(300)),
            error: None,
        };
        let page = render(
            &snapshot,
            &PageQuery::default(),
            Duration::from_secs(60),
            SystemTime::now(),
        );
        assert!(page.contains("data-anchored=\"true\""), "{page}");
        assert!(page.contains("⚓ anchored"), "{page}");
        assert!(
            page.contains("● in use</span> <span class=\"workloads\">deployment shop/api</span>"),
            "{page}"
        );
        assert!(page.contains("3.0 MiB"), "{page}");
        assert!(
            page.contains("prod/services/&lt;api&gt;") && !page.contains("<api>"),
            "{page}"
        );
        assert!(
            page.contains("v1&quot;&gt;&lt;b&gt;") && !page.contains("<b>"),
            "{page}"
        );
    }
}
