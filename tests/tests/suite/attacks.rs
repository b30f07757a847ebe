//! Attacks on the layout store and on our own process: each test is the attack (a prepared
//! layout, a killed copy), written to fail before its fix. Hostile servers: `hostile.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mirror_core::kit::store::layout::LayoutStore;
use mirror_core::testing::{require_tool, LayerCompression, TestImage, TestIndex, TestRegistry};
use mirror_core::ImageStore;
use mirror_core::{copy, CopyOptions};
use tests::cli::{build_cli, Cli};

/// `.tmp-*` files anywhere under `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                pending.push(p);
            } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(p);
            }
        }
    }
    out
}

/// `skopeo copy` of `oci:DIR:tag` into a `dir:` directory: skopeo reads every blob and checks
/// its digest.
fn skopeo_reads(layout: &Path, tag: &str) {
    let skopeo = require_tool("skopeo", "apt-get install -y skopeo");
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(skopeo)
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("dir:{}", out_dir.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo cannot read {}:{tag}: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_under_a_blobs_name_is_replaced_not_skipped() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let image = TestImage::builder()
        .seed(1)
        .layers([200_000, 6 * 1024 * 1024])
        .build();
    let src = LayoutStore::create(src_dir.path()).unwrap();
    image.push(&src, "v1").await.unwrap();
    let dst = LayoutStore::create(dst_dir.path()).unwrap();
    // A crash of another tool left the first 100 bytes of each layer under their final names,
    // and a same-size but foreign file under the config's.
    for layer in image.layers() {
        let path = dst_dir
            .path()
            .join("blobs/sha256")
            .join(layer.digest().hex());
        std::fs::write(&path, &layer.read().unwrap()[..100]).unwrap();
    }
    let config = image.config();
    std::fs::write(
        dst_dir
            .path()
            .join("blobs/sha256")
            .join(config.digest().hex()),
        vec![b'x'; config.size() as usize],
    )
    .unwrap();

    let r = copy(&src, "v1", &dst, "v1", &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.blobs_skipped, 0, "nothing wrong counts as present: {r:?}");
    assert_eq!(r.blobs_uploaded, 3);
    for blob in image.blobs() {
        let path = dst_dir
            .path()
            .join("blobs/sha256")
            .join(blob.digest().hex());
        let bytes = std::fs::read(&path).unwrap();
        blob.digest().verify(&bytes).unwrap();
    }
    skopeo_reads(dst_dir.path(), "v1");
    // And a whole blob is still skipped.
    let again = copy(&src, "v1", &dst, "v2", &CopyOptions::default())
        .await
        .unwrap();
    assert!(again.already_present, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_files_of_dead_writers_go_when_the_layout_is_opened_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    LayoutStore::create(dir.path()).unwrap();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            s.strip_prefix("pid:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
        .expect("a pid namespace id (Linux)");
    let host: String = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("a boot id (Linux)")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    let blobs = dir.path().join("blobs/sha256");
    // 4194305 is above Linux's pid_max: that writer is dead.
    let dead_blob = blobs.join(format!(".tmp-{host}-{ns}-4194305-0-000000001"));
    let dead_index = dir
        .path()
        .join(format!(".tmp-{host}-{ns}-4194305-1-000000002"));
    let live = blobs.join(format!(
        ".tmp-{host}-{ns}-{}-0-000000003",
        std::process::id()
    ));
    let foreign = blobs.join(format!(".tmp-{host}-1-4194305-0-000000004"));
    let other_host = blobs.join(format!(".tmp-0000beef-{ns}-4194305-0-000000005"));
    for f in [&dead_blob, &dead_index, &live, &foreign, &other_host] {
        std::fs::write(f, vec![0u8; 4096]).unwrap();
    }
    LayoutStore::create(dir.path()).unwrap();
    assert!(
        !dead_blob.exists() && !dead_index.exists(),
        "dead writers' files go"
    );
    assert!(live.exists(), "a live writer's file stays");
    assert!(
        foreign.exists(),
        "a file of another pid namespace stays until it has been idle for an hour"
    );
    assert!(
        other_host.exists(),
        "a file of another host (a shared file system) stays until it has been idle for an hour"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_ten_thousand_children_goes_into_a_layout_with_one_index_json_write() {
    let src = TestRegistry::start();
    let src_store = mirror_core::kit::store::http::RegistryClient::new(
        &src.host(),
        mirror_core::kit::store::http::credentials::Credentials::Anonymous,
    )
    .unwrap()
    .repository("big/index")
    .unwrap();
    // 10,000 platform manifests sharing one config and one layer.
    let template = TestImage::builder().seed(3).layer(256).build();
    template.push_blobs(&src_store).await.unwrap();
    let base: serde_json::Value = serde_json::from_slice(&template.manifest().bytes).unwrap();
    let mut children = Vec::new();
    for i in 0..10_000u32 {
        let mut doc = base.clone();
        doc["annotations"] = serde_json::json!({ "n": i.to_string() });
        children.push(mirror_core::RawManifest::new(
            doc.to_string().into_bytes(),
            template.manifest().media_type.clone(),
        ));
    }
    use futures::StreamExt;
    let puts: Vec<_> = children
        .iter()
        .map(|m| {
            let s = &src_store;
            async move { s.put_manifest(&m.digest.to_string(), m).await }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(puts)
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r.unwrap();
    }
    let entries = children.iter().enumerate().map(|(i, m)| {
        let arch = if i == 0 {
            "amd64".to_string()
        } else {
            format!("arch{i}")
        };
        tests::descriptor(m, Some(&format!("linux/{arch}")))
    });
    let index = tests::oci_index(entries.collect());
    src_store.put_manifest("v1", &index).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dst = Counting {
        inner: LayoutStore::create(dir.path()).unwrap(),
        index_writes: Default::default(),
    };
    let started = Instant::now();
    let options = CopyOptions {
        concurrency: 16,
        ..CopyOptions::default()
    };
    let r = copy(&src_store, "v1", &dst, "v1", &options).await.unwrap();
    let took = started.elapsed();
    // Each `put_manifest` of a layout rewrites index.json; the children go as blobs only.
    let writes = dst.index_writes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        writes <= 2,
        "index.json written {writes} times for one index"
    );
    assert_eq!(r.digest, index.digest);
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index_json["manifests"].as_array().unwrap().len(),
        1,
        "index.json holds the tagged root only"
    );
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "10,000 children into a layout: {took:?}, index.json written {writes} times, \
         peak RSS of the test process {peak}"
    );
    skopeo_reads(dir.path(), "v1");
}

/// A layout that counts the calls rewriting its `index.json`.
#[derive(Debug)]
struct Counting {
    inner: LayoutStore,
    index_writes: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl ImageStore for Counting {
    fn location(&self) -> mirror_core::StoreLocation {
        self.inner.location()
    }
    async fn head_manifest(
        &self,
        r: &str,
    ) -> mirror_core::Result<Option<mirror_core::kit::store::ManifestHead>> {
        self.inner.head_manifest(r).await
    }
    async fn get_manifest(&self, r: &str) -> mirror_core::Result<mirror_core::RawManifest> {
        self.inner.get_manifest(r).await
    }
    async fn put_manifest(
        &self,
        r: &str,
        m: &mirror_core::RawManifest,
    ) -> mirror_core::Result<mirror_core::kit::store::PutOutcome> {
        self.index_writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.put_manifest(r, m).await
    }
    async fn put_children(&self, c: &[&mirror_core::RawManifest]) -> mirror_core::Result<()> {
        self.inner.put_children(c).await
    }
    async fn delete_manifest(&self, d: &mirror_core::Digest) -> mirror_core::Result<()> {
        self.inner.delete_manifest(d).await
    }
    async fn has_blob(
        &self,
        d: &mirror_core::Digest,
        size: Option<u64>,
    ) -> mirror_core::Result<bool> {
        self.inner.has_blob(d, size).await
    }
    async fn get_blob(
        &self,
        d: &mirror_core::Digest,
    ) -> mirror_core::Result<mirror_core::kit::store::Blob> {
        self.inner.get_blob(d).await
    }
    async fn put_blob(
        &self,
        d: &mirror_core::Digest,
        size: u64,
        data: mirror_core::kit::store::BlobStream,
    ) -> mirror_core::Result<()> {
        self.inner.put_blob(d, size, data).await
    }
    async fn list_tags(&self) -> mirror_core::Result<Vec<String>> {
        self.inner.list_tags().await
    }
}

/// Waits until a `.tmp-*` file of at least `min` bytes exists under `dir`.
fn wait_for_temp_file(dir: &Path, min: u64, child: &mut std::process::Child) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if temp_files(dir)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= min))
        {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// The arguments of `mirror copy --concurrency 1 oci:SRC:v1 TARGET`.
fn copy_args(src: &Path, target: String) -> Vec<String> {
    let src = format!("oci:{}:v1", src.display());
    ["copy", "--concurrency", "1", &src, &target]
        .map(String::from)
        .to_vec()
}

/// Starts `mirror <args>` with its output dropped, to be killed.
fn start(cli: &Cli, args: &[String]) -> std::process::Child {
    let mut cmd = cli.command();
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    cmd.spawn().unwrap()
}

/// Runs `mirror <args> --json` to the end: it succeeds and prints its report.
async fn rerun(cli: &Cli, args: &[String]) -> serde_json::Value {
    cli.json_async([args, &["--json".to_string()]].concat())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_copy_into_a_layout_then_rerun_leaves_a_whole_layout_and_no_temp_files() {
    let bin = tokio::task::spawn_blocking(build_cli).await.unwrap();
    let cli = Cli::new(bin, &[], &[]);
    let src_dir = cli.home.path().join("src");
    let image = TestImage::builder()
        .seed(9)
        .compression(LayerCompression::Stored)
        .layers([8 * 1024 * 1024, 384 * 1024 * 1024])
        .write_layout(&src_dir, "v1")
        .unwrap();
    let dst_dir = cli.home.path().join("dst");
    let args = copy_args(&src_dir, format!("oci:{}:v1", dst_dir.display()));
    let mut killed = false;
    for _ in 0..3 {
        let mut child = start(&cli, &args);
        if wait_for_temp_file(&dst_dir, 1024 * 1024, &mut child) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed = true;
            break;
        }
        child.wait().unwrap();
        std::fs::remove_dir_all(&dst_dir).ok();
    }
    assert!(killed, "the copy was never caught mid-blob");
    assert!(
        !temp_files(&dst_dir).is_empty(),
        "the kill left a temporary file"
    );
    let dst = LayoutStore::open(&dst_dir).unwrap();
    assert!(
        dst.head_manifest("v1").await.unwrap().is_none(),
        "nothing tagged by the killed copy"
    );

    let report = rerun(&cli, &args).await;
    assert_eq!(report["digest"], image.digest().to_string());
    assert_eq!(
        temp_files(&dst_dir),
        Vec::<PathBuf>::new(),
        "no temporary file left"
    );
    skopeo_reads(&dst_dir, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_copy_into_a_registry_then_rerun_gives_identical_digests() {
    let bin = tokio::task::spawn_blocking(build_cli).await.unwrap();
    let cli = Cli::new(bin, &[], &[]);
    let dst = TestRegistry::start();
    let index = TestIndex::for_platforms(
        &TestImage::builder()
            .seed(11)
            .compression(LayerCompression::Stored)
            .layers([64 * 1024 * 1024]),
        &["linux/amd64", "linux/arm64"],
    );
    let src_dir = cli.home.path().join("src");
    index.write_layout(&src_dir, "v1").unwrap();
    let target = format!("{}/app/killed:v1", dst.host());
    let args = copy_args(&src_dir, target.clone());
    let mut child = start(&cli, &args);
    // Kill once the registry has received some of the first layer.
    let started = Instant::now();
    while !dst
        .log()
        .lines()
        .any(|l| l.contains("\"PUT ") && l.contains("/blobs/uploads/"))
        && started.elapsed() < Duration::from_secs(60)
        && child.try_wait().ok().flatten().is_none()
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().ok();
    let status = child.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the copy was killed mid-way, not left to finish: {status:?}"
        );
    }
    let store = mirror_core::kit::store::http::RegistryClient::new(
        &dst.host(),
        mirror_core::kit::store::http::credentials::Credentials::Anonymous,
    )
    .unwrap()
    .repository("app/killed")
    .unwrap();
    let tagged_early = store.head_manifest("v1").await.unwrap();
    assert!(
        tagged_early.is_none() || tagged_early.is_some_and(|h| &h.digest == index.digest()),
        "never a tag on something partial"
    );

    let report = rerun(&cli, &args).await;
    assert_eq!(report["digest"], index.digest().to_string());
    let skopeo = require_tool("skopeo", "apt-get install -y skopeo");
    let raw = Command::new(skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}"))
        .output()
        .unwrap();
    assert_eq!(raw.stdout, index.manifest().bytes, "byte-identical index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefix_applies_to_oci_registries_and_sweep_stays_inside_it() {
    let bin = tokio::task::spawn_blocking(build_cli).await.unwrap();
    let mirror_dir = tempfile::tempdir().unwrap();
    let registry = format!("oci:{}", mirror_dir.path().display());
    let team = |prefix: &str| {
        Cli::new(
            bin.clone(),
            &[],
            &[
                "--registry",
                &registry,
                "--prefix",
                prefix,
                "--cluster",
                "prod",
            ],
        )
    };
    let (a, b) = (team("team-a"), team("team-b"));
    let image = TestImage::builder().seed(13).build();
    let source = a.layout_source(&image, "src", "v1");
    let d = a
        .json_async(vec!["deploy", "--service", "api", "--json", &source])
        .await;
    assert!(
        d["repository"].as_str().unwrap().starts_with("team-a/"),
        "{d}"
    );
    assert!(mirror_dir.path().join("team-a/prod/services/api").is_dir());
    assert!(
        !mirror_dir.path().join("prod").exists(),
        "nothing outside the prefix"
    );

    // Team b's sweep, far in the future, plans nothing of team a's.
    let plan = b
        .json_async(vec!["sweep", "--retention", "1s", "--dry-run", "--json"])
        .await;
    for p in plan["plans"].as_array().unwrap() {
        assert!(
            p["repository"].as_str().unwrap().starts_with("team-b/"),
            "team b's sweep touches {p}"
        );
    }
    let ls = b.json_async(vec!["ls", "--json"]).await;
    assert!(
        ls["repositories"].as_array().unwrap().is_empty(),
        "team b sees none of team a's repositories: {ls}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_concurrency_is_capped() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let image = TestImage::builder()
        .seed(21)
        .layers(std::iter::repeat_n(600, 200))
        .build();
    let src = LayoutStore::create(src_dir.path()).unwrap();
    image.push(&src, "v1").await.unwrap();
    let dst = LayoutStore::create(dst_dir.path()).unwrap();
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let options = CopyOptions {
        concurrency: 100_000,
        events: Some(std::sync::Arc::new(move |e: &mirror_core::CopyEvent| {
            use std::sync::atomic::Ordering::SeqCst;
            match e {
                mirror_core::CopyEvent::BlobStarted { .. } => {
                    let now = r.fetch_add(1, SeqCst) + 1;
                    m.fetch_max(now, SeqCst);
                }
                mirror_core::CopyEvent::BlobDone { .. } => {
                    r.fetch_sub(1, SeqCst);
                }
                _ => {}
            }
        })),
        ..CopyOptions::default()
    };
    copy(&src, "v1", &dst, "v1", &options).await.unwrap();
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        most <= mirror_core::copy::MAX_CONCURRENCY,
        "{most} transfers at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_layer_the_source_does_not_serve_is_named_as_such() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let src = LayoutStore::create(src_dir.path()).unwrap();
    let image = TestImage::builder().seed(22).build();
    image.push_blobs(&src).await.unwrap();
    // A Windows-style manifest: its base layer is foreign, fetched from URLs, not served.
    let mut doc: serde_json::Value = serde_json::from_slice(&image.manifest().bytes).unwrap();
    doc["layers"] = serde_json::json!([{
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": mirror_core::Digest::sha256_of(b"windows base layer").to_string(),
        "size": 18,
        "urls": ["https://mcr.example/base.tar.gz"],
    }]);
    doc["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
    doc["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    let manifest = mirror_core::RawManifest::new(
        doc.to_string().into_bytes(),
        "application/vnd.docker.distribution.manifest.v2+json",
    );
    src.put_manifest("v1", &manifest).await.unwrap();
    let dst = LayoutStore::create(dst_dir.path()).unwrap();
    let err = copy(&src, "v1", &dst, "v1", &CopyOptions::default())
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("foreign") && shown.contains("not copied"),
        "{shown}"
    );
}

#[test]
fn an_oci_location_whose_tag_part_is_no_tag_is_an_error_not_a_path() {
    for bad in ["oci:dir:tägé", "oci:/x/y:.hidden"] {
        let err = mirror_core::Source::parse(bad).unwrap_err().to_string();
        assert!(err.contains("not a valid tag"), "{bad}: {err}");
    }
    assert!(mirror_core::Source::parse("oci:dir:v1").is_ok());
}
