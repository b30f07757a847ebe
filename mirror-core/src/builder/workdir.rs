//! Private temporary directories for one build: the auth file, digest and metadata files,
//! and (optionally) throw-away builder storage.
//!
//! The directory is created with mode `0700` and files with `0600` (`create_new`, so an
//! existing file or symlink is never followed). It is removed when the build ends, and by
//! `Drop` when the build's future is dropped. Removal never crosses a mount point: a
//! directory with a filesystem mounted below it (a builder killed in the middle of a step
//! could leave one) is left in place with a warning rather than emptied through the mount.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::reference::DOCKER_HUB;
use crate::store::http::credentials::Credentials;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A private temporary directory, removed on [`WorkDir::remove`] or drop.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
    auth_files: Vec<PathBuf>,
    removed: bool,
}

impl WorkDir {
    /// Creates `<tmp>/<prefix>-<pid>-<nanos>-<n>` with mode `0700`.
    pub(crate) fn create(prefix: &str) -> Result<Self> {
        Self::create_in(&std::env::temp_dir(), prefix)
    }

    /// Creates the directory under `parent`.
    pub(crate) fn create_in(parent: &Path, prefix: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()));
            let mut b = fs::DirBuilder::new();
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            match b.create(&path) {
                Ok(()) => {
                    return Ok(WorkDir {
                        path,
                        auth_files: Vec::new(),
                        removed: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        let taken = std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "cannot create a private directory: every name tried is taken",
        );
        Err(Error::io(parent, taken))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a private file (`0600`, never through an existing file or link).
    pub(crate) fn write_private(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path.join(name);
        let mut o = OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&path).map_err(|e| Error::io(&path, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&path, e))?;
        f.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// Writes the docker / containers auth file `name` holding `credentials`.
    pub(crate) fn write_auth(
        &mut self,
        name: &str,
        credentials: &BTreeMap<String, Credentials>,
    ) -> Result<PathBuf> {
        let text = auth_json(credentials);
        let path = self.write_private(name, text.as_bytes())?;
        self.auth_files.push(path.clone());
        Ok(path)
    }

    /// Removes the auth files now (the secrets go first, whatever happens to the rest).
    pub(crate) fn remove_auth_files(&mut self) {
        for f in self.auth_files.drain(..) {
            if let Err(e) = fs::remove_file(&f) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %f.display(), error = %e, "cannot remove an auth file");
                }
            }
        }
    }

    /// Removes everything, off the async runtime's worker threads (builder storage can be
    /// large).
    pub(crate) async fn remove(mut self) {
        self.remove_auth_files();
        self.removed = true;
        let path = self.path.clone();
        let done = tokio::task::spawn_blocking(move || remove_tree(&path)).await;
        if done.is_err() {
            remove_tree(&self.path);
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        self.remove_auth_files();
        if !self.removed {
            remove_tree(&self.path);
        }
    }
}

/// Removes `path` unless a filesystem is mounted at or below it.
fn remove_tree(path: &Path) {
    if let Some(mount) = mount_below(path) {
        tracing::warn!(
            path = %path.display(),
            mount = %mount,
            "a filesystem is still mounted below the build directory; leaving it in place"
        );
        return;
    }
    if let Err(e) = fs::remove_dir_all(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a build directory");
        }
    }
}

/// The first mount point at or below `path` (Linux `/proc/self/mountinfo`).
fn mount_below(path: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes blanks as \040; our paths hold none.
        .find(|m| Path::new(m).starts_with(&root))
        .map(str::to_string)
}

/// The `auths` document for `credentials` (docker `config.json` and containers
/// `auth.json` share it). Anonymous entries are left out.
pub(crate) fn auth_json(credentials: &BTreeMap<String, Credentials>) -> String {
    let mut auths = Map::new();
    for (host, c) in credentials {
        let entry = match c {
            Credentials::Anonymous => continue,
            Credentials::Basic { username, password } => json!({
                "auth": base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose())),
            }),
            Credentials::IdentityToken(t) => json!({ "identitytoken": t.expose() }),
            Credentials::Bearer(t) => json!({ "registrytoken": t.expose() }),
        };
        if host == DOCKER_HUB {
            // The docker CLI looks Docker Hub up under its legacy index URL.
            auths.insert("https://index.docker.io/v1/".into(), entry.clone());
        }
        auths.insert(host.clone(), entry);
    }
    Value::Object(Map::from_iter([(
        "auths".to_string(),
        Value::Object(auths),
    )]))
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_json_has_the_docker_shape() {
        let creds = BTreeMap::from([
            (
                "127.0.0.1:5000".to_string(),
                Credentials::basic("alice", "s3cret"),
            ),
            ("docker.io".to_string(), Credentials::basic("bob", "pw")),
            ("anon.example".to_string(), Credentials::Anonymous),
        ]);
        let v: Value = serde_json::from_str(&auth_json(&creds)).unwrap();
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "YWxpY2U6czNjcmV0");
        assert!(v["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
        assert!(v["auths"].get("anon.example").is_none());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn private_files_are_0600_in_a_0700_dir_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let mut w = WorkDir::create_in(parent.path(), "t").unwrap();
        let dir = w.path().to_path_buf();
        let creds = BTreeMap::from([("h".to_string(), Credentials::basic("u", "p"))]);
        let auth = w.write_auth("auth.json", &creds).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&auth), 0o600);
        // Never written through an existing file.
        assert!(w.write_private("auth.json", b"x").is_err());
        w.remove().await;
        assert!(!auth.exists() && !dir.exists());

        // Dropped (a cancelled build): removed too.
        let mut w = WorkDir::create_in(parent.path(), "t").unwrap();
        let auth = w.write_auth("auth.json", &creds).unwrap();
        let dir = w.path().to_path_buf();
        drop(w);
        assert!(!auth.exists() && !dir.exists());
    }
}
