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
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::digest::{Digest, Verifier};
use crate::error::{Error, Result};
use crate::media::{ParsedManifest, RawManifest, OCI_INDEX};
use crate::reference::validate_tag;
use crate::store::{Blob, BlobStream, ImageStore, ManifestHead, StoreLocation};

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

    /// Opens a layout, creating the directory, `oci-layout`, `index.json` and `blobs/sha256`
    /// as needed. Existing content is kept.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let root = path.into();
        let blobs = root.join(BLOBS_DIR).join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
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
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(&path, e))?;
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
        let size = match tokio::fs::metadata(&path).await {
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
        if media_type.is_none() && size > MAX_MANIFEST_SIZE {
            return Ok(None);
        }
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => Bytes::from(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
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

    async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<()> {
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

    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let path = blob_path(&self.root, digest);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Blob> {
        let path = blob_path(&self.root, digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::blob_not_found(self.digest_location(digest)))
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(|e| Error::io(&path, e))?
            .len();
        let stream = ReaderStream::with_capacity(file, READ_CHUNK)
            .map(move |chunk| chunk.map_err(|e| Error::io(&path, e)));
        Ok(Blob {
            size: Some(size),
            stream: Box::pin(stream),
        })
    }

    async fn put_blob(&self, digest: &Digest, size: u64, mut data: BlobStream) -> Result<()> {
        if self.has_blob(digest).await? {
            return Ok(());
        }
        let target = blob_path(&self.root, digest);
        let dir = blob_dir(&self.root, digest);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io(&dir, e))?;
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
}

/// Parses a CLI location `oci:PATH[:TAG]` into the layout path and the tag, if any.
///
/// The tag is the text after the last `:` when that `:` comes after the last `/` and the text
/// is a valid tag; otherwise the whole text is the path (`oci:/a:b/c` is the path `/a:b/c`).
/// An empty path, an empty tag (`oci:dir:`) and digests (`oci:dir@sha256:…`) are rejected.
pub fn parse_oci_location(s: &str) -> Result<(PathBuf, Option<String>)> {
    let invalid = |reason: &str| Error::InvalidReference {
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let rest = s
        .strip_prefix("oci:")
        .ok_or_else(|| invalid("an OCI layout location is written oci:PATH[:TAG]"))?;
    let (path, tag) = match rest.rsplit_once(':') {
        Some((_, t)) if t.contains('/') => (rest, None),
        Some((_, "")) => return Err(invalid("empty tag after ':'")),
        Some((p, t)) if validate_tag(t).is_ok() => {
            if p.rsplit_once('@')
                .is_some_and(|(_, d)| Digest::parse(&format!("{d}:{t}")).is_ok())
            {
                return Err(invalid(
                    "digests are not supported in oci: locations; use a tag",
                ));
            }
            (p, Some(t.to_string()))
        }
        _ => (rest, None),
    };
    if path.is_empty() {
        return Err(invalid("empty layout path"));
    }
    Ok((PathBuf::from(path), tag))
}

fn parse_reference(reference: &str) -> Result<ManifestRef> {
    let invalid = |reason: String| Error::InvalidReference {
        input: reference.to_string(),
        reason,
    };
    if reference.contains(':') {
        Digest::parse(reference)
            .map(ManifestRef::Digest)
            .map_err(|e| invalid(e.to_string()))
    } else {
        validate_tag(reference).map_err(invalid)?;
        Ok(ManifestRef::Tag(reference.to_string()))
    }
}

fn check_layout(root: &Path) -> Result<()> {
    let not_layout = |reason: String| {
        Error::Config(format!(
            "{} is not an OCI image layout: {reason}",
            root.display()
        ))
    };
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(not_layout("it is not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                what: "OCI image layout",
                location: format!("oci:{}", root.display()),
            })
        }
        Err(e) => return Err(Error::io(root, e)),
    }
    let marker = root.join(LAYOUT_FILE);
    let text = match fs::read(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(not_layout(format!(
                "no {LAYOUT_FILE} file (LayoutStore::create makes a layout)"
            )))
        }
        Err(e) => return Err(Error::io(&marker, e)),
    };
    let doc: Value = serde_json::from_slice(&text)
        .map_err(|e| not_layout(format!("{LAYOUT_FILE} is not valid JSON: {e}")))?;
    match doc.get("imageLayoutVersion").and_then(Value::as_str) {
        Some(v) if v.starts_with("1.") => {}
        other => {
            return Err(not_layout(format!(
                "unsupported imageLayoutVersion {other:?} in {LAYOUT_FILE} (expected 1.x)"
            )))
        }
    }
    let index = root.join(INDEX_FILE);
    match fs::metadata(&index) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(not_layout(format!("{INDEX_FILE} is not a file"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(not_layout(format!("no {INDEX_FILE} file")))
        }
        Err(e) => Err(Error::io(&index, e)),
    }
}

fn blob_dir(root: &Path, digest: &Digest) -> PathBuf {
    root.join(BLOBS_DIR).join(digest.algorithm().as_str())
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    blob_dir(root, digest).join(digest.hex())
}

fn file_exists(path: &Path) -> Result<bool> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn bad_index(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::InvalidManifest {
        location: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The manifest in `bytes`, or `None` if they are not a manifest document (a config, a layer).
fn as_manifest(bytes: Bytes, location: &str) -> Result<Option<RawManifest>> {
    match RawManifest::detect(bytes, None, location) {
        Ok(m) => Ok(Some(m)),
        Err(Error::InvalidManifest { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the blob at `path` exists and is a manifest document (blocking).
fn blob_holds_manifest(path: &Path, digest: &Digest, location: &str) -> Result<bool> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() <= MAX_MANIFEST_SIZE => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, e)),
    }
    let bytes = match fs::read(path) {
        Ok(b) => Bytes::from(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, e)),
    };
    digest.verify(&bytes)?;
    Ok(as_manifest(bytes, location)?.is_some())
}

fn entry_digest(e: &Value) -> Option<&str> {
    e.get("digest").and_then(Value::as_str)
}

fn entry_tag(e: &Value) -> Option<&str> {
    e.get("annotations")
        .and_then(|a| a.get(REF_NAME_ANNOTATION))
        .and_then(Value::as_str)
}

fn parse_entries(doc: &Value, path: &Path) -> Result<Vec<Entry>> {
    let list = match doc.get("manifests") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad_index(path, "\"manifests\" is not an array")),
    };
    list.iter()
        .map(|e| {
            let digest = entry_digest(e)
                .ok_or_else(|| bad_index(path, "an entry has no digest"))
                .and_then(|d| Digest::parse(d).map_err(|err| bad_index(path, err)))?;
            Ok(Entry {
                media_type: e
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                digest,
                tag: entry_tag(e).map(str::to_string),
            })
        })
        .collect()
}

