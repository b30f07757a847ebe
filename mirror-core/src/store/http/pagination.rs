//! Listings that follow `Link` pagination (catalog, tags), with bounded pages and the next
//! page only on this registry's origin.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::{Response, StatusCode};
use url::Url;

use crate::error::{Error, Result};

use super::*;

/// What a 404 answer to the first page means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Absent {
    /// An error (the catalog).
    Error,
    /// Nothing to list (a repository that does not exist yet has no tags).
    Empty,
    /// The registry does not serve this listing (the referrers API of a registry older than
    /// OCI 1.1): `None`.
    Unsupported,
}

/// What one kind of listing reads from its pages.
pub(super) struct Pages {
    /// The array in each page (`repositories`, `tags`, `manifests`).
    pub(super) field: &'static str,
    /// What a 404 means.
    pub(super) absent: Absent,
    /// An empty page ends the listing even if a `Link` follows (some registries loop).
    pub(super) empty_ends: bool,
    /// The `Accept` header, when the listing is a typed document.
    pub(super) accept: Option<&'static str>,
    /// Most items read (memory stays bounded whatever the registry sends).
    pub(super) max_items: usize,
    /// Past `max_items`: keep the first ones (true) or refuse the listing (false: a listing
    /// that eviction reads must be whole).
    pub(super) truncate: bool,
}

impl Pages {
    pub(super) const CATALOG: Pages = Pages {
        field: "repositories",
        absent: Absent::Error,
        empty_ends: true,
        accept: None,
        max_items: 1_000_000,
        truncate: false,
    };
    pub(super) const TAGS: Pages = Pages {
        field: "tags",
        absent: Absent::Empty,
        empty_ends: false,
        accept: None,
        max_items: 1_000_000,
        truncate: false,
    };
    pub(super) const REFERRERS: Pages = Pages {
        field: "manifests",
        absent: Absent::Unsupported,
        empty_ends: true,
        accept: Some(crate::media::OCI_INDEX),
        // Discovery keeps at most `ReferrerOptions::max_count` anyway.
        max_items: 10_000,
        truncate: true,
    };
}

/// Pages followed at most before a listing is refused as never ending.
pub(super) const MAX_PAGES: usize = 10_000;
/// Largest page read: protects memory from a hostile registry.
pub const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

