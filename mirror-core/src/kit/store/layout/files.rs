//! The files of a layout: the marker, blob paths, `index.json` under its lock, atomic writes
//! and temporary files.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{ParsedManifest, RawManifest};

#[allow(unused_imports)]
use super::*;

pub(super) fn check_layout(root: &Path) -> Result<()> {
    let not_layout = |reason: String| {
        Error::config(
            "OCI layout",
            format!("{} is not an OCI image layout: {reason}", root.display()),
        )
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
    let text = match read_regular(&marker, MAX_MARKER_SIZE)? {
        Some(t) => t,
        None => {
            return Err(not_layout(format!(
                "no {LAYOUT_FILE} file (LayoutStore::create makes a layout)"
            )))
        }
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
    match open_regular(&index, Some(MAX_INDEX_SIZE))? {
        Some(_) => Ok(()),
        None => Err(not_layout(format!("no {INDEX_FILE} file"))),
    }
}

pub(super) fn blob_dir(root: &Path, digest: &Digest) -> PathBuf {
    root.join(BLOBS_DIR).join(digest.algorithm().as_str())
}

pub(super) fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    blob_dir(root, digest).join(digest.hex())
}

pub(super) fn file_exists(path: &Path) -> Result<bool> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

pub(super) fn bad_index(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::InvalidManifest {
        location: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The manifest in `bytes`, or `None` if they are not a manifest document (a config, a layer).
pub(super) fn as_manifest(bytes: Bytes, location: &str) -> Result<Option<RawManifest>> {
    match RawManifest::detect(bytes, None, location) {
        Ok(m) => Ok(Some(m)),
        Err(Error::InvalidManifest { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the blob at `path` exists and is a manifest document (blocking).
pub(super) fn blob_holds_manifest(path: &Path, digest: &Digest, location: &str) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() <= MAX_MANIFEST_SIZE => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, e)),
    }
    let bytes = match read_regular(path, MAX_MANIFEST_SIZE)? {
        Some(b) => Bytes::from(b),
        None => return Ok(false),
    };
    digest.verify(&bytes)?;
    Ok(as_manifest(bytes, location)?.is_some())
}

pub(super) fn entry_digest(e: &Value) -> Option<&str> {
    e.get("digest").and_then(Value::as_str)
}

pub(super) fn entry_tag(e: &Value) -> Option<&str> {
    e.get("annotations")
        .and_then(|a| a.get(REF_NAME_ANNOTATION))
        .and_then(Value::as_str)
}

pub(super) fn parse_entries(doc: &Value, path: &Path) -> Result<Vec<Entry>> {
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
pub(super) fn with_lock<T>(root: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
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
pub(super) fn update_index<T>(
    root: &Path,
    f: impl FnOnce(&mut Vec<Value>) -> Result<T>,
) -> Result<T> {
    let path = root.join(INDEX_FILE);
    let bytes = read_regular(&path, MAX_INDEX_SIZE)?.ok_or_else(|| {
        Error::io(
            &path,
            io::Error::new(io::ErrorKind::NotFound, "no index.json"),
        )
    })?;
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

/// Writes the manifest `m` as a blob unless a whole copy is there.
pub(super) fn write_manifest_blob(root: &Path, m: &RawManifest) -> Result<()> {
    let blob = blob_path(root, &m.digest);
    // The size first: a hostile or corrupt file under the name may be huge.
    let dir = blob_dir(root, &m.digest);
    real_dir(root, &dir)?;
    let whole = match fs::symlink_metadata(&blob) {
        Ok(meta) if meta.is_file() && meta.len() == m.bytes.len() as u64 => {
            match read_regular(&blob, m.bytes.len() as u64)? {
                Some(bytes) => m.digest.verify(&bytes).is_ok(),
                None => false,
            }
        }
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(&blob, e)),
    };
    if !whole {
        write_atomic(&dir, &blob, &m.bytes)?;
    }
    Ok(())
}

pub(super) fn put_manifest_locked(root: &Path, r: ManifestRef, m: &RawManifest) -> Result<()> {
    write_manifest_blob(root, m)?;
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
pub(super) fn write_atomic(dir: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
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
pub(super) struct TempFile {
    dir: PathBuf,
    path: PathBuf,
    pub(super) armed: bool,
}

impl TempFile {
    pub(super) fn new(dir: PathBuf) -> Self {
        TempFile {
            path: dir.clone(),
            dir,
            armed: false,
        }
    }

    /// Picks a fresh name (process id + counter + clock); callers open it with `create_new`
    /// and call again on `AlreadyExists`.
    pub(super) fn next_name(&mut self) -> &Path {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "{TEMP_PREFIX}{}-{}-{}-{n}-{nanos:09}",
            host_id(),
            pid_namespace(),
            std::process::id()
        );
        self.path = self.dir.join(name);
        &self.path
    }

    pub(super) fn path(&self) -> &Path {
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

/// The prefix of temporary files: `.tmp-<host>-<pid namespace>-<pid>-<counter>-<nanos>`.
pub(super) const TEMP_PREFIX: &str = ".tmp-";
/// A temporary file of a writer this process cannot check (another pid namespace, an older
/// name format) is stale after this long without a write.
const STALE_FOREIGN: std::time::Duration = std::time::Duration::from_secs(3600);
/// A temporary file of a process that looks alive is stale after this long without a write
/// (its pid was reused by another process).
const STALE_LIVE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The id of this process's pid namespace (`/proc/self/ns/pid`), 0 when unknown: with the
/// pid, it names the writer of a temporary file.
fn pid_namespace() -> u64 {
    static NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NS.get_or_init(|| {
        fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|p| {
                let s = p.to_string_lossy().into_owned();
                s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
            })
            .unwrap_or(0)
    })
}

/// This kernel's boot, as 8 hex digits of `/proc/sys/kernel/random/boot_id` (`0` when
/// unknown): a layout on a shared file system (NFS) may have writers on other hosts, whose
/// pid namespaces can carry the same numbers as ours; after a reboot no earlier writer lives.
fn host_id() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.chars().filter(char::is_ascii_hexdigit).take(8).collect())
            .filter(|s: &String| s.len() == 8)
            .unwrap_or_else(|| "0".to_string())
    })
}

/// Whether process `pid` of this pid namespace is alive, when that can be told.
fn alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// Whether the temporary file `name` (last written `idle` ago) belongs to no live writer.
fn stale(name: &str, idle: std::time::Duration) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    // Names without the host part (earlier versions) count as foreign.
    let (ns, pid) = match parts.as_slice() {
        [host, ns, pid, _, _] if *host == host_id() && *host != "0" => {
            (ns.parse::<u64>().ok(), pid.parse::<u32>().ok())
        }
        _ => (None, None),
    };
    match (ns, pid) {
        (Some(ns), Some(pid)) if ns == pid_namespace() && ns != 0 => match alive(pid) {
            Some(false) => true,
            Some(true) => idle > STALE_LIVE,
            None => idle > STALE_FOREIGN,
        },
        _ => idle > STALE_FOREIGN,
    }
}

/// Removes the temporary files of dead writers (a crashed or killed copy) from the layout
/// root and its blob directories, and returns how many went. A file of a live writer of this
/// pid namespace stays; one this process cannot check (another pid namespace, a container
/// sharing the directory) stays until it has not been written for an hour.
pub(super) fn clean_stale_temp_files(root: &Path) -> Result<usize> {
    let mut dirs = vec![root.to_path_buf()];
    let blobs = root.join(super::BLOBS_DIR);
    match fs::read_dir(&blobs) {
        Ok(entries) => {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&blobs, e)),
    }
    let mut removed = 0;
    let now = std::time::SystemTime::now();
    for dir in dirs {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let idle = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if stale(&name, idle) {
                match fs::remove_file(e.path()) {
                    Ok(()) => removed += 1,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(Error::io(e.path(), err)),
                }
            }
        }
    }
    Ok(removed)
}