/// Runs `f` while holding the exclusive lock of the layout at `root` (blocking).
fn with_lock<T>(root: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let lock_path = root.join(LOCK_FILE);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    let out = f(root);
    // Closing the file releases the lock too; unlocking first is just explicit.
    let _ = lock.unlock();
    out
}

/// Read-modify-write of `index.json`'s `manifests` under the lock (blocking). Other fields of
/// the index and of its entries are kept; the file is rewritten only if something changed.
fn update_index<T>(root: &Path, f: impl FnOnce(&mut Vec<Value>) -> Result<T>) -> Result<T> {
    let path = root.join(INDEX_FILE);
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let mut doc: Value = serde_json::from_slice(&bytes).map_err(|e| bad_index(&path, e))?;
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| bad_index(&path, "not a JSON object"))?;
    let list = obj
        .entry("manifests")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let list = list
        .as_array_mut()
        .ok_or_else(|| bad_index(&path, "\"manifests\" is not an array"))?;
    let before = list.clone();
    let out = f(list)?;
    if *list != before {
        let text = serde_json::to_vec(&doc).map_err(|e| Error::io(&path, io::Error::other(e)))?;
        write_atomic(root, &path, &text)?;
    }
    Ok(out)
}

fn put_manifest_locked(root: &Path, r: ManifestRef, m: &RawManifest) -> Result<()> {
    let blob = blob_path(root, &m.digest);
    if !file_exists(&blob)? {
        let dir = blob_dir(root, &m.digest);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        write_atomic(&dir, &blob, &m.bytes)?;
    }
    let digest = m.digest.to_string();
    let children: BTreeSet<String> = match m.parse("") {
        Ok(ParsedManifest::Index { manifests }) => {
            manifests.iter().map(|d| d.digest.to_string()).collect()
        }
        _ => BTreeSet::new(),
    };
    let untagged_child =
        |e: &Value| entry_tag(e).is_none() && entry_digest(e).is_some_and(|d| children.contains(d));
    update_index(root, |list| {
        match r {
            ManifestRef::Tag(tag) => {
                let mut entry = json!({
                    "mediaType": m.media_type,
                    "digest": digest,
                    "size": m.bytes.len(),
                    "annotations": { REF_NAME_ANNOTATION: tag.as_str() },
                });
                let mut kept = Vec::with_capacity(list.len() + 1);
                let mut placed = false;
                for e in list.drain(..) {
                    let (etag, edigest) = (entry_tag(&e), entry_digest(&e));
                    if etag == Some(tag.as_str()) {
                        if !placed {
                            // Keep an identical entry as it is (with any extra fields).
                            let same = edigest == Some(digest.as_str())
                                && e.get("mediaType").and_then(Value::as_str)
                                    == Some(m.media_type.as_str());
                            kept.push(if same { e } else { entry.take() });
                            placed = true;
                        }
                    } else {
                        // Untagged entries of this manifest or of its children are redundant.
                        let untagged_self = etag.is_none() && edigest == Some(digest.as_str());
                        if !untagged_self && !untagged_child(&e) {
                            kept.push(e);
                        }
                    }
                }
                if !placed {
                    kept.push(entry);
                }
                *list = kept;
            }
            ManifestRef::Digest(_) => {
                list.retain(|e| !untagged_child(e));
                if !list
                    .iter()
                    .any(|e| entry_digest(e) == Some(digest.as_str()))
                {
                    list.push(json!({
                        "mediaType": m.media_type,
                        "digest": digest,
                        "size": m.bytes.len(),
                    }));
                }
            }
        }
        Ok(())
    })
}

