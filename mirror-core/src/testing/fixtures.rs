//! Deterministic image fixtures: [`TestImage`] (one platform), [`TestIndex`] (several) and
//! [`TestArtifact`] (a referrer: signature, SBOM, attestation).
//!
//! Layers are real gzip'd tar archives holding one file of pseudo-random bytes derived from a
//! seed, so the same builder settings always give the same digests. Fixtures live in memory,
//! except those written straight into an OCI layout by [`TestImageBuilder::write_layout`],
//! whose layers stay on disk (for benchmark-sized layers).

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{
    RawManifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP,
    OCI_MANIFEST,
};
use crate::store::{BlobStream, ImageStore};

mod artifact;
mod layer;
mod oci_dir;

pub use artifact::{TestArtifact, TestArtifactBuilder, COSIGN_SIMPLESIGNING};

use layer::LayerSpec;
use oci_dir::{init_layout, write_layout};

/// Docker image config media type.
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer media type.
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Chunk size of blob streams.
const CHUNK: usize = 64 * 1024;

/// Which manifest format a [`TestImage`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ManifestFormat {
    /// OCI image manifest, config and gzip layer media types (the default).
    #[default]
    Oci,
    /// Docker v2 schema 2 manifest, config and layer media types.
    Docker,
}

/// How layers are gzip'd. Every choice yields a valid gzip stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LayerCompression {
    /// Level 1: quick, and the content is random anyway (the default).
    #[default]
    Fast,
    /// Level 0: deflate "stored" blocks, as fast as copying; for very large layers.
    Stored,
    /// An explicit level, 0 to 9.
    Level(u32),
}

impl LayerCompression {
    fn to_flate2(self) -> flate2::Compression {
        match self {
            LayerCompression::Fast => flate2::Compression::fast(),
            LayerCompression::Stored => flate2::Compression::none(),
            LayerCompression::Level(l) => flate2::Compression::new(l.min(9)),
        }
    }
}

#[derive(Clone)]
enum BlobData {
    Memory(Bytes),
    File(PathBuf),
}

/// A blob of a fixture (config or layer): descriptor fields and content, in memory or in a
/// file.
#[derive(Clone)]
pub struct TestBlob {
    digest: Digest,
    size: u64,
    media_type: String,
    data: BlobData,
}

impl fmt::Debug for TestBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TestBlob");
        d.field("digest", &self.digest)
            .field("size", &self.size)
            .field("media_type", &self.media_type);
        if let BlobData::File(p) = &self.data {
            d.field("path", p);
        }
        d.finish()
    }
}

impl TestBlob {
    fn in_memory(bytes: Vec<u8>, media_type: &str) -> Self {
        TestBlob {
            digest: Digest::sha256_of(&bytes),
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
            data: BlobData::Memory(Bytes::from(bytes)),
        }
    }

    /// The digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The media type its manifest gives it.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The content, when it is held in memory.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.data {
            BlobData::Memory(b) => Some(b),
            BlobData::File(_) => None,
        }
    }

    /// The file holding the content, when it lives on disk.
    pub fn path(&self) -> Option<&Path> {
        match &self.data {
            BlobData::Memory(_) => None,
            BlobData::File(p) => Some(p),
        }
    }

    /// The whole content (reads the file for on-disk blobs).
    pub fn read(&self) -> io::Result<Bytes> {
        match &self.data {
            BlobData::Memory(b) => Ok(b.clone()),
            BlobData::File(p) => fs::read(p).map(Bytes::from),
        }
    }

    /// The content as a stream of chunks of at most 64 KiB. On-disk blobs are read lazily
    /// (needs a tokio runtime when polled).
    pub fn stream(&self) -> BlobStream {
        match &self.data {
            BlobData::Memory(b) => {
                let b = b.clone();
                let chunks: Vec<Result<Bytes>> = (0..b.len())
                    .step_by(CHUNK)
                    .map(|start| Ok(b.slice(start..(start + CHUNK).min(b.len()))))
                    .collect();
                Box::pin(futures::stream::iter(chunks))
            }
            BlobData::File(p) => {
                let state = (p.clone(), None::<tokio::fs::File>);
                Box::pin(futures::stream::try_unfold(
                    state,
                    |(path, file)| async move {
                        use tokio::io::AsyncReadExt;
                        let mut file = match file {
                            Some(f) => f,
                            None => tokio::fs::File::open(&path)
                                .await
                                .map_err(|e| Error::io(&path, e))?,
                        };
                        let mut buf = vec![0u8; CHUNK * 4];
                        let n = file.read(&mut buf).await.map_err(|e| Error::io(&path, e))?;
                        if n == 0 {
                            return Ok(None);
                        }
                        buf.truncate(n);
                        Ok(Some((Bytes::from(buf), (path, Some(file)))))
                    },
                ))
            }
        }
    }

    fn descriptor(&self) -> DescriptorJson<'_> {
        DescriptorJson {
            media_type: &self.media_type,
            digest: self.digest.to_string(),
            size: self.size,
            platform: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson<'a> {
    media_type: &'a str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<PlatformJson<'a>>,
}

