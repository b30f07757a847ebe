//! The OCI image layout store: an [`ImageStore`] backed by a directory on disk.
//!
//! # The layout
//!
//! A directory following the [OCI image layout spec]:
//!
//! - `oci-layout`: `{"imageLayoutVersion":"1.0.0"}`, the marker [`LayoutStore::open`] checks;
//! - `blobs/<alg>/<hex>`: every blob *and* every manifest, named by its digest;
//! - `index.json`: an OCI index whose `manifests` entries are the layout's entry points.
//!
//! # Tags
//!
//! A tag is an `index.json` entry (`mediaType`, `digest`, `size`) with the annotation
//! `org.opencontainers.image.ref.name` = tag, as `skopeo` and `oras` write them. Putting a tag
//! replaces any entry carrying the same tag. A manifest put by digest is written as a blob and,
//! unless some entry already names its digest, gets an entry without a tag so that tools
//! walking `index.json` still find it. Putting an index (by tag or digest) drops the untagged
//! entries of its children, which stay reachable through it and by digest: the copy engine
//! writes children by digest first, and `index.json` then ends up holding only the tagged root,
//! as `skopeo copy` leaves it. Putting a tag likewise drops the untagged entry of its digest.
//!
//! The media type of a manifest is read from its `index.json` entry when there is one, else
//! from the document itself (its `mediaType` field, or its shape). A blob that is not a
//! manifest document (a layer, a config) is not a manifest: looking it up as one answers
//! "absent", as a registry would.
//!
//! # Concurrency and crash safety
//!
//! - Blobs are streamed into a uniquely named temporary file next to their final place
//!   (`blobs/<alg>/.tmp-…`), verified while they are written, then renamed into place: a blob
//!   path only ever holds complete, verified content. A failed or cancelled upload removes its
//!   temporary file. Concurrent uploads of one blob both succeed (the renames are atomic).
//!   Temporary files are named after their writer (`.tmp-<pid namespace>-<pid>-…`); opening
//!   a layout for writing ([`LayoutStore::create`]) removes those of writers that are dead (a
//!   killed copy), and those of writers it cannot check (another pid namespace) after an hour
//!   without a write.
//! - A file already under a blob's name counts as the blob only with the blob's size, and up
//!   to `VERIFY_UP_TO` bytes its digest; anything else is replaced.
//! - Every change of `index.json` (and the manifest and deletion writes that go with it) runs
//!   under an exclusive lock on `index.json.lock` in the layout, taken with [`std::fs::File::lock`]
//!   on a blocking thread, so that tasks of one process and separate processes serialise their
//!   read-modify-write cycles. The new index is written to a temporary file, synced and
//!   renamed over `index.json`; readers therefore need no lock and always see a whole index.
//! - Paths are built only from validated tags and parsed digests, so nothing escapes the
//!   layout directory.
//!
//! [OCI image layout spec]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::digest::{Digest, Verifier};
use crate::error::{Error, Result};
use crate::media::{RawManifest, OCI_INDEX};
use crate::store::{Blob, BlobStream, ImageStore, ManifestHead, PutOutcome, StoreLocation};

/// Blobs up to this size are hashed before a copy counts them as present (4 MiB: configs,
/// manifests and small layers; larger ones are checked by size).
pub(crate) const VERIFY_UP_TO: u64 = 4 * 1024 * 1024;

mod files;
mod location;
#[cfg(test)]
mod tests;

pub use location::parse_oci_location;

#[allow(unused_imports)]
use self::{files::*, location::*};
/// The annotation holding a tag on an `index.json` entry.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LOCK_FILE: &str = "index.json.lock";
const BLOBS_DIR: &str = "blobs";
const LAYOUT_VERSION: &str = "1.0.0";
/// Blobs larger than this are not taken for manifests (the distribution registry's limit).
const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Read buffer of blob streams.
const READ_CHUNK: usize = 256 * 1024;

/// An OCI image layout directory as an [`ImageStore`] (see the [module docs](self)).
///
/// Clones share the in-process writer queue; separate instances on one directory (and other
/// processes) are serialised by the lock file.
#[derive(Debug, Clone)]
pub struct LayoutStore {
    root: PathBuf,
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A manifest reference, validated.
enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

/// One `index.json` entry, as read.
struct Entry {
    media_type: String,
    digest: Digest,
    tag: Option<String>,
}

/// What a manifest lookup found.
struct Found {
    digest: Digest,
    media_type: String,
    size: u64,
    manifest: Option<RawManifest>,
}

impl LayoutStore {
    /// Opens an existing layout. Fails with [`Error::NotFound`] if `path` does not exist and
    /// with an error naming `path` if it is not an OCI image layout (no `oci-layout` marker of
    /// version 1.x, or no `index.json`).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let root = path.into();
        check_layout(&root)?;
        Ok(Self::at(root))
    }

