//! Listings that follow `Link` pagination (catalog, tags), with bounded pages and the next
//! page only on this registry's origin.

use crate::error::Operation;
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
        // A repository of 50,000 images with their bookkeeping tags stays well below; a
        // million tags (a hostile or runaway registry) would cost a HEAD each: refused.
        max_items: 200_000,
        truncate: false,
    };
    pub(super) const REFERRERS: Pages = Pages {
        field: "manifests",
        absent: Absent::Unsupported,
        empty_ends: true,
        accept: Some(crate::media::OCI_INDEX),
        // Per subject, applied while reading: discovery keeps at most
        // `ReferrerOptions::max_count` (512 by default) in all anyway.
        max_items: 4_096,
        truncate: true,
    };
}

/// Pages followed at most before a listing is refused as never ending.
pub(super) const MAX_PAGES: usize = 10_000;
/// Largest page read: protects memory from a hostile registry.
pub const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest listing read in all, its pages together: a registry answering page after page of
/// 12 MB grows no process past it. A million tags of 30 characters take about 33 MB.
pub(crate) const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// One page of a listing: the items of its array `field`, at most `max` of them, and how many
/// more it held (skipped while reading: never held in memory, not even as JSON values).
pub(super) struct CappedPage<T> {
    pub(super) items: Vec<T>,
    pub(super) skipped: usize,
}

impl<T: serde::de::DeserializeOwned> CappedPage<T> {
    pub(super) fn read(
        body: &[u8],
        field: &'static str,
        max: usize,
    ) -> std::result::Result<Self, serde_json::Error> {
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_slice(body);
        let page = PageSeed::<T> {
            field,
            max,
            item: std::marker::PhantomData,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(page)
    }
}

struct PageSeed<T> {
    field: &'static str,
    max: usize,
    item: std::marker::PhantomData<T>,
}

impl<'de, T: serde::de::DeserializeOwned> serde::de::DeserializeSeed<'de> for PageSeed<T> {
    type Value = CappedPage<T>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: serde::de::DeserializeOwned> serde::de::Visitor<'de> for PageSeed<T> {
    type Value = CappedPage<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an object with an array `{}`", self.field)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut page = CappedPage {
            items: Vec::new(),
            skipped: 0,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field {
                let seq: Option<CappedPage<T>> = map.next_value_seed(OptionalSeq::<T> {
                    max: self.max,
                    item: std::marker::PhantomData,
                })?;
                if let Some(seq) = seq {
                    page = seq;
                }
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(page)
    }
}

/// The array (or `null`) of a page, at most `max` items kept.
struct OptionalSeq<T> {
    max: usize,
    item: std::marker::PhantomData<T>,
}

impl<'de, T: serde::de::DeserializeOwned> serde::de::DeserializeSeed<'de> for OptionalSeq<T> {
    type Value = Option<CappedPage<T>>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: serde::de::DeserializeOwned> serde::de::Visitor<'de> for OptionalSeq<T> {
    type Value = Option<CappedPage<T>>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut page = CappedPage {
            items: Vec::new(),
            skipped: 0,
        };
        loop {
            if page.items.len() < self.max {
                match seq.next_element::<T>()? {
                    Some(item) => page.items.push(item),
                    None => break,
                }
            } else {
                match seq.next_element::<serde::de::IgnoredAny>()? {
                    Some(_) => page.skipped += 1,
                    None => break,
                }
            }
        }
        Ok(Some(page))
    }
}

impl RegistryClient {
    /// Every repository of the registry (`GET /v2/_catalog`, following `Link` pagination).
    ///
    /// Not every registry serves the catalog (Docker Hub does not); those answer an error.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let scopes = vec!["registry:catalog:*".to_string()];
        let mut url = self.url("v2/_catalog")?;
        url.query_pairs_mut().append_pair("n", "1000");
        let names: Vec<String> = self
            .paginate(
                &Operation::Catalog,
                "/v2/_catalog",
                &scopes,
                url,
                Pages::CATALOG,
            )
            .await?
            .unwrap_or_default();
        Ok(super::store::valid_only(
            names,
            "repository",
            &format!("{}/v2/_catalog", self.inner.registry),
            crate::reference::validate_repository,
        ))
    }

    /// Reads a paginated listing from `url`: each page a JSON object holding an array of
    /// items, the next page named by a `Link: <…>; rel="next"` header. A next page on
    /// another origin (scheme, host, port) is refused: the credentials of this registry
    /// would go with the request. `None` when the registry does not serve the listing
    /// ([`Absent::Unsupported`]).
    pub(super) async fn paginate<T: serde::de::DeserializeOwned>(
        &self,
        op: &Operation,
        loc: &str,
        scopes: &[String],
        mut url: Url,
        pages: Pages,
    ) -> Result<Option<Vec<T>>> {
        let mut out = Vec::new();
        // What the listing cost so far: its pages' bytes, and the pages read (a `Link` that
        // names a page already read would loop forever).
        let mut total_bytes = 0usize;
        let mut read: std::collections::HashSet<String> = std::collections::HashSet::new();
        for page_number in 0..MAX_PAGES {
            if !read.insert(url.as_str().to_string()) {
                return Err(self.protocol(
                    op,
                    loc,
                    format!("the Link of a page names a page already read ({url}): a loop"),
                ));
            }
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
            let room = MAX_PAGE_BYTES.min(MAX_LISTING_BYTES.saturating_sub(total_bytes));
            let body = read_capped(resp, room).await.map_err(|e| match e {
                Capped::Transport(e) => self.connect_error(op, loc, e),
                Capped::TooLarge if room < MAX_PAGE_BYTES => self.protocol(
                    op,
                    loc,
                    format!(
                        "a listing larger than the {MAX_LISTING_BYTES} bytes accepted in all \
                         (after {} pages)",
                        page_number
                    ),
                ),
                Capped::TooLarge => self.protocol(
                    op,
                    loc,
                    format!("a page larger than the {MAX_PAGE_BYTES} bytes accepted"),
                ),
            })?;
            total_bytes += body.len();
            // Items past the bound are skipped while the page is read, never held.
            let left = pages.max_items.saturating_sub(out.len());
            let page = CappedPage::<T>::read(&body, pages.field, left).map_err(|e| {
                // Which part is unreadable: the page as JSON, or its array.
                let what = match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                    Ok(_) => format!("`{}`", pages.field),
                    Err(_) => "page".to_string(),
                };
                self.protocol(op, loc, format!("unreadable {what}: {e}"))
            })?;
            let empty = page.items.is_empty() && page.skipped == 0;
            out.extend(page.items);
            if page.skipped > 0 {
                if pages.truncate {
                    tracing::warn!(registry = %self.inner.registry, %op, %loc, max = pages.max_items, "a listing longer than the bound; the rest is not read");
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
    pub(super) fn protocol(&self, op: &Operation, loc: &str, reason: impl Into<String>) -> Error {
        Error::Protocol {
            registry: self.inner.registry.clone(),
            operation: op.clone(),
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
