//! The data plane: the [`ImageStore`] trait and its implementations.
//!
//! - [`http`]: the OCI distribution API over HTTP(S), with registry auth;
//! - [`layout`]: an OCI image layout directory on disk.

mod endpoint;
pub mod http;
pub mod layout;

pub use endpoint::{Endpoint, EndpointOptions};

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::digest::{Digest, Verifier};
use crate::error::{Error, Result};
use crate::media::RawManifest;

/// A stream of blob bytes.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A blob being read: its size when the store knows it, and its bytes.
pub struct Blob {
    /// The size the store announced (`Content-Length`, file size).
    pub size: Option<u64>,
    /// The bytes. The store does not verify them; the reader must (see `VerifyingStream`).
    pub stream: BlobStream,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob").field("size", &self.size).finish()
    }
}

/// Where a store's content lives; the copy engine mounts blobs between stores of one registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoreLocation {
    /// A repository of a registry.
    Registry {
        /// The registry host (`localhost:5000`, `docker.io`).
        registry: String,
        /// The repository path.
        repository: String,
    },
    /// An OCI image layout directory.
    Layout {
        /// The directory.
        path: PathBuf,
    },
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Registry {
                registry,
                repository,
            } => write!(f, "{registry}/{repository}"),
            StoreLocation::Layout { path } => write!(f, "oci:{}", path.display()),
        }
    }
}

/// What a manifest HEAD tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The manifest digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The answer to a cross-repository mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    /// The blob now exists in the target repository; nothing was uploaded.
    Mounted,
    /// The store did not mount (unsupported, blob absent in the source repository, or the
    /// registry declined); the caller must upload. No upload session is left open.
    NotMounted,
}

/// A registry's pull limit as it last announced it, in the `ratelimit-limit` /
/// `ratelimit-remaining` answer headers Docker Hub sends (`100;w=21600`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// Pulls allowed per window.
    pub limit: u64,
    /// Pulls left in the current window.
    pub remaining: u64,
    /// The window (`w=` seconds), when announced.
    #[serde(with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub window: Option<std::time::Duration>,
}

mod opt_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

impl RateLimit {
    /// Low: a tenth of the limit or less is left.
    pub fn is_low(&self) -> bool {
        self.remaining.saturating_mul(10) <= self.limit
    }

    /// Reads the headers of an answer (`None` without them or when unreadable).
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Self> {
        let field = |name: &str| -> Option<(u64, Option<u64>)> {
            let v = headers.get(name)?.to_str().ok()?;
            let mut parts = v.split(';');
            let n = parts.next()?.trim().parse().ok()?;
            let w = parts
                .filter_map(|p| p.trim().strip_prefix("w="))
                .find_map(|w| w.trim().parse().ok());
            Some((n, w))
        };
        let (limit, w1) = field("ratelimit-limit")?;
        let (remaining, w2) = field("ratelimit-remaining")?;
        Some(RateLimit {
            limit,
            remaining,
            window: w1.or(w2).map(std::time::Duration::from_secs),
        })
    }
}

/// A place that holds manifests and blobs: one repository of a registry, or one OCI layout.
///
/// # Contract
///
/// - `reference` arguments are a tag or a digest string (`sha256:…`).
/// - Manifests are stored and returned as raw bytes with their media type, byte for byte: the
///   digest of what `get_manifest` returns equals the digest of what was `put_manifest`.
/// - Absence is reported as `Ok(None)` / `Ok(false)` only when the store *knows* the item is
///   absent (HTTP 404, a missing file). Any failure to find out is an `Err`, never "absent".
///   Methods that return content report absence as [`Error::NotFound`].
/// - `put_blob` stores nothing that does not hash to `digest` or has another size than
///   `size`: it fails with [`Error::SizeMismatch`], [`Error::DigestMismatch`] (verified
///   here: layouts, registries with `verify_uploads`) or [`Error::DigestRejected`] (the
///   registry's own check refused the bytes).
/// - `put_manifest` of a manifest whose blobs and children are missing may fail (registries
///   check) or succeed (layouts do not check); the copy engine always writes children first.
/// - Every operation is idempotent and may run concurrently with any other on the same store.
#[async_trait]
pub trait ImageStore: Send + Sync + fmt::Debug {
    /// Where this store's content lives.
    fn location(&self) -> StoreLocation;

