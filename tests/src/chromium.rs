//! Headless Chromium (Debian's `chromium`) loading a page the way a person's browser does:
//! `--dump-dom` for the DOM after parsing, `--screenshot` for a PNG.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Chromium executable; panics with the setup command when there is none.
pub fn chromium() -> PathBuf {
    mirror_core::testing::require_tool(
        "chromium",
        "apt-get install chromium (scripts/test.sh installs it)",
    )
}

/// Runs Chromium headless on `url` with `what` (`--dump-dom`, `--screenshot=PATH`) and a
/// throwaway profile; returns stdout. Fails the test after 90 s or on a non-zero exit.
pub async fn headless(url: &str, what: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(what)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("chromium {what:?} {url} took more than 90 s"))
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {what:?} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where tests keep what a person looks at afterwards: `target/test-artifacts/`.
pub fn artifact(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let dir = root.join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir.join(name)
}