impl RegistryClient {
    /// Every repository of the registry (`GET /v2/_catalog`, following `Link` pagination).
    ///
    /// Not every registry serves the catalog (Docker Hub does not); those answer an error.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let scopes = vec!["registry:catalog:*".to_string()];
        let mut url = self.url("v2/_catalog")?;
        url.query_pairs_mut().append_pair("n", "1000");
        Ok(self
            .paginate("GET catalog", "/v2/_catalog", &scopes, url, Pages::CATALOG)
            .await?
            .unwrap_or_default())
    }

    /// Reads a paginated listing from `url`: each page a JSON object holding an array of
    /// items, the next page named by a `Link: <…>; rel="next"` header. A next page on
    /// another origin (scheme, host, port) is refused: the credentials of this registry
    /// would go with the request. `None` when the registry does not serve the listing
    /// ([`Absent::Unsupported`]).
    pub(super) async fn paginate<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        loc: &str,
        scopes: &[String],
        mut url: Url,
        pages: Pages,
    ) -> Result<Option<Vec<T>>> {
        let mut out = Vec::new();
        for page_number in 0..MAX_PAGES {
            let u = url.clone();
            let resp = self
                .send(op, loc, scopes, |c| {
                    let req = c.get(u.clone());
                    match pages.accept {
                        Some(a) => req.header(reqwest::header::ACCEPT, a),
                        None => req,
                    }
                })
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                match pages.absent {
                    // NAME_UNKNOWN: the repository does not exist yet, so it has no tags.
                    Absent::Empty => return Ok(Some(out)),
                    Absent::Unsupported if page_number == 0 => return Ok(None),
                    _ => {}
                }
            }
            if !resp.status().is_success() {
                return Err(self.error_for(resp, op, loc).await);
            }
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_next_link);
            let body = read_capped(resp, MAX_PAGE_BYTES)
                .await
                .map_err(|e| match e {
                    Capped::Transport(e) => self.connect_error(op, loc, e),
                    Capped::TooLarge => self.protocol(
                        op,
                        loc,
                        format!("a page larger than the {MAX_PAGE_BYTES} bytes accepted"),
                    ),
                })?;
            let page: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| self.protocol(op, loc, format!("unreadable page: {e}")))?;
            let names: Vec<T> = match page.get(pages.field) {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                    self.protocol(op, loc, format!("unreadable `{}`: {e}", pages.field))
                })?,
            };
            let empty = names.is_empty();
            out.extend(names);
            if out.len() > pages.max_items {
                if pages.truncate {
                    tracing::warn!(registry = %self.inner.registry, %op, %loc, max = pages.max_items, "a listing longer than the bound; the rest is not read");
                    out.truncate(pages.max_items);
                    return Ok(Some(out));
                }
                return Err(self.protocol(
                    op,
                    loc,
                    format!("a listing of more than {} items", pages.max_items),
                ));
            }
            match next {
                Some(n) if !(empty && pages.empty_ends) => {
                    url = self.inner.base.join(&n).map_err(|e| {
                        self.protocol(op, loc, format!("unreadable Link {n:?}: {e}"))
                    })?;
                    if url.origin() != self.inner.base.origin() {
                        return Err(self.protocol(
                            op,
                            loc,
                            format!(
                                "the next page is on another origin ({url}); refusing to send \
                                 this registry's credentials there"
                            ),
                        ));
                    }
                }
                _ => return Ok(Some(out)),
            }
        }
        Err(self.protocol(op, loc, "pagination does not end"))
    }

    /// An answer of `op` on `loc` that cannot be read.
    pub(super) fn protocol(&self, op: &str, loc: &str, reason: impl Into<String>) -> Error {
        Error::Protocol {
            registry: self.inner.registry.clone(),
            operation: op.to_string(),
            location: loc.to_string(),
            // Reasons quote what the registry sent (a serde error names the value, a Link
            // its text): shown clean and short.
            reason: crate::error::sanitize(&reason.into(), crate::error::MAX_SHOWN_TEXT),
        }
    }
}

/// Why a capped read failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Capped {
    /// The connection failed.
    Transport(reqwest::Error),
    /// The body is longer than the limit (nothing past it was read).
    TooLarge,
}

/// The whole body of `resp`, failing past `limit` bytes without reading further: for every
/// answer read whole (pages, token answers, control-plane answers), so that a hostile server
/// cannot grow the process. See [`MAX_PAGE_BYTES`], [`MAX_TOKEN_BYTES`],
/// [`MAX_CONTROL_PLANE_BYTES`].
pub async fn read_capped(resp: Response, limit: usize) -> std::result::Result<Bytes, Capped> {
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Err(Capped::TooLarge);
    }
    let mut body = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Capped::Transport)?;
        if body.len() + chunk.len() > limit {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Largest token-server answer read (a JWT is a few kilobytes).
pub const MAX_TOKEN_BYTES: usize = 1024 * 1024;
/// Largest control-plane answer a provider reads (a page of a cloud listing).
pub const MAX_CONTROL_PLANE_BYTES: usize = 16 * 1024 * 1024;

/// Extracts the `rel="next"` target of a `Link` header (`<url>; rel="next"`).
pub fn parse_next_link(header: &str) -> Option<String> {
    // Split on the commas that separate links, not on commas inside `<…>`; a malformed link
    // is skipped rather than hiding the others.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in header.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&header[start..]);
    for part in parts {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            continue;
        };
        let Some((target, params)) = rest.split_once('>') else {
            continue;
        };
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        if is_next && !target.is_empty() {
            return Some(target.to_string());
        }
    }
    None
}