#[derive(Serialize)]
struct PlatformJson<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: DescriptorJson<'a>,
    layers: Vec<DescriptorJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<DescriptorJson<'a>>,
}

/// Something that can be pushed, served or written as an image: a [`TestImage`] or a
/// [`TestIndex`].
pub trait Fixture: Send + Sync + fmt::Debug {
    /// The top-level manifest (the one a tag points to).
    fn top_manifest(&self) -> &RawManifest;
    /// Manifests the top-level one refers to (the images of an index), empty for an image.
    fn child_manifests(&self) -> Vec<&RawManifest>;
    /// Every blob (configs and layers), each once.
    fn all_blobs(&self) -> Vec<&TestBlob>;
}

/// Options for a [`TestImage`]. Defaults: seed 0, one layer of 1 KiB, OCI format,
/// `linux/amd64`, [`LayerCompression::Fast`].
#[derive(Debug, Clone, Default)]
pub struct TestImageBuilder {
    seed: u64,
    layer_sizes: Option<Vec<u64>>,
    format: ManifestFormat,
    compression: LayerCompression,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

impl TestImageBuilder {
    /// The seed all content derives from.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adds a layer whose file holds `size` pseudo-random bytes (the blob is a little larger:
    /// tar headers, gzip framing).
    pub fn layer(mut self, size: u64) -> Self {
        self.layer_sizes.get_or_insert_with(Vec::new).push(size);
        self
    }

    /// Sets every layer at once (an empty list gives an image without layers).
    pub fn layers(mut self, sizes: impl IntoIterator<Item = u64>) -> Self {
        self.layer_sizes = Some(sizes.into_iter().collect());
        self
    }

    /// The manifest format.
    pub fn format(mut self, format: ManifestFormat) -> Self {
        self.format = format;
        self
    }

    /// Docker v2 schema 2 media types instead of OCI.
    pub fn docker(self) -> Self {
        self.format(ManifestFormat::Docker)
    }

    /// How layers are gzip'd.
    pub fn compression(mut self, compression: LayerCompression) -> Self {
        self.compression = compression;
        self
    }

    /// The platform, as `os/architecture` or `os/architecture/variant` (`linux/arm64/v8`).
    ///
    /// # Panics
    ///
    /// If `platform` does not have two or three non-empty parts.
    pub fn platform(mut self, platform: &str) -> Self {
        let parts: Vec<&str> = platform.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            panic!("platform {platform:?}: expected os/architecture[/variant]");
        }
        self.os = Some(parts[0].to_string());
        self.architecture = Some(parts[1].to_string());
        self.variant = parts.get(2).map(|v| v.to_string());
        self
    }

    /// Builds the image in memory.
    pub fn build(&self) -> TestImage {
        self.build_into(None)
            .unwrap_or_else(|e| panic!("building a test image in memory failed: {e}"))
    }

    /// Builds the image straight into the OCI layout `dir` (created if needed) and tags it
    /// `tag` there. Layers are written to their blob files while they are hashed, never held
    /// in memory: the returned image refers to those files.
    pub fn write_layout(&self, dir: impl AsRef<Path>, tag: &str) -> io::Result<TestImage> {
        let dir = dir.as_ref();
        init_layout(dir)?;
        let image = self.build_into(Some(dir))?;
        write_layout(&image, dir, tag)?;
        Ok(image)
    }

    fn os(&self) -> &str {
        self.os.as_deref().unwrap_or("linux")
    }

    fn architecture(&self) -> &str {
        self.architecture.as_deref().unwrap_or("amd64")
    }

