//! The ECR control-plane calls this crate makes, over the AWS SDK, with errors converted in
//! [`crate::error`].
//!
//! Every call names the repository it is about so errors do; list calls follow `nextToken`
//! to the end. The SDK retries throttled and transient failures itself (standard retry mode:
//! 3 attempts with exponential backoff and jitter); what is still failing after that is
//! returned.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability, Tag};
use mirror_core::media::ACCEPTED_MANIFEST_TYPES;

use mirror_core::provider::{Origin, TokenSource};

use crate::credential::AuthToken;
use crate::error::{self, kind, Error, Kind, Result};

/// Largest number of image ids ECR takes in one batch call.
pub const BATCH_LIMIT: usize = 100;

/// One image as `DescribeImages` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetail {
    /// The manifest digest.
    pub digest: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was pushed.
    pub pushed_at: Option<SystemTime>,
    /// ECR's size (compressed layers).
    pub size: Option<u64>,
    /// The manifest media type, when ECR reports it.
    pub media_type: Option<String>,
}

/// One manifest as `BatchGetImage` returns it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest digest.
    pub digest: String,
    /// The manifest bytes.
    pub bytes: String,
    /// Its media type.
    pub media_type: Option<String>,
}

/// A per-image failure of a batch call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The image (digest or tag).
    pub image: String,
    /// ECR's failure code.
    pub code: String,
    /// ECR's reason.
    pub reason: String,
}

/// The ECR API of one registry (account and region).
#[derive(Debug, Clone)]
pub struct EcrApi {
    sdk: aws_sdk_ecr::Client,
    registry_id: Option<String>,
    /// Who answers, for errors (`aws:<registry host>`).
    origin: Origin,
}

impl EcrApi {
    /// Wraps an SDK client; `registry_id` (the account) is passed to every call that takes it.
    pub fn new(sdk: aws_sdk_ecr::Client, registry_id: Option<String>, origin: Origin) -> Self {
        EcrApi {
            sdk,
            registry_id,
            origin,
        }
    }

    /// The SDK client.
    pub fn sdk(&self) -> &aws_sdk_ecr::Client {
        &self.sdk
    }

    /// `aws:<registry host>`.
    pub fn label(&self) -> &str {
        &self.origin.registry
    }

