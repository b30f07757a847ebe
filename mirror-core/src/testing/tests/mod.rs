//! Tests of the harness itself, against the real registry and skopeo.
//! Run with `cargo test -p mirror-core --features testing testing::`.

mod fixtures;
mod registry;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::RawManifest;
use crate::store::{Blob, BlobStream, ImageStore, ManifestHead, StoreLocation};

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// `method url` through `client`, sent (the answer, whatever its status).
pub(super) async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: impl reqwest::IntoUrl,
) -> reqwest::Response {
    client.request(method, url).send().await.unwrap()
}

/// The body of `GET url` through `client`.
pub(super) async fn get_bytes(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> Bytes {
    send(client, reqwest::Method::GET, url)
        .await
        .bytes()
        .await
        .unwrap()
}

/// A minimal in-memory store, to test `push` without depending on the real stores.
#[derive(Debug, Default)]
pub(super) struct MemoryStore {
    blobs: Mutex<HashMap<Digest, Bytes>>,
    manifests: Mutex<BTreeMap<String, RawManifest>>,
    pub(super) order: Mutex<Vec<String>>,
}

#[async_trait]
impl ImageStore for MemoryStore {
    fn location(&self) -> StoreLocation {
        StoreLocation::Registry {
            registry: "memory".into(),
            repository: "test".into(),
        }
    }
    async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>> {
        Ok(self
            .manifests
            .lock()
            .unwrap()
            .get(reference)
            .map(|m| ManifestHead {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                size: m.bytes.len() as u64,
            }))
    }
    async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        self.manifests
            .lock()
            .unwrap()
            .get(reference)
            .cloned()
            .ok_or_else(|| Error::manifest_not_found(reference))
    }
    async fn put_manifest(
        &self,
        reference: &str,
        manifest: &RawManifest,
    ) -> Result<crate::store::PutOutcome> {
        self.order
            .lock()
            .unwrap()
            .push(format!("manifest {reference}"));
        self.manifests
            .lock()
            .unwrap()
            .insert(reference.to_string(), manifest.clone());
        Ok(crate::store::PutOutcome::default())
    }
    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        self.manifests.lock().unwrap().remove(&digest.to_string());
        Ok(())
    }
    async fn has_blob(&self, digest: &Digest, _size: Option<u64>) -> Result<bool> {
        Ok(self.blobs.lock().unwrap().contains_key(digest))
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Blob> {
        let b = self
            .blobs
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::blob_not_found(digest.to_string()))?;
        Ok(Blob {
            size: Some(b.len() as u64),
            stream: Box::pin(futures::stream::iter([Ok(b)])),
        })
    }
    async fn put_blob(&self, digest: &Digest, size: u64, mut data: BlobStream) -> Result<()> {
        let mut all = Vec::new();
        while let Some(chunk) = data.next().await {
            all.extend_from_slice(&chunk?);
        }
        assert_eq!(all.len() as u64, size);
        digest.verify(&all)?;
        self.order.lock().unwrap().push(format!("blob {digest}"));
        self.blobs
            .lock()
            .unwrap()
            .insert(digest.clone(), all.into());
        Ok(())
    }
    async fn list_tags(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

#[test]
fn harness_types_can_be_shared_across_tasks() {
    fn check<T: Send + Sync>() {}
    check::<crate::testing::TestRegistry>();
    check::<crate::testing::TokenServer>();
    check::<crate::testing::FakeRegistry>();
    check::<crate::testing::TestImage>();
    check::<crate::testing::TestIndex>();
}