    fn build_into(&self, layout: Option<&Path>) -> io::Result<TestImage> {
        let (config_type, layer_type, manifest_type) = match self.format {
            ManifestFormat::Oci => (OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST),
            ManifestFormat::Docker => (DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST),
        };
        let sizes = self.layer_sizes.clone().unwrap_or_else(|| vec![1024]);
        let mut layers = Vec::with_capacity(sizes.len());
        let mut diff_ids = Vec::with_capacity(sizes.len());
        for (index, &size) in sizes.iter().enumerate() {
            let layer = LayerSpec {
                seed: self.seed,
                index,
                size,
                compression: self.compression,
            };
            let (blob, diff_id) = match layout {
                None => {
                    let (bytes, digest, _, diff_id) = layer.write(Vec::new())?;
                    let size = bytes.len() as u64;
                    let blob = TestBlob {
                        digest,
                        size,
                        media_type: layer_type.to_string(),
                        data: BlobData::Memory(Bytes::from(bytes)),
                    };
                    (blob, diff_id)
                }
                Some(dir) => {
                    let blobs = dir.join("blobs").join("sha256");
                    let tmp = blobs.join(format!(
                        ".tmp-layer-{}-{:016x}",
                        std::process::id(),
                        rand::random::<u64>()
                    ));
                    let file = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
                    let written = layer.write(file).and_then(|(w, digest, size, diff_id)| {
                        let file = w.into_inner().map_err(|e| e.into_error())?;
                        file.sync_all()?;
                        Ok((digest, size, diff_id))
                    });
                    let (digest, size, diff_id) = match written {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = fs::remove_file(&tmp);
                            return Err(e);
                        }
                    };
                    let path = blobs.join(digest.hex());
                    fs::rename(&tmp, &path)?;
                    let blob = TestBlob {
                        digest,
                        size,
                        media_type: layer_type.to_string(),
                        data: BlobData::File(path),
                    };
                    (blob, diff_id)
                }
            };
            layers.push(blob);
            diff_ids.push(diff_id);
        }