    /// Opens a layout for writing, creating the directory, `oci-layout`, `index.json` and
    /// `blobs/sha256` as needed. Existing content is kept; temporary files that dead writers
    /// left behind (a killed copy) are removed (see the module docs).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let root = path.into();
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        // No symbolic link inside the layout: blobs written through one would land outside.
        real_dir(&root, &root.join(BLOBS_DIR).join("sha256"))?;
        let marker = root.join(LAYOUT_FILE);
        if !file_exists(&marker)? {
            let text = json!({ "imageLayoutVersion": LAYOUT_VERSION }).to_string();
            write_atomic(&root, &marker, text.as_bytes())?;
        }
        with_lock(&root, |root| {
            let index = root.join(INDEX_FILE);
            if !file_exists(&index)? {
                let empty = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [] });
                write_atomic(root, &index, empty.to_string().as_bytes())?;
            }
            Ok(())
        })?;
        check_layout(&root)?;
        let removed = clean_stale_temp_files(&root)?;
        if removed > 0 {
            tracing::info!(layout = %root.display(), removed, "removed temporary files of dead writers");
        }
        Ok(Self::at(root))
    }

    /// The layout directory, as given to [`LayoutStore::open`] or [`LayoutStore::create`].
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn at(root: PathBuf) -> Self {
        LayoutStore {
            root,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn tag_location(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.root.display())
    }

    fn digest_location(&self, digest: &Digest) -> String {
        format!("oci:{}@{digest}", self.root.display())
    }

    fn ref_location(&self, r: &ManifestRef) -> String {
        match r {
            ManifestRef::Tag(t) => self.tag_location(t),
            ManifestRef::Digest(d) => self.digest_location(d),
        }
    }

    async fn read_entries(&self) -> Result<Vec<Entry>> {
        let path = self.root.join(INDEX_FILE);
        let bytes = read_regular_async(path.clone(), MAX_INDEX_SIZE)
            .await?
            .ok_or_else(|| {
                Error::io(
                    &path,
                    io::Error::new(io::ErrorKind::NotFound, "no index.json"),
                )
            })?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| bad_index(&path, e))?;
        parse_entries(&doc, &path)
    }

    /// Runs `f` on a blocking thread under the layout's exclusive lock.
    async fn locked<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T> + Send + 'static,
    {
        // Queue this process's writers here rather than on blocking threads.
        let _queue = self.writer.lock().await;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || with_lock(&root, f))
            .await
            .map_err(|e| Error::io(&self.root, io::Error::other(format!("layout task: {e}"))))?
    }

    /// Looks a manifest up; `Ok(None)` only when it is known to be absent.
    async fn find(&self, r: &ManifestRef, want_bytes: bool) -> Result<Option<Found>> {
        let loc = self.ref_location(r);
        match r {
            ManifestRef::Tag(tag) => {
                // A second look tells a concurrent delete (entry gone) from a broken layout.
                for attempt in 0..2 {
                    let entries = self.read_entries().await?;
                    let Some(e) = entries.into_iter().find(|e| e.tag.as_deref() == Some(tag))
                    else {
                        return Ok(None);
                    };
                    let media = (!e.media_type.is_empty()).then_some(e.media_type.as_str());
                    if let Some(found) = self.read_manifest(&e.digest, media, want_bytes).await? {
                        return Ok(Some(found));
                    }
                    if attempt == 1 {
                        return Err(Error::InvalidManifest {
                            location: loc,
                            reason: format!(
                                "index.json names {} but its blob is missing",
                                e.digest
                            ),
                        });
                    }
                }
                Ok(None)
            }
            ManifestRef::Digest(d) => {
                let entries = self.read_entries().await?;
                let media = entries
                    .iter()
                    .find(|e| &e.digest == d && !e.media_type.is_empty())
                    .map(|e| e.media_type.clone());
                self.read_manifest(d, media.as_deref(), want_bytes).await
            }
        }
    }

    /// Reads (or only stats, when the media type is known and no bytes are wanted) the blob
    /// of manifest `digest`. `None`: no such blob, or it is not a manifest document.
    async fn read_manifest(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
        want_bytes: bool,
    ) -> Result<Option<Found>> {
        let path = blob_path(&self.root, digest);
        let size = match tokio::fs::symlink_metadata(&path).await {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        if let (Some(mt), false) = (media_type, want_bytes) {
            return Ok(Some(Found {
                digest: digest.clone(),
                media_type: mt.to_string(),
                size,
                manifest: None,
            }));
        }
        if size > MAX_MANIFEST_SIZE {
            // Not a manifest (a layer under the digest asked for), or one no registry takes:
            // never read whole (a 2 GiB sparse file under a manifest's name).
            return match media_type {
                None => Ok(None),
                Some(_) => Err(Error::InvalidManifest {
                    location: self.digest_location(digest),
                    reason: format!(
                        "{size} bytes, more than the {MAX_MANIFEST_SIZE} a manifest may have"
                    ),
                }),
            };
        }
        let bytes = match read_regular_async(path.clone(), MAX_MANIFEST_SIZE).await? {
            Some(b) => Bytes::from(b),
            None => return Ok(None),
        };
        digest.verify(&bytes)?;
        let manifest = match media_type {
            Some(mt) => RawManifest::new(bytes, mt),
            None => match as_manifest(bytes, &self.digest_location(digest))? {
                Some(m) => m,
                None => return Ok(None),
            },
        };
        Ok(Some(Found {
            digest: digest.clone(),
            media_type: manifest.media_type.clone(),
            size: manifest.bytes.len() as u64,
            manifest: Some(manifest),
        }))
    }
}

