//! Fixtures, layouts, push order and the fake registry.

use std::io::Read;

use reqwest::{Method, StatusCode};

use super::{client, get_bytes, send, MemoryStore};
use crate::digest::Digest;
use crate::media::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::store::ImageStore;
use crate::testing::*;

#[test]
fn images_are_deterministic_and_layers_are_real_gzip_tars() {
    let a = TestImage::builder()
        .seed(5)
        .layers([0, 10, 100_000])
        .build();
    let b = TestImage::builder()
        .seed(5)
        .layers([0, 10, 100_000])
        .build();
    let c = TestImage::builder()
        .seed(6)
        .layers([0, 10, 100_000])
        .build();
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
    assert_eq!(a.manifest().media_type, OCI_MANIFEST);

    let parsed = a.manifest().parse("fixture").unwrap();
    match parsed {
        crate::media::ParsedManifest::Image { config, layers } => {
            assert_eq!(config.digest, *a.config().digest());
            assert_eq!(layers.len(), 3);
        }
        other => panic!("expected an image, got {other:?}"),
    }
    let config: serde_json::Value = serde_json::from_slice(a.config().bytes().unwrap()).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");

    for (i, (layer, diff_id)) in a.layers().iter().zip(a.diff_ids()).enumerate() {
        let gz = layer.bytes().unwrap();
        assert_eq!(Digest::sha256_of(gz), *layer.digest());
        assert_eq!(gz.len() as u64, layer.size());
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(Digest::sha256_of(&tar_bytes), *diff_id);
        assert_eq!(config["rootfs"]["diff_ids"][i], diff_id.to_string());
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let entries: Vec<u64> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().size().unwrap())
            .collect();
        assert_eq!(entries, vec![[0, 10, 100_000][i]]);
    }

    let docker = TestImage::builder().seed(5).docker().build();
    assert_eq!(docker.manifest().media_type, DOCKER_MANIFEST);
    let m: serde_json::Value = serde_json::from_slice(&docker.manifest().bytes).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    let stored = TestImage::builder()
        .seed(5)
        .layers([0, 10, 100_000])
        .compression(LayerCompression::Stored)
        .build();
    assert_eq!(
        stored.diff_ids(),
        a.diff_ids(),
        "same tar, other compression"
    );
    assert_ne!(stored.layers()[2].digest(), a.layers()[2].digest());
}

#[test]
fn indexes_list_every_platform() {
    let index = TestIndex::linux_amd64_arm64(1);
    assert_eq!(index.manifest().media_type, OCI_INDEX);
    let doc: serde_json::Value = serde_json::from_slice(&index.manifest().bytes).unwrap();
    let platforms: Vec<String> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(
        doc["manifests"][1]["digest"],
        index.images()[1].digest().to_string()
    );
    assert_eq!(index.images()[1].platform(), "linux/arm64/v8");

    let docker = TestIndex::for_platforms(
        &TestImage::builder().docker(),
        &["linux/amd64", "linux/arm/v7"],
    );
    assert_eq!(docker.manifest().media_type, DOCKER_MANIFEST_LIST);
}

#[test]
fn layouts_written_while_streaming_match_the_in_memory_image() {
    let dir = tempfile::tempdir().unwrap();
    let builder = TestImage::builder()
        .seed(99)
        .layers([1 << 20, 17])
        .compression(LayerCompression::Stored);
    let on_disk = builder.write_layout(dir.path(), "big").unwrap();
    let in_memory = builder.build();
    assert_eq!(on_disk.digest(), in_memory.digest());
    assert!(on_disk.layers()[0].bytes().is_none());
    let path = on_disk.layers()[0].path().unwrap();
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        on_disk.layers()[0].size()
    );

    // Every blob file is named by its digest; index.json tags the manifest.
    for entry in std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(!name.starts_with('.'), "temporary file left: {name}");
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(Digest::sha256_of(&data).hex(), name);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        on_disk.digest().to_string()
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "big"
    );
    assert!(dir.path().join("oci-layout").is_file());

    // Re-tagging replaces the entry; another tag adds one.
    in_memory.write_layout(dir.path(), "big").unwrap();
    TestImage::builder()
        .seed(1)
        .build()
        .write_layout(dir.path(), "small")
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn push_writes_blobs_then_children_then_the_tag() {
    let store = MemoryStore::default();
    let index = TestIndex::linux_amd64_arm64(3);
    index.push(&store, "multi").await.unwrap();
    let order = store.order.lock().unwrap().clone();
    let first_manifest = order
        .iter()
        .position(|o| o.starts_with("manifest"))
        .unwrap();
    assert!(order[..first_manifest]
        .iter()
        .all(|o| o.starts_with("blob")));
    assert_eq!(order.last().unwrap(), "manifest multi");
    assert_eq!(
        order.len(),
        4 + 2 + 1,
        "2 configs + 2 layers, 2 images, 1 index"
    );
    assert_eq!(
        store.get_manifest("multi").await.unwrap().digest,
        *index.digest()
    );

    // On-disk blobs stream from their files.
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage::builder()
        .seed(4)
        .layers([300_000])
        .write_layout(dir.path(), "t")
        .unwrap();
    let store = MemoryStore::default();
    image.push(&store, "t").await.unwrap();
    assert!(store
        .has_blob(image.layers()[0].digest(), None)
        .await
        .unwrap());
}

#[tokio::test]
async fn fake_registry_serves_a_fixture_and_corrupts_on_request() {
    let image = TestImage::builder().seed(21).layers([5000]).build();
    let fake = FakeRegistry::serving(&image, "lib/app", "1.0");
    let client = client();
    let base = fake.url();

    assert_eq!(
        send(&client, Method::GET, format!("{base}/v2/"))
            .await
            .status(),
        StatusCode::OK
    );

    for reference in ["1.0".to_string(), image.digest().to_string()] {
        let resp = send(
            &client,
            Method::GET,
            format!("{base}/v2/lib/app/manifests/{reference}"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(
            resp.headers()["docker-content-digest"],
            image.digest().to_string().as_str()
        );
        let body = resp.bytes().await.unwrap();
        assert_eq!(body, image.manifest().bytes);
    }
    let layer = &image.layers()[0];
    let blob_url = format!("{base}/v2/lib/app/blobs/{}", layer.digest());
    let head = send(&client, Method::HEAD, &blob_url).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        layer.size().to_string().as_str()
    );
    let head = send(
        &client,
        Method::HEAD,
        format!("{base}/v2/lib/app/manifests/1.0"),
    )
    .await;
    assert_eq!(
        head.headers()["content-length"],
        image.manifest().bytes.len().to_string().as_str()
    );

    let good = get_bytes(&client, &blob_url).await;
    assert_eq!(Digest::sha256_of(&good), *layer.digest());

    fake.corrupt_blob(layer.digest());
    let resp = send(&client, Method::GET, &blob_url).await;
    assert_eq!(
        resp.headers()["docker-content-digest"],
        layer.digest().to_string().as_str()
    );
    let bad = resp.bytes().await.unwrap();
    assert_eq!(bad.len(), good.len());
    assert_ne!(Digest::sha256_of(&bad), *layer.digest());
    fake.heal();
    let healed = get_bytes(&client, &blob_url).await;
    assert_eq!(healed, good);

    let missing = send(
        &client,
        Method::GET,
        format!("{base}/v2/lib/other/manifests/1.0"),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing = send(
        &client,
        Method::GET,
        format!("{base}/v2/lib/app/manifests/2.0"),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.starts_with("HEAD /v2/lib/app/blobs/")));
}