        let mut config = serde_json::json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": self.architecture(),
            "os": self.os(),
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Labels": { "org.example.mirror-core.test-seed": self.seed.to_string() },
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>(),
            },
            "history": (0..sizes.len()).map(|i| serde_json::json!({
                "created": "1970-01-01T00:00:00Z",
                "created_by": format!("mirror-core test fixture: layer {i}"),
            })).collect::<Vec<_>>(),
        });
        if let Some(v) = &self.variant {
            config["variant"] = serde_json::Value::String(v.clone());
        }
        let config = TestBlob::in_memory(to_json(&config)?, config_type);

        let manifest = ManifestJson {
            schema_version: 2,
            media_type: manifest_type,
            config: config.descriptor(),
            layers: layers.iter().map(TestBlob::descriptor).collect(),
        };
        let manifest = RawManifest::new(to_json(&manifest)?, manifest_type);
        Ok(TestImage {
            manifest,
            config,
            layers,
            diff_ids,
            format: self.format,
            os: self.os().to_string(),
            architecture: self.architecture().to_string(),
            variant: self.variant.clone(),
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

/// A deterministic single-platform image: config, layers and manifest.
#[derive(Debug, Clone)]
pub struct TestImage {
    manifest: RawManifest,
    config: TestBlob,
    layers: Vec<TestBlob>,
    diff_ids: Vec<Digest>,
    format: ManifestFormat,
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl TestImage {
    /// Options for an image (see [`TestImageBuilder`] for the defaults).
    pub fn builder() -> TestImageBuilder {
        TestImageBuilder::default()
    }

    /// The manifest, as pushed.
    pub fn manifest(&self) -> &RawManifest {
        &self.manifest
    }

    /// The manifest digest.
    pub fn digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// The config blob.
    pub fn config(&self) -> &TestBlob {
        &self.config
    }

    /// The layer blobs, in manifest order.
    pub fn layers(&self) -> &[TestBlob] {
        &self.layers
    }

    /// The diff IDs (digests of the uncompressed layer tars), as in the config.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.diff_ids
    }

    /// Config then layers.
    pub fn blobs(&self) -> Vec<&TestBlob> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }

    /// The manifest format.
    pub fn format(&self) -> ManifestFormat {
        self.format
    }

    /// The platform: `os/architecture` or `os/architecture/variant`.
    pub fn platform(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// Uploads config and layers to `store`.
    pub async fn push_blobs(&self, store: &dyn ImageStore) -> Result<()> {
        push_blobs(store, &self.blobs()).await
    }

    /// Uploads the blobs, then the manifest under `tag`.
    pub async fn push(&self, store: &dyn ImageStore, tag: &str) -> Result<()> {
        push_fixture(self, store, tag).await
    }

    /// Writes the image into the OCI layout `dir` (created if needed) and tags it `tag`
    /// (replacing an entry with the same tag in `index.json`).
    pub fn write_layout(&self, dir: impl AsRef<Path>, tag: &str) -> io::Result<()> {
        write_layout(self, dir.as_ref(), tag)
    }

    fn platform_json(&self) -> PlatformJson<'_> {
        PlatformJson {
            architecture: &self.architecture,
            os: &self.os,
            variant: self.variant.as_deref(),
        }
    }
}

impl Fixture for TestImage {
    fn top_manifest(&self) -> &RawManifest {
        &self.manifest
    }

    fn child_manifests(&self) -> Vec<&RawManifest> {
        Vec::new()
    }

    fn all_blobs(&self) -> Vec<&TestBlob> {
        self.blobs()
    }
}

/// A deterministic multi-platform image: an OCI index (or a Docker manifest list when every
/// image is in Docker format) over several [`TestImage`]s.
#[derive(Debug, Clone)]
pub struct TestIndex {
    manifest: RawManifest,
    images: Vec<TestImage>,
}

impl TestIndex {
    /// An index over `images`, with their platforms, in this order.
    pub fn from_images(images: Vec<TestImage>) -> Self {
        let docker =
            !images.is_empty() && images.iter().all(|i| i.format == ManifestFormat::Docker);
        let media_type = if docker {
            DOCKER_MANIFEST_LIST
        } else {
            OCI_INDEX
        };
        let index = IndexJson {
            schema_version: 2,
            media_type,
            manifests: images
                .iter()
                .map(|i| DescriptorJson {
                    media_type: &i.manifest.media_type,
                    digest: i.manifest.digest.to_string(),
                    size: i.manifest.bytes.len() as u64,
                    platform: Some(i.platform_json()),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&index)
            .unwrap_or_else(|e| panic!("serialising a test index failed: {e}"));
        TestIndex {
            manifest: RawManifest::new(bytes, media_type),
            images,
        }
    }

    /// One image per platform (`linux/amd64`, `linux/arm64/v8`…) from `template`, the seed of
    /// the `i`-th platform being the template's seed plus `i`.
    pub fn for_platforms(template: &TestImageBuilder, platforms: &[&str]) -> Self {
        let images = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                template
                    .clone()
                    .seed(template.seed.wrapping_add(i as u64))
                    .platform(p)
                    .build()
            })
            .collect();
        Self::from_images(images)
    }

    /// `linux/amd64` and `linux/arm64/v8`, one 1 KiB layer each, OCI format.
    pub fn linux_amd64_arm64(seed: u64) -> Self {
        Self::for_platforms(
            &TestImage::builder().seed(seed),
            &["linux/amd64", "linux/arm64/v8"],
        )
    }

    /// The index manifest.
    pub fn manifest(&self) -> &RawManifest {
        &self.manifest
    }

    /// The index digest.
    pub fn digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// The per-platform images, in index order.
    pub fn images(&self) -> &[TestImage] {
        &self.images
    }

    /// Uploads every blob, then each image manifest by digest, then the index under `tag`.
    pub async fn push(&self, store: &dyn ImageStore, tag: &str) -> Result<()> {
        push_fixture(self, store, tag).await
    }

    /// Writes the index and its images into the OCI layout `dir` and tags the index `tag`.
    pub fn write_layout(&self, dir: impl AsRef<Path>, tag: &str) -> io::Result<()> {
        write_layout(self, dir.as_ref(), tag)
    }
}

impl Fixture for TestIndex {
    fn top_manifest(&self) -> &RawManifest {
        &self.manifest
    }

    fn child_manifests(&self) -> Vec<&RawManifest> {
        self.images.iter().map(|i| &i.manifest).collect()
    }

    fn all_blobs(&self) -> Vec<&TestBlob> {
        let mut seen = HashSet::new();
        self.images
            .iter()
            .flat_map(TestImage::blobs)
            .filter(|b| seen.insert(b.digest.clone()))
            .collect()
    }
}

async fn push_blobs(store: &dyn ImageStore, blobs: &[&TestBlob]) -> Result<()> {
    for blob in blobs {
        store
            .put_blob(&blob.digest, blob.size, blob.stream())
            .await?;
    }
    Ok(())
}

/// Blobs first, then child manifests by digest, then the top manifest under `tag`.
pub(crate) async fn push_fixture(
    fixture: &dyn Fixture,
    store: &dyn ImageStore,
    tag: &str,
) -> Result<()> {
    push_blobs(store, &fixture.all_blobs()).await?;
    for child in fixture.child_manifests() {
        store.put_manifest(&child.digest.to_string(), child).await?;
    }
    store
        .put_manifest(tag, fixture.top_manifest())
        .await
        .map(|_| ())
}