/// Writes `bytes` to a temporary file in `dir`, syncs it and renames it to `target`.
fn write_atomic(dir: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    let mut guard = TempFile::new(dir.to_path_buf());
    let mut file = loop {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        match options.open(guard.next_name()) {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(guard.path(), e)),
        }
    };
    guard.armed = true;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(guard.path(), e))?;
    drop(file);
    fs::rename(guard.path(), target).map_err(|e| Error::io(target, e))?;
    guard.armed = false;
    Ok(())
}

/// A uniquely named temporary file, removed on drop while `armed`.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(dir: PathBuf) -> Self {
        TempFile {
            path: dir.clone(),
            dir,
            armed: false,
        }
    }

    /// Picks a fresh name (process id + counter + clock); callers open it with `create_new`
    /// and call again on `AlreadyExists`.
    fn next_name(&mut self) -> &Path {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(".tmp-{}-{n}-{nanos:09}", std::process::id());
        self.path = self.dir.join(name);
        &self.path
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST};

    fn stream(parts: &[&[u8]]) -> BlobStream {
        let parts: Vec<Result<Bytes>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        Box::pin(futures::stream::iter(parts))
    }

    async fn read_all(blob: Blob) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = blob.stream;
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    /// An image manifest naming `config`; with or without its `mediaType` field.
    fn image(config: &[u8], with_media_type: bool) -> RawManifest {
        let mut doc = json!({
            "schemaVersion": 2,
            "config": { "mediaType": OCI_CONFIG, "digest": Digest::sha256_of(config), "size": config.len() },
            "layers": [],
        });
        if with_media_type {
            doc["mediaType"] = json!(OCI_MANIFEST);
        }
        RawManifest::new(doc.to_string().into_bytes(), OCI_MANIFEST)
    }

    fn index_of(children: &[&RawManifest]) -> RawManifest {
        let manifests: Vec<Value> = children
            .iter()
            .map(
                |m| json!({ "mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len() }),
            )
            .collect();
        let doc = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        RawManifest::new(doc.to_string().into_bytes(), OCI_INDEX)
    }

    fn index_json(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join(INDEX_FILE)).unwrap()).unwrap()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect()
    }

    fn layout() -> (tempfile::TempDir, LayoutStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::create(dir.path().join("layout")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn create_writes_the_spec_files_and_open_reads_them() {
        let (_tmp, store) = layout();
        let root = store.path().to_path_buf();
        let marker: Value =
            serde_json::from_slice(&fs::read(root.join(LAYOUT_FILE)).unwrap()).unwrap();
        assert_eq!(marker, json!({ "imageLayoutVersion": "1.0.0" }));
        assert_eq!(index_json(&root)["manifests"], json!([]));
        assert_eq!(
            store.location(),
            StoreLocation::Layout { path: root.clone() }
        );
        store.put_manifest("v1", &image(b"c", true)).await.unwrap();
        // Re-creating keeps the content; opening finds it.
        LayoutStore::create(&root).unwrap();
        let reopened = LayoutStore::open(&root).unwrap();
        assert_eq!(reopened.list_tags().await.unwrap(), vec!["v1".to_string()]);
    }

    #[tokio::test]
    async fn blobs_round_trip_and_existing_blobs_are_not_read_again() {
        let (_tmp, store) = layout();
        let data = vec![7u8; 600 * 1024];
        let d = Digest::sha256_of(&data);
        assert!(!store.has_blob(&d).await.unwrap());
        store
            .put_blob(
                &d,
                data.len() as u64,
                stream(&[&data[..1000], &data[1000..]]),
            )
            .await
            .unwrap();
        assert!(store.has_blob(&d).await.unwrap());
        let blob = store.get_blob(&d).await.unwrap();
        assert_eq!(blob.size, Some(data.len() as u64));
        assert_eq!(read_all(blob).await, data);
        // Present: the stream (which would fail) is not read.
        let failing: BlobStream = Box::pin(futures::stream::iter(vec![Err(Error::Config(
            "must not be read".into(),
        ))]));
        store
            .put_blob(&d, data.len() as u64, failing)
            .await
            .unwrap();
        assert!(leftovers(store.path()).is_empty());
    }

    #[tokio::test]
    async fn a_blob_that_does_not_match_its_digest_is_not_stored() {
        let (_tmp, store) = layout();
        let claimed = Digest::sha256_of(b"hello");
        let err = store
            .put_blob(&claimed, 5, stream(&[b"hel", b"lO"]))
            .await
            .unwrap_err();
        match err {
            Error::DigestMismatch { expected, actual } => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, Digest::sha256_of(b"hellO"));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(!store.has_blob(&claimed).await.unwrap());
        assert!(leftovers(store.path()).is_empty());
        let names: Vec<_> = fs::read_dir(store.path().join("blobs/sha256"))
            .unwrap()
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[tokio::test]
    async fn wrong_sizes_and_broken_sources_leave_nothing_behind() {
        let (_tmp, store) = layout();
        let d = Digest::sha256_of(b"abc");
        let err = store
            .put_blob(&d, 3, stream(&[b"ab", b"cd"]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 3,
                    actual: 4,
                    ..
                }
            ),
            "{err}"
        );
        let err = store.put_blob(&d, 3, stream(&[b"ab"])).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 3,
                    actual: 2,
                    ..
                }
            ),
            "{err}"
        );
        let broken: BlobStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"a")),
            Err(Error::Config("source broke".into())),
        ]));
        let err = store.put_blob(&d, 3, broken).await.unwrap_err();
        assert!(err.to_string().contains("source broke"), "{err}");
        assert!(!store.has_blob(&d).await.unwrap());
        assert!(fs::read_dir(store.path().join("blobs/sha256"))
            .unwrap()
            .next()
            .is_none());
    }

    #[tokio::test]
    async fn manifests_round_trip_by_tag_and_by_digest() {
        let (_tmp, store) = layout();
        // A Docker manifest: its media type must come back from index.json.
        let docker = RawManifest::new(&br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#[..], DOCKER_MANIFEST);
        store.put_manifest("v1", &docker).await.unwrap();
        for r in ["v1".to_string(), docker.digest.to_string()] {
            let got = store.get_manifest(&r).await.unwrap();
            assert_eq!(got, docker, "{r}");
            let head = store.head_manifest(&r).await.unwrap().unwrap();
            assert_eq!(head.digest, docker.digest);
            assert_eq!(head.media_type, DOCKER_MANIFEST);
            assert_eq!(head.size, docker.bytes.len() as u64);
        }
        assert!(
            store.has_blob(&docker.digest).await.unwrap(),
            "manifests live in blobs/"
        );

        // By digest: an untagged entry keeps it discoverable, once.
        let oci = image(b"cfg", false);
        let d = oci.digest.to_string();
        store.put_manifest(&d, &oci).await.unwrap();
        store.put_manifest(&d, &oci).await.unwrap();
        assert_eq!(store.get_manifest(&d).await.unwrap(), oci);
        let idx = index_json(store.path());
        let entries: Vec<&Value> = idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["digest"] == json!(d))
            .collect();
        assert_eq!(entries.len(), 1);
        assert!(entry_tag(entries[0]).is_none());
        // Tagging it replaces the untagged entry.
        store.put_manifest("v2", &oci).await.unwrap();
        assert_eq!(
            index_json(store.path())["manifests"]
                .as_array()
                .unwrap()
                .len(),
            2
        );

        // A digest that is not the manifest's is refused.
        let err = store
            .put_manifest(&docker.digest.to_string(), &oci)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn children_of_an_index_live_as_blobs_under_the_tagged_index() {
        let (_tmp, store) = layout();
        let (a, b) = (image(b"amd64", true), image(b"arm64", true));
        store.put_manifest(&a.digest.to_string(), &a).await.unwrap();
        store.put_manifest(&b.digest.to_string(), &b).await.unwrap();
        let idx = index_of(&[&a, &b]);
        store.put_manifest("multi", &idx).await.unwrap();
        let entries = index_json(store.path())["manifests"].clone();
        assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");
        assert_eq!(entries[0]["digest"], json!(idx.digest.to_string()));
        assert_eq!(
            entries[0]["annotations"][REF_NAME_ANNOTATION],
            json!("multi")
        );
        // Children: found by digest, media type from their mediaType field.
        let got = store.get_manifest(&a.digest.to_string()).await.unwrap();
        assert_eq!(got.media_type, OCI_MANIFEST);
        assert_eq!(got.digest, a.digest);
        assert_eq!(store.get_manifest("multi").await.unwrap(), idx);
    }

    #[tokio::test]
    async fn absent_things_are_not_found_and_blobs_are_not_manifests() {
        let (_tmp, store) = layout();
        let d = Digest::sha256_of(b"nothing");
        assert!(store.head_manifest("nope").await.unwrap().is_none());
        assert!(store.head_manifest(&d.to_string()).await.unwrap().is_none());
        let err = store.get_manifest("nope").await.unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains(":nope"),
            "{err}"
        );
        assert!(store
            .get_manifest(&d.to_string())
            .await
            .unwrap_err()
            .is_not_found());
        let err = store.get_blob(&d).await.unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains(&format!("@{d}")),
            "{err}"
        );
        assert!(store.delete_manifest(&d).await.unwrap_err().is_not_found());
        // A config blob is a blob, not a manifest: absent as a manifest, and not deleted.
        let cfg = br#"{"architecture":"amd64","os":"linux","config":{"Env":[]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cd = Digest::sha256_of(cfg);
        store
            .put_blob(&cd, cfg.len() as u64, stream(&[cfg]))
            .await
            .unwrap();
        assert!(store
            .head_manifest(&cd.to_string())
            .await
            .unwrap()
            .is_none());
        assert!(store.delete_manifest(&cd).await.unwrap_err().is_not_found());
        assert!(store.has_blob(&cd).await.unwrap());
    }

    #[tokio::test]
    async fn a_broken_index_is_an_error_not_an_absence() {
        let (_tmp, store) = layout();
        fs::write(store.path().join(INDEX_FILE), b"not json").unwrap();
        assert!(store.head_manifest("v1").await.is_err());
        assert!(store.list_tags().await.is_err());
        // A tag whose blob is missing is a broken layout, not a missing tag.
        let m = image(b"c", true);
        fs::write(store.path().join(INDEX_FILE), json!({"schemaVersion":2,"manifests":[{"mediaType":OCI_MANIFEST,"digest":m.digest,"size":1,"annotations":{REF_NAME_ANNOTATION:"v1"}}]}).to_string()).unwrap();
        let err = store.head_manifest("v1").await.unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[tokio::test]
    async fn retagging_replaces_the_entry() {
        let (_tmp, store) = layout();
        let (a, b) = (image(b"a", true), image(b"b", true));
        store.put_manifest("t", &a).await.unwrap();
        store.put_manifest("t", &a).await.unwrap();
        store.put_manifest("t", &b).await.unwrap();
        assert_eq!(store.get_manifest("t").await.unwrap().digest, b.digest);
        let idx = index_json(store.path());
        let list = idx["manifests"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["digest"], json!(b.digest.to_string()));
        // The old manifest stays readable by digest.
        assert_eq!(store.get_manifest(&a.digest.to_string()).await.unwrap(), a);
    }

    #[tokio::test]
    async fn delete_removes_every_tag_and_the_blob() {
        let (_tmp, store) = layout();
        let (a, b) = (image(b"a", true), image(b"b", true));
        store.put_manifest("t1", &a).await.unwrap();
        store.put_manifest("t2", &a).await.unwrap();
        store.put_manifest("keep", &b).await.unwrap();
        store.delete_manifest(&a.digest).await.unwrap();
        assert_eq!(store.list_tags().await.unwrap(), vec!["keep".to_string()]);
        assert!(!store.has_blob(&a.digest).await.unwrap());
        assert!(store
            .get_manifest(&a.digest.to_string())
            .await
            .unwrap_err()
            .is_not_found());
        assert!(store
            .delete_manifest(&a.digest)
            .await
            .unwrap_err()
            .is_not_found());
        // An untagged manifest (a child) is deleted by digest too.
        let c = image(b"c", true);
        store.put_manifest(&c.digest.to_string(), &c).await.unwrap();
        store.put_manifest("idx", &index_of(&[&c])).await.unwrap();
        store.delete_manifest(&c.digest).await.unwrap();
        assert!(store
            .head_manifest(&c.digest.to_string())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn list_tags_is_sorted() {
        let (_tmp, store) = layout();
        let m = image(b"x", true);
        for t in ["zeta", "alpha", "1.0", "Beta"] {
            store.put_manifest(t, &m).await.unwrap();
        }
        assert_eq!(
            store.list_tags().await.unwrap(),
            vec!["1.0", "Beta", "alpha", "zeta"]
        );
    }

    #[tokio::test]
    async fn references_that_could_escape_the_layout_are_rejected() {
        let (tmp, store) = layout();
        let m = image(b"x", true);
        for bad in [
            "../../etc",
            "../x",
            "a/b",
            "",
            ".hidden",
            "sha256:../../etc",
            "sha256:ABC",
            "md5:00",
        ] {
            let err = store.put_manifest(bad, &m).await.unwrap_err();
            assert!(
                matches!(err, Error::InvalidReference { .. }),
                "{bad}: {err}"
            );
            assert!(
                matches!(
                    store.get_manifest(bad).await,
                    Err(Error::InvalidReference { .. })
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    store.head_manifest(bad).await,
                    Err(Error::InvalidReference { .. })
                ),
                "{bad}"
            );
        }
        assert!(!tmp.path().join("etc").exists());
        assert!(store.list_tags().await.unwrap().is_empty());
    }

    #[test]
    fn opening_something_that_is_not_a_layout_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let err = LayoutStore::open(tmp.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&tmp.path().display().to_string()), "{text}");
        assert!(
            text.contains("not an OCI image layout") && text.contains("oci-layout"),
            "{text}"
        );
        let missing = tmp.path().join("missing");
        let err = LayoutStore::open(&missing).unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains("missing"),
            "{err}"
        );
        fs::write(
            tmp.path().join(LAYOUT_FILE),
            br#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let err = LayoutStore::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("2.0.0"), "{err}");
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(LayoutStore::create(&file).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_tag_writes_all_land_in_the_index() {
        let (_tmp, store) = layout();
        // Two instances: one in-process queue each, so the file lock does the serialising.
        let other = LayoutStore::open(store.path()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tasks.push(tokio::spawn(async move {
                let m = image(format!("cfg-{i}").as_bytes(), true);
                s.put_manifest(&format!("tag-{i:02}"), &m).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let expected: Vec<String> = (0..20).map(|i| format!("tag-{i:02}")).collect();
        assert_eq!(store.list_tags().await.unwrap(), expected);
        assert_eq!(
            index_json(store.path())["manifests"]
                .as_array()
                .unwrap()
                .len(),
            20
        );
        let stray: Vec<_> = fs::read_dir(store.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    #[test]
    fn oci_locations_are_parsed() {
        let ok = |s: &str| parse_oci_location(s).unwrap();
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(ok("oci:/tmp/x:v1"), (p("/tmp/x"), Some("v1".into())));
        assert_eq!(ok("oci:/tmp/x"), (p("/tmp/x"), None));
        assert_eq!(ok("oci:dir"), (p("dir"), None));
        assert_eq!(ok("oci:dir:1.2_rc-3"), (p("dir"), Some("1.2_rc-3".into())));
        assert_eq!(ok("oci:/a:b/c"), (p("/a:b/c"), None));
        assert_eq!(ok("oci:/a:b/c:d"), (p("/a:b/c"), Some("d".into())));
        assert_eq!(
            ok("oci:./rel/x:latest"),
            (p("./rel/x"), Some("latest".into()))
        );
        assert_eq!(ok("oci:/x:.bad"), (p("/x:.bad"), None));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for bad in [
            "/tmp/x:v1",
            "docker://x",
            "oci:",
            "oci::v1",
            "oci:/tmp/x:",
            &format!("oci:/x@{d}"),
        ] {
            assert!(
                matches!(parse_oci_location(bad), Err(Error::InvalidReference { .. })),
                "{bad}"
            );
        }
    }
}
