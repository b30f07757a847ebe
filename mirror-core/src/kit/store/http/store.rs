//! [`HttpStore`]: one repository of a registry, as an [`ImageStore`].

use crate::error::Operation;
use async_trait::async_trait;
use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;
use url::Url;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{RawManifest, ACCEPTED_MANIFEST_TYPES};
use crate::reference::validate_repository;
use crate::store::{
    Blob, BlobStream, ImageStore, ManifestHead, MountOutcome, PutOutcome, StoreLocation,
};

use super::*;

/// One repository of a registry, as an [`ImageStore`].
#[derive(Clone)]
pub struct HttpStore {
    pub(super) client: RegistryClient,
    pub(super) repository: String,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HttpStore({}/{})",
            self.client.inner.registry, self.repository
        )
    }
}

impl HttpStore {
    /// The idle and throughput limits of a blob transfer of `op` on `loc`.
    pub(super) fn transfer_limits(&self, op: &Operation, loc: &str) -> watchdog::Limits {
        let config = &self.client.inner.config;
        watchdog::Limits {
            idle: config.idle_timeout,
            min: config.min_throughput,
            answer: config.request_timeout.max(config.idle_timeout),
            registry: self.client.inner.registry.clone(),
            operation: op.clone(),
            location: loc.to_string(),
        }
    }

    /// PUT of a manifest; the answer's headers.
    async fn put(
        &self,
        reference: &str,
        manifest: &RawManifest,
    ) -> Result<reqwest::header::HeaderMap> {
        self.check_reference(reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let loc = self.loc(reference);
        let resp = self
            .client
            .send(&Operation::PutManifest, &loc, &self.push(), |c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, manifest.media_type.clone())
                    .body(manifest.bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self
                .client
                .error_for(resp, &Operation::PutManifest, &loc)
                .await);
        }
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok())
        {
            if d.algorithm() == manifest.digest.algorithm() && d != manifest.digest {
                return Err(Error::DigestMismatch {
                    expected: manifest.digest.clone(),
                    actual: d,
                });
            }
        }
        Ok(resp.headers().clone())
    }

    /// The client this store uses.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub(super) fn pull(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.repository)]
    }

    /// `method` on `manifests/<reference>` accepting every manifest type this crate reads,
    /// with pull scope; the answer and the location errors name.
    async fn manifest_request(
        &self,
        reference: &str,
        operation: &Operation,
        method: reqwest::Method,
    ) -> Result<(reqwest::Response, String)> {
        self.check_reference(reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let loc = self.loc(reference);
        let accept = ACCEPTED_MANIFEST_TYPES.join(", ");
        let resp = self
            .client
            .send(operation, &loc, &self.pull(), |c| {
                c.request(method.clone(), url.clone())
                    .header(ACCEPT, accept.clone())
            })
            .await?;
        Ok((resp, loc))
    }

    pub(super) fn push(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.repository)]
    }

    pub(super) fn delete_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:delete,pull,push", self.repository)]
    }

    pub(super) fn loc(&self, reference: &str) -> String {
        let sep = if reference.contains(':') { "@" } else { ":" };
        format!(
            "{}/{}{sep}{reference}",
            self.client.inner.registry, self.repository
        )
    }

    pub(super) fn url(&self, tail: &str) -> Result<Url> {
        self.client.url(&format!("v2/{}/{tail}", self.repository))
    }

    pub(super) fn check_reference(&self, reference: &str) -> Result<()> {
        let ok = if reference.contains(':') {
            Digest::parse(reference).is_ok()
        } else {
            crate::reference::validate_tag(reference).is_ok()
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidReference {
                input: reference.to_string(),
                reason: "expected a tag or a digest".into(),
            })
        }
    }
}

#[async_trait]
impl ImageStore for HttpStore {
    fn location(&self) -> StoreLocation {
        StoreLocation::Registry {
            registry: self.client.inner.registry.clone(),
            repository: self.repository.clone(),
        }
    }