    /// Who answers, for errors.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub(crate) fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    fn err<E>(&self, op: &'static str, target: &str, e: aws_sdk_ecr::error::SdkError<E>) -> Error
    where
        E: aws_sdk_ecr::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        error::from_sdk(&self.origin, op, target, e)
    }

    fn protocol(&self, op: &'static str, target: &str, reason: impl Into<String>) -> Error {
        self.origin.protocol(op, target, reason)
    }

    /// `CreateRepository`: true when created, false when it existed already.
    pub async fn create_repository(
        &self,
        name: &str,
        mutability: ImageTagMutability,
        scan_on_push: bool,
        tags: &[(String, String)],
    ) -> Result<bool> {
        let mut req = self
            .sdk
            .create_repository()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone())
            .image_tag_mutability(mutability)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(scan_on_push)
                    .build(),
            );
        for (k, v) in tags {
            let tag = Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| self.origin.config(format!("repository tag {k}: {e}")))?;
            req = req.tags(tag);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = self.err("CreateRepository", name, e);
                if kind(&e) == Kind::RepositoryExists {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `GetLifecyclePolicy`: the policy text, `None` when the repository has none.
    pub async fn get_lifecycle_policy(&self, name: &str) -> Result<Option<String>> {
        match self
            .sdk
            .get_lifecycle_policy()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone())
            .send()
            .await
        {
            Ok(out) => Ok(out.lifecycle_policy_text().map(str::to_string)),
            Err(e) => {
                let e = self.err("GetLifecyclePolicy", name, e);
                if kind(&e) == Kind::LifecyclePolicyNotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `PutLifecyclePolicy`.
    pub async fn put_lifecycle_policy(&self, name: &str, text: &str) -> Result<()> {
        self.sdk
            .put_lifecycle_policy()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone())
            .lifecycle_policy_text(text)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("PutLifecyclePolicy", name, e))
    }

    /// `DeleteLifecyclePolicy` (absent is success).
    pub async fn delete_lifecycle_policy(&self, name: &str) -> Result<()> {
        match self
            .sdk
            .delete_lifecycle_policy()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.err("DeleteLifecyclePolicy", name, e);
                if kind(&e) == Kind::LifecyclePolicyNotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Every repository name of the registry (`DescribeRepositories`, all pages).
    pub async fn repository_names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sdk
                .describe_repositories()
                .set_registry_id(self.registry_id.clone())
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.err("DescribeRepositories", "*", e))?;
            out.extend(
                page.repositories()
                    .iter()
                    .filter_map(|r| r.repository_name().map(str::to_string)),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Every image of a repository (`DescribeImages`, all pages).
    pub async fn describe_images(&self, name: &str) -> Result<Vec<ImageDetail>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sdk
                .describe_images()
                .repository_name(name)
                .set_registry_id(self.registry_id.clone())
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.err("DescribeImages", name, e))?;
            for d in page.image_details() {
                let Some(digest) = d.image_digest() else {
                    return Err(self.protocol("DescribeImages", name, "an image without a digest"));
                };
                out.push(ImageDetail {
                    digest: digest.to_string(),
                    tags: d.image_tags().to_vec(),
                    pushed_at: d
                        .image_pushed_at()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                    size: d.image_size_in_bytes().and_then(|s| u64::try_from(s).ok()),
                    media_type: d.image_manifest_media_type().map(str::to_string),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// One image by digest (`DescribeImages` with an image id); `None` when it is absent.
    pub async fn describe_image(&self, name: &str, digest: &str) -> Result<Option<ImageDetail>> {
        let target = format!("{name}@{digest}");
        match self
            .sdk
            .describe_images()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone())
            .image_ids(ImageIdentifier::builder().image_digest(digest).build())
            .send()
            .await
        {
            Ok(out) => Ok(out.image_details().first().map(|d| ImageDetail {
                digest: d.image_digest().unwrap_or(digest).to_string(),
                tags: d.image_tags().to_vec(),
                pushed_at: d
                    .image_pushed_at()
                    .and_then(|t| SystemTime::try_from(*t).ok()),
                size: d.image_size_in_bytes().and_then(|s| u64::try_from(s).ok()),
                media_type: d.image_manifest_media_type().map(str::to_string),
            })),
            Err(e) => {
                let e = self.err("DescribeImages", &target, e);
                if kind(&e) == Kind::ImageNotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `BatchGetImage` of up to [`BATCH_LIMIT`] digests: the manifests found, and the
    /// per-image failures.
    pub async fn batch_get_image(
        &self,
        name: &str,
        digests: &[String],
    ) -> Result<(Vec<Manifest>, Vec<Failure>)> {
        let mut req = self
            .sdk
            .batch_get_image()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone());
        for d in digests {
            req = req.image_ids(ImageIdentifier::builder().image_digest(d).build());
        }
        for t in ACCEPTED_MANIFEST_TYPES {
            req = req.accepted_media_types(*t);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.err("BatchGetImage", name, e))?;
        let mut manifests = Vec::new();
        for img in out.images() {
            let digest = img
                .image_id()
                .and_then(|i| i.image_digest())
                .ok_or_else(|| self.protocol("BatchGetImage", name, "an image without a digest"))?;
            let bytes = img.image_manifest().ok_or_else(|| {
                self.protocol("BatchGetImage", name, format!("no manifest for {digest}"))
            })?;
            manifests.push(Manifest {
                digest: digest.to_string(),
                bytes: bytes.to_string(),
                media_type: img.image_manifest_media_type().map(str::to_string),
            });
        }
        Ok((manifests, failures(out.failures())))
    }

    /// `BatchDeleteImage` of up to [`BATCH_LIMIT`] digests: the per-image failures (an empty
    /// list means every image was deleted).
    pub async fn batch_delete_image(&self, name: &str, digests: &[String]) -> Result<Vec<Failure>> {
        let mut req = self
            .sdk
            .batch_delete_image()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone());
        for d in digests {
            req = req.image_ids(ImageIdentifier::builder().image_digest(d).build());
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.err("BatchDeleteImage", name, e))?;
        Ok(failures(out.failures()))
    }

    /// `BatchDeleteImage` of one tag, named by the tag alone (ECR removes the tag; an image
    /// left without tags is deleted with it): the per-image failures.
    pub async fn batch_delete_tag(&self, name: &str, tag: &str) -> Result<Vec<Failure>> {
        let out = self
            .sdk
            .batch_delete_image()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone())
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await
            .map_err(|e| self.err("BatchDeleteImage", name, e))?;
        Ok(failures(out.failures()))
    }

    /// `GetAuthorizationToken`, decoded.
    pub async fn authorization_token(&self) -> Result<AuthToken> {
        let out = self
            .sdk
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| self.err("GetAuthorizationToken", "*", e))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| self.protocol("GetAuthorizationToken", "*", "no authorization data"))?;
        let token = data
            .authorization_token()
            .ok_or_else(|| self.protocol("GetAuthorizationToken", "*", "no token"))?;
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .ok_or_else(|| self.protocol("GetAuthorizationToken", "*", "no expiry"))?;
        AuthToken::decode(
            &self.origin,
            token,
            expires_at,
            data.proxy_endpoint().map(str::to_string),
        )
    }
}

fn failures(list: &[aws_sdk_ecr::types::ImageFailure]) -> Vec<Failure> {
    list.iter()
        .map(|f| Failure {
            image: f
                .image_id()
                .and_then(|i| i.image_digest().or(i.image_tag()))
                .unwrap_or("?")
                .to_string(),
            code: f
                .failure_code()
                .map(|c| c.as_str().to_string())
                .unwrap_or_else(|| "Unknown".into()),
            reason: f.failure_reason().unwrap_or("").to_string(),
        })
        .collect()
}

#[async_trait]
impl TokenSource for EcrApi {
    type Token = AuthToken;

    async fn fetch(&self) -> Result<AuthToken> {
        self.authorization_token().await
    }
}