    /// The digest, media type and size of a manifest, or `None` if it does not exist.
    async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>>;

    /// A manifest's bytes and media type; [`Error::NotFound`] if it does not exist.
    async fn get_manifest(&self, reference: &str) -> Result<RawManifest>;

    /// Stores a manifest under `reference` (a tag, or its own digest), and says what the
    /// store did with its `subject` when it names one ([`PutOutcome`]).
    async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<PutOutcome>;

    /// Stores child manifests of an index that is about to be stored, each under its own
    /// digest. None of them names another (the copy stores a tree a level at a time, deepest
    /// first), so they may be stored in any order. The default puts up to eight at once; a
    /// layout writes them as blobs only (the index that follows reaches them), so that an
    /// index of thousands of children costs no quadratic `index.json` rewrites.
    async fn put_children(&self, children: &[&RawManifest]) -> Result<()> {
        use futures::{StreamExt, TryStreamExt};
        let mut puts = Vec::with_capacity(children.len());
        for &child in children {
            puts.push(async move {
                self.put_manifest(&child.digest.to_string(), child)
                    .await
                    .map(|_| ())
            });
        }
        futures::stream::iter(puts)
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// Deletes the manifest with this digest (and with it every tag pointing to it).
    /// [`Error::NotFound`] if it does not exist.
    async fn delete_manifest(&self, digest: &Digest) -> Result<()>;

    /// Whether a blob exists; with `size`, whether it is there whole: a store that can check
    /// cheaply (a layout on disk) checks the size, and the content when it is small, and
    /// takes a wrong file for absent (which [`put_blob`](ImageStore::put_blob) then
    /// replaces); a registry verifies what it stores and answers for the digest. The copy
    /// engine asks with the size before skipping a blob.
    async fn has_blob(&self, digest: &Digest, size: Option<u64>) -> Result<bool>;

    /// Opens a blob for reading; [`Error::NotFound`] if it does not exist.
    async fn get_blob(&self, digest: &Digest) -> Result<Blob>;

    /// Stores a blob from a stream; digest and size are verified on the way (see the trait's
    /// contract for who verifies the digest).
    async fn put_blob(&self, digest: &Digest, size: u64, data: BlobStream) -> Result<()>;

    /// Makes a blob of another repository of the same registry available here without
    /// uploading it. The default declines.
    async fn mount_blob(&self, digest: &Digest, from_repository: &str) -> Result<MountOutcome> {
        let _ = (digest, from_repository);
        Ok(MountOutcome::NotMounted)
    }

    /// Every tag, sorted as the store returns them.
    async fn list_tags(&self) -> Result<Vec<String>>;

    /// The referrers of `subject`: descriptors (with `artifactType` and annotations) of the
    /// manifests whose `subject` names it, through the OCI 1.1 referrers API, or for a layout
    /// read from the manifests it holds. `artifact_type` asks the store to filter (a store may
    /// not; callers filter again). `None` when the store does not serve the API: the
    /// referrers tag schema applies (see the `image::referrers` module). The default is `None`.
    async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<crate::media::Descriptor>>> {
        let _ = (subject, artifact_type);
        Ok(None)
    }
}

/// What a store did when it stored a manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOutcome {
    /// For a manifest naming a `subject` (a referrer): the store indexed it as a referrer of
    /// that subject (an OCI 1.1 registry answers the `PUT` with `OCI-Subject`; a layout
    /// always does). When it did not, the referrers tag schema applies.
    pub subject_indexed: bool,
}

impl PutOutcome {
    /// A manifest stored, its subject indexed (`true`) or not.
    pub fn indexed(subject_indexed: bool) -> Self {
        PutOutcome { subject_indexed }
    }
}

/// Wraps a blob stream: hashes every chunk ([`VerifyingStream::size_only`]: counts them) and
/// checks digest and size by the last byte. On a mismatch the stream yields the error (which aborts an upload fed from it) and
/// also keeps it, so that the caller can report the typed error rather than the transport's.
pub(crate) struct VerifyingStream {
    inner: BlobStream,
    verifier: Option<Verifier>,
    failure: Arc<Mutex<Option<Error>>>,
    digest: Digest,
    size: Option<u64>,
    finished: bool,
}

