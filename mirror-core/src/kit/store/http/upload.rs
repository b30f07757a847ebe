//! Blob uploads: a session, then one streaming `PUT` (or chunked `PATCH`es once a registry
//! refused the monolithic upload); a failed or dropped upload cancels its session.

use crate::error::Operation;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode};
use url::Url;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{take_failure, BlobStream, VerifyingStream};

use super::*;

impl HttpStore {
    pub(super) async fn cancel_upload(&self, location: &Url) {
        let scopes = self.push();
        let url = location.clone();
        if let Err(e) = self
            .client
            .send(&Operation::CancelUpload, "upload session", &scopes, |c| {
                c.delete(url.clone())
            })
            .await
        {
            tracing::debug!(error = %e, "cancelling an upload session failed");
        }
    }

    /// Opens an upload session and returns its URL.
    pub(super) async fn start_upload(&self, digest: &Digest) -> Result<Url> {
        let url = self.url("blobs/uploads/")?;
        let loc = self.loc(&digest.to_string());
        let resp = self
            .client
            .send(&Operation::StartUpload, &loc, &self.push(), |c| {
                c.post(url.clone()).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self
                .client
                .error_for(resp, &Operation::StartUpload, &loc)
                .await);
        }
        self.location_of(&resp, &Operation::StartUpload, &loc)
    }

    /// The upload session URL an answer to `op` names in its `Location`.
    pub(super) fn location_of(&self, resp: &Response, op: &Operation, loc: &str) -> Result<Url> {
        let l = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Http {
                registry: self.client.inner.registry.clone(),
                operation: op.clone(),
                location: loc.to_string(),
                status: resp.status().as_u16(),
                message: "the registry sent no upload Location".into(),
                codes: Default::default(),
            })?;
        self.client.inner.base.join(l).map_err(|e| Error::Protocol {
            registry: self.client.inner.registry.clone(),
            operation: op.clone(),
            location: loc.to_string(),
            reason: format!("an unusable upload Location {l:?}: {e}"),
        })
    }

    pub(super) async fn put_monolithic(
        &self,
        session: &Url,
        digest: &Digest,
        size: u64,
        body: VerifyingStream,
    ) -> Result<Response> {
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let loc = self.loc(&digest.to_string());
        // Credentials only for this registry's own origin: an upload Location elsewhere (a
        // storage service) authorises itself, in its URL.
        let auth = if url.origin() == self.client.inner.base.origin() {
            self.client.authorization(&self.push(), false).await?
        } else {
            None
        };
        let progress = watchdog::Progress::new(size);
        let body = watchdog::Recorded::new(body, progress.clone());
        let mut req = self
            .client
            .inner
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size.to_string())
            .body(reqwest::Body::wrap_stream(body));
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let mut limits = self.transfer_limits(&Operation::FinishUpload, &loc);
        // A registry may take a while to commit a large blob (a move on object storage).
        limits.answer += Duration::from_secs_f64(30.0 * size as f64 / (1u64 << 30) as f64);
        let send = async {
            req.send()
                .await
                .map_err(|e| self.client.connect_error(&Operation::FinishUpload, &loc, e))
        };
        let answer = watchdog::watch(send, &progress, &limits).await;
        crate::telemetry::request(
            &Operation::FinishUpload,
            answer.as_ref().ok().map(|r| r.status().as_u16()),
        );
        answer
    }

    pub(super) async fn put_chunked(
        &self,
        session: &Url,
        digest: &Digest,
        chunk_size: usize,
        mut body: VerifyingStream,
    ) -> Result<Response> {
        let loc = self.loc(&digest.to_string());
        let mut session = session.clone();
        let mut offset: u64 = 0;
        let mut buf = BytesMut::with_capacity(chunk_size);
        let mut done = false;
        while !done {
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(e),
                None => done = true,
            }
            if buf.len() >= chunk_size || (done && !buf.is_empty()) {
                let data: Bytes = buf.split().freeze();
                let end = offset + data.len() as u64 - 1;
                let url = session.clone();
                // A chunk's own time bound: the request timeout plus its bytes at 16 KiB/s,
                // so that a slow link still gets a chunk through.
                let within = self.client.inner.config.request_timeout
                    + Duration::from_secs(data.len() as u64 / (16 * 1024));
                let resp = self
                    .client
                    .send_once(
                        &Operation::UploadChunk,
                        &loc,
                        &self.push(),
                        &|c: &reqwest::Client| {
                            c.patch(url.clone())
                                .timeout(within)
                                .header(CONTENT_TYPE, "application/octet-stream")
                                .header("Content-Range", format!("{offset}-{end}"))
                                .header(CONTENT_LENGTH, data.len().to_string())
                                .body(data.clone())
                        },
                    )
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self
                        .client
                        .error_for(resp, &Operation::UploadChunk, &loc)
                        .await);
                }
                session = self.location_of(&resp, &Operation::UploadChunk, &loc)?;
                offset = end + 1;
            }
        }
        let mut url = session;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        self.client
            .send(&Operation::FinishUpload, &loc, &self.push(), |c| {
                c.put(url.clone()).header(CONTENT_LENGTH, "0")
            })
            .await
    }
}