#[async_trait]
impl ImageStore for LayoutStore {
    fn location(&self) -> StoreLocation {
        StoreLocation::Layout {
            path: self.root.clone(),
        }
    }

    async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>> {
        let r = parse_reference(reference)?;
        Ok(self.find(&r, false).await?.map(|f| ManifestHead {
            digest: f.digest,
            media_type: f.media_type,
            size: f.size,
        }))
    }

    async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        let r = parse_reference(reference)?;
        match self.find(&r, true).await?.and_then(|f| f.manifest) {
            Some(m) => Ok(m),
            None => Err(Error::manifest_not_found(self.ref_location(&r))),
        }
    }

    /// A layout indexes every manifest it holds: [`referrers`](ImageStore::referrers) finds
    /// one naming a `subject` through it.
    async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<PutOutcome> {
        let r = parse_reference(reference)?;
        manifest.digest.verify(&manifest.bytes)?;
        if let ManifestRef::Digest(d) = &r {
            if d != &manifest.digest {
                return Err(Error::DigestMismatch {
                    expected: d.clone(),
                    actual: manifest.digest.clone(),
                });
            }
        }
        if manifest.media_type.is_empty() {
            return Err(Error::InvalidManifest {
                location: self.ref_location(&r),
                reason: "a manifest needs a media type to be stored in a layout".into(),
            });
        }
        let m = manifest.clone();
        self.locked(move |root| put_manifest_locked(root, r, &m))
            .await?;
        Ok(PutOutcome::indexed(true))
    }

    /// Blobs only: the index put next reaches them (see the trait). Each is verified and
    /// written atomically, under the layout lock.
    async fn put_children(&self, children: &[&RawManifest]) -> Result<()> {
        for child in children {
            child.digest.verify(&child.bytes)?;
        }
        let children: Vec<RawManifest> = children.iter().map(|c| (*c).clone()).collect();
        self.locked(move |root| {
            for m in &children {
                write_manifest_blob(root, m)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        let d = digest.clone();
        let loc = self.digest_location(digest);
        self.locked(move |root| {
            let text = d.to_string();
            let removed = update_index(root, |list| {
                let before = list.len();
                list.retain(|e| entry_digest(e) != Some(text.as_str()));
                Ok(before - list.len())
            })?;
            let path = blob_path(root, &d);
            let is_manifest = if removed > 0 {
                true
            } else {
                blob_holds_manifest(&path, &d, &loc)?
            };
            if is_manifest {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
                Ok(())
            } else {
                Err(Error::manifest_not_found(loc))
            }
        })
        .await
    }

    /// A regular file under the blob's name; with `size`, the file must have that size, and
    /// up to `VERIFY_UP_TO` bytes its content is hashed: a truncated or foreign file under a
    /// blob's name (a crash of another tool, a hand copy) is not taken for the blob.
    async fn has_blob(&self, digest: &Digest, size: Option<u64>) -> Result<bool> {
        let path = blob_path(&self.root, digest);
        let len = match tokio::fs::symlink_metadata(&path).await {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let Some(size) = size else {
            return Ok(true);
        };
        if len != size {
            tracing::warn!(path = %path.display(), expected = size, found = len, "a blob file of the wrong size; it is replaced");
            return Ok(false);
        }
        if size > VERIFY_UP_TO {
            return Ok(true);
        }
        let Some(bytes) = read_regular_async(path.clone(), size).await? else {
            return Ok(false);
        };
        if digest.verify(&bytes).is_err() {
            tracing::warn!(path = %path.display(), "a blob file whose content is not its digest; it is replaced");
            return Ok(false);
        }
        Ok(true)
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Blob> {
        let path = blob_path(&self.root, digest);
        // A regular file only: a FIFO among the blobs would hang the copy, a device never end.
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || open_regular(&path, None))
                .await
                .map_err(|e| {
                    Error::io(&self.root, io::Error::other(format!("layout task: {e}")))
                })??
        };
        let Some((file, size)) = opened else {
            return Err(Error::blob_not_found(self.digest_location(digest)));
        };
        let file = tokio::fs::File::from_std(file);
        let stream = ReaderStream::with_capacity(file, READ_CHUNK)
            .map(move |chunk| chunk.map_err(|e| Error::io(&path, e)));
        Ok(Blob {
            size: Some(size),
            stream: Box::pin(stream),
        })
    }

    async fn put_blob(&self, digest: &Digest, size: u64, mut data: BlobStream) -> Result<()> {
        if self.has_blob(digest, Some(size)).await? {
            return Ok(());
        }
        let target = blob_path(&self.root, digest);
        let dir = blob_dir(&self.root, digest);
        real_dir_async(self.root.clone(), dir.clone()).await?;
        // Declared first, dropped last: removes the temporary file on every early return.
        let mut guard = TempFile::new(dir);
        let mut file = loop {
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            match options.open(guard.next_name()).await {
                Ok(f) => break f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(guard.path(), e)),
            }
        };
        guard.armed = true;
        let mut verifier = Verifier::new(digest.clone(), Some(size));
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            verifier.update(&chunk)?;
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::io(guard.path(), e))?;
        }
        verifier.finish()?;
        file.flush().await.map_err(|e| Error::io(guard.path(), e))?;
        // On disk before it gets the final name: a crash must never leave a short file
        // under a digest (readers trust the name).
        file.sync_all()
            .await
            .map_err(|e| Error::io(guard.path(), e))?;
        drop(file);
        tokio::fs::rename(guard.path(), &target)
            .await
            .map_err(|e| Error::io(&target, e))?;
        guard.armed = false;
        Ok(())
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        let tags: BTreeSet<String> = self
            .read_entries()
            .await?
            .into_iter()
            .filter_map(|e| e.tag)
            .collect();
        Ok(tags.into_iter().collect())
    }

    /// The manifests of `index.json` whose `subject` is `subject` (a layout serves referrers
    /// like a registry with the API: it always answers).
    async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<crate::media::Descriptor>>> {
        let mut out = Vec::new();
        for e in self.read_entries().await? {
            if &e.digest == subject
                || out
                    .iter()
                    .any(|d: &crate::media::Descriptor| d.digest == e.digest)
            {
                continue;
            }
            let media = (!e.media_type.is_empty()).then_some(e.media_type.as_str());
            let Some(found) = self.read_manifest(&e.digest, media, true).await? else {
                continue;
            };
            let Some(manifest) = found.manifest else {
                continue;
            };
            let location = self.digest_location(&found.digest);
            let referral = manifest.referral(&location)?;
            if referral.subject.as_ref().map(|s| &s.digest) != Some(subject) {
                continue;
            }
            if artifact_type.is_some() && referral.artifact_type.as_deref() != artifact_type {
                continue;
            }
            out.push(crate::media::Descriptor {
                media_type: found.media_type,
                digest: found.digest,
                size: found.size,
                artifact_type: referral.artifact_type,
                platform: None,
                annotations: referral.annotations,
            });
        }
        Ok(Some(out))
    }
}