/// Largest `oci-layout` marker read (the file holds a one-field JSON object).
pub(super) const MAX_MARKER_SIZE: u64 = 64 * 1024;
/// Largest `index.json` read: ten thousand entries take about 2 MB. A bigger one is refused
/// before it is read (a 53 MB index cost 439 MiB parsed).
pub(super) const MAX_INDEX_SIZE: u64 = 16 << 20;

/// An I/O error of `path` for a file that is there but must not be read or written.
fn refused(path: &Path, why: &str) -> Error {
    Error::io(
        path,
        io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    )
}

/// Opens `path` for reading as a regular file and returns it with its size: a symbolic link
/// as its last component is refused (`O_NOFOLLOW`), so is anything but a regular file (a
/// FIFO or a device: the open is non-blocking, so a FIFO with no writer cannot hang it), and
/// with `max`, a file larger than `max` before any byte is read. `Ok(None)` when there is no
/// such file (blocking).
pub(super) fn open_regular(path: &Path, max: Option<u64>) -> Result<Option<(fs::File, u64)>> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // ELOOP: the last component is a symbolic link.
        Err(e) if e.raw_os_error() == Some(40) => {
            return Err(refused(path, "a symbolic link where a layout file belongs"))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(refused(
            path,
            "not a regular file (a FIFO, a device or a directory) where a layout file belongs",
        ));
    }
    if let Some(max) = max {
        if meta.len() > max {
            return Err(refused(
                path,
                &format!(
                    "{} bytes, more than the {max} accepted for this file",
                    meta.len()
                ),
            ));
        }
    }
    Ok(Some((file, meta.len())))
}