impl HttpStore {
    pub(super) async fn finish_upload(
        &self,
        session: &Url,
        digest: &Digest,
        size: u64,
        data: BlobStream,
        loc: &str,
    ) -> Result<()> {
        let body = if self.client.inner.config.verify_uploads {
            VerifyingStream::new(data, digest.clone(), Some(size))
        } else {
            // The registry checks the digest (and refuses with DIGEST_INVALID).
            VerifyingStream::size_only(data, digest.clone(), size)
        };
        let failure = body.failure();
        let chunk = match self.client.inner.config.upload {
            UploadMode::Chunked(n) => Some(n.max(1)),
            UploadMode::Auto if self.client.inner.chunked.load(Ordering::Relaxed) => {
                Some(DEFAULT_CHUNK)
            }
            _ => None,
        };
        let result = match chunk {
            Some(n) => self.put_chunked(session, digest, n, body).await,
            None => self.put_monolithic(session, digest, size, body).await,
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.cancel_upload(session).await;
                return Err(take_failure(&failure).unwrap_or(e));
            }
        };
        if let Some(e) = take_failure(&failure) {
            self.cancel_upload(session).await;
            return Err(e);
        }
        let status = resp.status();
        if status == StatusCode::CREATED || status.is_success() {
            return Ok(());
        }
        if status == StatusCode::UNAUTHORIZED {
            // The token expired or was revoked during the upload: forget it so that the
            // restarted upload authenticates afresh.
            self.client.on_unauthorized(&self.push(), &resp, true).await;
        }
        self.cancel_upload(session).await;
        if chunk.is_none()
            && refuses_monolithic(status)
            && self.client.inner.config.upload == UploadMode::Auto
        {
            tracing::info!(registry = %self.client.inner.registry, %status, "monolithic upload refused; switching to chunked uploads");
            self.client.inner.chunked.store(true, Ordering::Relaxed);
            return Err(Error::UploadModeRefused {
                registry: self.client.inner.registry.clone(),
                location: loc.to_string(),
                status: status.as_u16(),
            });
        }
        let (error, codes) = self
            .client
            .error_and_codes(resp, &Operation::FinishUpload, loc)
            .await;
        // The registry's own digest check refused the bytes.
        if codes.contains(crate::error::ErrorCode::DigestInvalid) {
            return Err(Error::DigestRejected {
                registry: self.client.inner.registry.clone(),
                digest: digest.clone(),
            });
        }
        Err(error)
    }
}

/// Cancels an upload session when dropped while armed (the upload future was dropped).
pub(super) struct SessionGuard {
    pub(super) store: Option<HttpStore>,
    pub(super) session: Url,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            let session = self.session.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { store.cancel_upload(&session).await });
            }
        }
    }
}

/// The statuses with which a registry refuses a monolithic upload and wants chunks.
pub(super) fn refuses_monolithic(status: StatusCode) -> bool {
    matches!(status.as_u16(), 405 | 413 | 416 | 501)
}

/// True when `e` is a refusal of a monolithic upload after which the client switched to
/// chunked uploads ([`Error::UploadModeRefused`]): the blob can be sent again from a fresh
/// stream.
pub fn is_upload_mode_switch(e: &Error) -> bool {
    matches!(e, Error::UploadModeRefused { .. })
}