    async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>> {
        let (resp, loc) = self
            .manifest_request(reference, &Operation::HeadManifest, reqwest::Method::HEAD)
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let h = resp.headers();
                let media_type = h
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let size = h
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let digest = h
                    .get("Docker-Content-Digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| Digest::parse(v).ok());
                match digest {
                    Some(digest) => Ok(Some(ManifestHead {
                        digest,
                        media_type,
                        size,
                    })),
                    // Some registries omit the digest on HEAD: fall back to GET.
                    None => {
                        let m = self.get_manifest(reference).await?;
                        Ok(Some(ManifestHead {
                            digest: m.digest,
                            size: m.bytes.len() as u64,
                            media_type: m.media_type,
                        }))
                    }
                }
            }
            _ => Err(self
                .client
                .error_for(resp, &Operation::HeadManifest, &loc)
                .await),
        }
    }

    async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        let (resp, loc) = self
            .manifest_request(reference, &Operation::GetManifest, reqwest::Method::GET)
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Err(Error::manifest_not_found(loc)),
            s if s.is_success() => {}
            _ => {
                return Err(self
                    .client
                    .error_for(resp, &Operation::GetManifest, &loc)
                    .await)
            }
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let declared_digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        if let Some(len) = resp.content_length() {
            if len > MAX_MANIFEST_BYTES as u64 {
                return Err(Error::InvalidManifest {
                    location: loc,
                    reason: format!("{len} bytes, more than the {MAX_MANIFEST_BYTES} accepted"),
                });
            }
        }
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| self.client.connect_error(&Operation::GetManifest, &loc, e))?;
            if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(Error::InvalidManifest {
                    location: loc,
                    reason: format!("more than the {MAX_MANIFEST_BYTES} bytes accepted"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let m = RawManifest::detect(body.freeze(), content_type.as_deref(), &loc)?;
        if let Some(d) = declared_digest {
            d.verify(&m.bytes)?;
        }
        Ok(m)
    }

    async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<PutOutcome> {
        let headers = self.put(reference, manifest).await?;
        Ok(PutOutcome::indexed(headers.contains_key("OCI-Subject")))
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        let reference = digest.to_string();
        let url = self.url(&format!("manifests/{reference}"))?;
        let loc = self.loc(&reference);
        let resp = self
            .client
            .send(
                &Operation::DeleteManifest,
                &loc,
                &self.delete_scope(),
                |c| c.delete(url.clone()),
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(Error::manifest_not_found(loc)),
            s if s.is_success() => Ok(()),
            _ => Err(self
                .client
                .error_for(resp, &Operation::DeleteManifest, &loc)
                .await),
        }
    }

    /// A registry verifies what it stores: the size is not asked again.
    async fn has_blob(&self, digest: &Digest, _size: Option<u64>) -> Result<bool> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let loc = self.loc(&digest.to_string());
        let resp = self
            .client
            .send(&Operation::HeadBlob, &loc, &self.pull(), |c| {
                c.head(url.clone())
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(self
                .client
                .error_for(resp, &Operation::HeadBlob, &loc)
                .await),
        }
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Blob> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let loc = self.loc(&digest.to_string());
        // No overall timeout on the body of a blob: it may be large. The headers get the
        // request timeout; the body the idle and throughput guards.
        let limits = self.transfer_limits(&Operation::GetBlob, &loc);
        let auth = self.client.authorization(&self.pull(), true).await?;
        let build = |auth: Option<String>| {
            let mut req = self.client.inner.http.get(url.clone());
            if let Some(a) = auth {
                req = req.header(AUTHORIZATION, a);
            }
            req
        };
        let headers_within = self.client.inner.config.request_timeout;
        let send = |auth: Option<String>| {
            let req = build(auth);
            let limits = &limits;
            let loc = &loc;
            async move {
                match tokio::time::timeout(headers_within, req.send()).await {
                    Ok(r) => {
                        let status = r.as_ref().ok().map(|r| r.status().as_u16());
                        crate::telemetry::request(&Operation::GetBlob, status);
                        r.map_err(|e| self.client.connect_error(&Operation::GetBlob, loc, e))
                    }
                    Err(_) => {
                        crate::telemetry::request(&Operation::GetBlob, None);
                        Err(limits.stalled(format!("no answer within {headers_within:?}")))
                    }
                }
            }
        };
        let sent_credentials = auth.is_some();
        let mut resp = send(auth).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.client
                .on_unauthorized(&self.pull(), &resp, sent_credentials)
                .await;
            let auth = self.client.authorization(&self.pull(), true).await?;
            resp = send(auth).await?;
        }
        self.client.note_rate_limit(resp.headers());
        match resp.status() {
            StatusCode::NOT_FOUND => return Err(Error::blob_not_found(loc)),
            s if s.is_success() => {}
            _ => return Err(self.client.error_for(resp, &Operation::GetBlob, &loc).await),
        }
        let size = resp.content_length();
        let client = self.client.clone();
        let stream = resp
            .bytes_stream()
            .map_err(move |e| client.connect_error(&Operation::GetBlob, &loc, e));
        Ok(Blob {
            size,
            stream: Box::pin(watchdog::GuardedDownload::new(Box::pin(stream), limits)),
        })
    }

    async fn put_blob(&self, digest: &Digest, size: u64, data: BlobStream) -> Result<()> {
        let loc = self.loc(&digest.to_string());
        let session = self.start_upload(digest).await?;
        // If this future is dropped mid-upload, cancel the session in the background.
        let mut guard = SessionGuard {
            store: Some(self.clone()),
            session: session.clone(),
        };
        let result = self.finish_upload(&session, digest, size, data, &loc).await;
        guard.store = None;
        result
    }

    async fn mount_blob(&self, digest: &Digest, from_repository: &str) -> Result<MountOutcome> {
        if validate_repository(from_repository).is_err() || from_repository == self.repository {
            return Ok(MountOutcome::NotMounted);
        }
        let mut url = self.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from_repository);
        let loc = self.loc(&digest.to_string());
        let scopes = vec![
            format!("repository:{}:pull,push", self.repository),
            format!("repository:{from_repository}:pull"),
        ];
        let resp = self
            .client
            .send(&Operation::MountBlob, &loc, &scopes, |c| {
                c.post(url.clone()).header(CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => {
                // The registry started a normal upload instead: close it, the caller uploads.
                if let Ok(session) = self.location_of(&resp, &Operation::MountBlob, &loc) {
                    self.cancel_upload(&session).await;
                }
                Ok(MountOutcome::NotMounted)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                tracing::debug!(status = %resp.status(), from = from_repository, "mount declined");
                Ok(MountOutcome::NotMounted)
            }
            _ => Err(self
                .client
                .error_for(resp, &Operation::MountBlob, &loc)
                .await),
        }
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        let loc = format!("{}/{}", self.client.inner.registry, self.repository);
        let mut url = self.url("tags/list")?;
        url.query_pairs_mut().append_pair("n", "1000");
        let tags: Vec<String> = self
            .client
            .paginate(&Operation::ListTags, &loc, &self.pull(), url, Pages::TAGS)
            .await?
            .unwrap_or_default();
        Ok(valid_only(tags, "tag", &loc, |t| {
            crate::reference::validate_tag(t)
        }))
    }

    /// `GET /v2/<name>/referrers/<digest>` (`Link` pagination); a 404 means the registry does
    /// not serve the API (distribution 2.8 and other pre-1.1 registries).
    async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<crate::media::Descriptor>>> {
        let loc = self.loc(&subject.to_string());
        let mut url = self.url(&format!("referrers/{subject}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        self.client
            .paginate(
                &Operation::Referrers,
                &loc,
                &self.pull(),
                url,
                Pages::REFERRERS,
            )
            .await
    }
}

/// The names of a listing that pass `validate`; the others (a 12 MB "tag", escapes) are
/// left out with one warning: nothing can be asked of them, and they are never shown whole.
pub(super) fn valid_only(
    names: Vec<String>,
    what: &str,
    loc: &str,
    validate: impl Fn(&str) -> std::result::Result<(), String>,
) -> Vec<String> {
    let before = names.len();
    let mut first_bad: Option<String> = None;
    let kept: Vec<String> = names
        .into_iter()
        .filter(|n| match validate(n) {
            Ok(()) => true,
            Err(_) => {
                if first_bad.is_none() {
                    first_bad = Some(crate::error::sanitize(n, 64));
                }
                false
            }
        })
        .collect();
    if let Some(bad) = first_bad {
        tracing::warn!(
            listing = %crate::error::sanitize(loc, 256),
            skipped = before - kept.len(),
            first = %bad,
            "a listing named {what}s that are not valid names; left out"
        );
    }
    kept
}