/// The content of the regular file `path`, at most `max` bytes (see [`open_regular`]);
/// `Ok(None)` when there is none (blocking).
pub(super) fn read_regular(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let Some((file, len)) = open_regular(path, Some(max))? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(len.min(max) as usize);
    // A file that grows while read stops at the cap all the same.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(refused(
            path,
            &format!("grew past the {max} bytes accepted"),
        ));
    }
    Ok(Some(bytes))
}

/// [`read_regular`] on a blocking thread.
pub(super) async fn read_regular_async(path: PathBuf, max: u64) -> Result<Option<Vec<u8>>> {
    tokio::task::spawn_blocking(move || read_regular(&path, max))
        .await
        .map_err(|e| Error::io(Path::new(""), io::Error::other(format!("layout task: {e}"))))?
}

/// Makes `dir`, a directory below `root`, a real directory of the layout: every component
/// between `root` and `dir` must be a directory and not a symbolic link (a link would send
/// writes outside the layout); missing ones are created (blocking).
pub(super) fn real_dir(root: &Path, dir: &Path) -> Result<()> {
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| refused(dir, "a directory outside the layout"))?;
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(
                    &at,
                    "a symbolic link inside the layout: writes through it would land outside",
                ))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refused(&at, "not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&at, e)),
            },
            Err(e) => return Err(Error::io(&at, e)),
        }
    }
    Ok(())
}

/// [`real_dir`] on a blocking thread.
pub(super) async fn real_dir_async(root: PathBuf, dir: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || real_dir(&root, &dir))
        .await
        .map_err(|e| Error::io(Path::new(""), io::Error::other(format!("layout task: {e}"))))?
}

#[cfg(test)]
mod temp_tests {
    use super::*;

    #[test]
    fn temporary_files_of_dead_writers_are_stale_and_of_live_ones_not() {
        let host = host_id();
        let ns = pid_namespace();
        let me = std::process::id();
        let fresh = std::time::Duration::from_secs(1);
        assert!(
            !stale(&format!(".tmp-{host}-{ns}-{me}-0-000000001"), fresh),
            "a live writer"
        );
        if ns != 0 && host != "0" {
            // No process has pid 4194304 + 1 (above Linux's pid_max).
            assert!(
                stale(&format!(".tmp-{host}-{ns}-4194305-0-000000001"), fresh),
                "a dead writer"
            );
        }
        // Another host (a shared file system), another pid namespace, or an older name
        // format: only when idle for an hour.
        assert!(
            !stale(&format!(".tmp-0000beef-{ns}-4194305-0-000000001"), fresh) || host == "0000beef"
        );
        assert!(!stale(&format!(".tmp-{host}-1-4194305-0-000000001"), fresh) || ns == 1);
        assert!(!stale(&format!(".tmp-{ns}-4194305-0-000000001"), fresh));
        assert!(stale(
            &format!(".tmp-{ns}-4194305-0-000000001"),
            STALE_FOREIGN * 2
        ));
        assert!(!stale("sha256-not-a-temp-file", STALE_FOREIGN * 2));
    }
}