impl VerifyingStream {
    /// Verifies `inner` against `digest` and `size`.
    pub fn new(inner: BlobStream, digest: Digest, size: Option<u64>) -> Self {
        VerifyingStream {
            inner,
            verifier: Some(Verifier::new(digest.clone(), size)),
            failure: Arc::new(Mutex::new(None)),
            digest,
            size,
            finished: false,
        }
    }

    /// Checks `inner`'s size alone (see [`Verifier::size_only`]): for a receiver that checks
    /// the digest itself.
    pub fn size_only(inner: BlobStream, digest: Digest, size: u64) -> Self {
        VerifyingStream {
            inner,
            verifier: Some(Verifier::size_only(digest.clone(), size)),
            failure: Arc::new(Mutex::new(None)),
            digest,
            size: Some(size),
            finished: false,
        }
    }

    /// A handle that holds the verification error once the stream has produced it.
    pub fn failure(&self) -> Arc<Mutex<Option<Error>>> {
        self.failure.clone()
    }

    fn too_long(&self) -> Error {
        let size = self.size.unwrap_or(0);
        Error::SizeMismatch {
            digest: self.digest.clone(),
            expected: size,
            actual: size + 1,
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        // Keep the typed error for the caller (`failure()`); the consumer of the stream (an
        // HTTP body) gets a read failure that describes it.
        let shown = Error::Io {
            path: "blob stream".into(),
            source: std::io::Error::other(e.to_string()),
        };
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(e);
        }
        shown
    }
}

/// Takes the typed error a [`VerifyingStream`] stored, if any.
pub(crate) fn take_failure(slot: &Arc<Mutex<Option<Error>>>) -> Option<Error> {
    slot.lock().ok().and_then(|mut s| s.take())
}

impl Stream for VerifyingStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.verifier.is_none() {
            if this.finished {
                return Poll::Ready(None);
            }
            // Verified complete: anything more from the source is too much.
            return match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => {
                    this.finished = true;
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Ok(c))) if c.is_empty() => Poll::Ready(Some(Ok(c))),
                Poll::Ready(Some(Ok(_))) => {
                    this.finished = true;
                    let e = this.too_long();
                    Poll::Ready(Some(Err(this.fail(e))))
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    Poll::Ready(Some(Err(this.fail(e))))
                }
            };
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let res = match this.verifier.as_mut() {
                    Some(v) => v.update(&chunk),
                    None => Ok(()),
                };
                if let Err(e) = res {
                    this.verifier = None;
                    return Poll::Ready(Some(Err(this.fail(e))));
                }
                // A consumer that knows the length (an HTTP body with Content-Length) stops
                // polling after the last byte, so the check must happen before that byte is
                // handed over: verify as soon as the expected size is reached.
                let complete = this.verifier.as_ref().is_some_and(|v| v.is_complete());
                if complete {
                    if let Some(Err(e)) = this.verifier.take().map(Verifier::finish) {
                        return Poll::Ready(Some(Err(this.fail(e))));
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.verifier = None;
                this.finished = true;
                Poll::Ready(Some(Err(this.fail(e))))
            }
            Poll::Ready(None) => {
                this.finished = true;
                match this.verifier.take().map(Verifier::finish) {
                    Some(Err(e)) => Poll::Ready(Some(Err(this.fail(e)))),
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}

/// Opens `reference` (tag or digest) in `store` for reading and verifies a manifest fetched by
/// digest against that digest.
pub(crate) async fn get_verified_manifest(
    store: &dyn ImageStore,
    reference: &str,
) -> Result<RawManifest> {
    let m = store.get_manifest(reference).await?;
    if let Ok(expected) = Digest::parse(reference) {
        if m.digest != expected {
            // Our RawManifest digest is always sha256 of the bytes; compare like for like.
            let actual = expected.compute_like(&m.bytes);
            if actual != expected {
                return Err(Error::DigestMismatch { expected, actual });
            }
        }
    }
    Ok(m)
}
