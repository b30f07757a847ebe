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
        .map(|m| json!({ "mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len() }))
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
    let marker: Value = serde_json::from_slice(&fs::read(root.join(LAYOUT_FILE)).unwrap()).unwrap();
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
    assert!(!store.has_blob(&d, None).await.unwrap());
    store
        .put_blob(
            &d,
            data.len() as u64,
            stream(&[&data[..1000], &data[1000..]]),
        )
        .await
        .unwrap();
    assert!(store.has_blob(&d, None).await.unwrap());
    let blob = store.get_blob(&d).await.unwrap();
    assert_eq!(blob.size, Some(data.len() as u64));
    assert_eq!(read_all(blob).await, data);
    // Present: the stream (which would fail) is not read.
    let failing: BlobStream = Box::pin(futures::stream::iter(vec![Err(Error::internal(
        "a test",
        "must not be read",
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
    assert!(!store.has_blob(&claimed, None).await.unwrap());
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
        Err(Error::internal("a test", "source broke")),
    ]));
    let err = store.put_blob(&d, 3, broken).await.unwrap_err();
    assert!(err.to_string().contains("source broke"), "{err}");
    assert!(!store.has_blob(&d, None).await.unwrap());
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
        store.has_blob(&docker.digest, None).await.unwrap(),
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
    assert!(store.has_blob(&cd, None).await.unwrap());
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
    assert!(!store.has_blob(&a.digest, None).await.unwrap());
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
    // Issue 16: a tag part that is no valid tag is an error, not part of the path.
    for bad_tag in ["oci:/x:.bad", "oci:dir:tägé"] {
        let e = parse_oci_location(bad_tag).unwrap_err().to_string();
        assert!(e.contains("not a valid tag"), "{bad_tag}: {e}");
    }
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
