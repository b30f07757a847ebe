//! The ECR control-plane calls of this crate, over the AWS SDK, errors read by
//! [`crate::error`]. Every call names the repository it is about; listings follow
//! `nextToken` to the end. The SDK retries throttled and transient failures itself (standard
//! mode: 3 attempts with exponential backoff and jitter); what still fails is returned.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_ecr::types::{
    ImageDetail, ImageIdentifier, ImageScanningConfiguration, ImageTagMutability, Tag,
};
use mirror_core::kit::provider::cloud::ListedImage;
use mirror_core::kit::provider::{Kind, Origin, TokenSource};
use mirror_core::Digest;

use crate::credential::AuthToken;
use crate::error::{self, Error, Result};

/// Largest number of image ids ECR takes in one batch call.
pub const BATCH_LIMIT: usize = 100;

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
    origin: Origin,
}

fn digest_id(d: &str) -> ImageIdentifier {
    ImageIdentifier::builder().image_digest(d).build()
}

impl EcrApi {
    /// Wraps an SDK client; `registry_id` (the account) is passed to every call that takes it;
    /// errors name `origin` (`aws:<registry host>`).
    pub fn new(sdk: aws_sdk_ecr::Client, registry_id: Option<String>, origin: Origin) -> Self {
        EcrApi {
            sdk,
            registry_id,
            origin,
        }
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

    /// A per-image failure of `operation` in `repository` as an error.
    pub fn failure(&self, repository: &str, operation: &'static str, f: &Failure) -> Error {
        let target = format!("{repository}@{}", f.image);
        error::image_failure(&self.origin, operation, target, &f.code, &f.reason)
    }

    /// `CreateRepository`: true when created, false when it existed already.
    pub async fn create_repository(
        &self,
        name: &str,
        mutability: ImageTagMutability,
        scan_on_push: bool,
        tags: &[(String, String)],
    ) -> Result<bool> {
        let scanning = ImageScanningConfiguration::builder()
            .scan_on_push(scan_on_push)
            .build();
        let mut req = self
            .sdk
            .create_repository()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone());
        req = req
            .image_tag_mutability(mutability)
            .image_scanning_configuration(scanning);
        for (k, v) in tags {
            let tag = Tag::builder().key(k).value(v).build();
            req = req.tags(tag.map_err(|e| {
                self.origin
                    .config("tags", format!("repository tag {k}: {e}"))
            })?);
        }
        match req
            .send()
            .await
            .map_err(|e| self.err("CreateRepository", name, e))
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == Kind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GetLifecyclePolicy`: the policy text, `None` when the repository has none.
    pub async fn get_lifecycle_policy(&self, name: &str) -> Result<Option<String>> {
        let req = self
            .sdk
            .get_lifecycle_policy()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone());
        match req
            .send()
            .await
            .map_err(|e| self.err("GetLifecyclePolicy", name, e))
        {
            Ok(out) => Ok(out.lifecycle_policy_text().map(str::to_string)),
            Err(e) if e.kind() == Kind::NotFound("lifecycle policy") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PutLifecyclePolicy`.
    pub async fn put_lifecycle_policy(&self, name: &str, text: &str) -> Result<()> {
        let req = self
            .sdk
            .put_lifecycle_policy()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone());
        let sent = req.lifecycle_policy_text(text).send().await;
        sent.map(|_| ())
            .map_err(|e| self.err("PutLifecyclePolicy", name, e))
    }

    /// `DeleteLifecyclePolicy` (absent is success).
    pub async fn delete_lifecycle_policy(&self, name: &str) -> Result<()> {
        let req = self
            .sdk
            .delete_lifecycle_policy()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone());
        match req
            .send()
            .await
            .map_err(|e| self.err("DeleteLifecyclePolicy", name, e))
        {
            Err(e) if e.kind() != Kind::NotFound("lifecycle policy") => Err(e),
            _ => Ok(()),
        }
    }

    /// Every repository name of the registry (`DescribeRepositories`, all pages).
    pub async fn repository_names(&self) -> Result<Vec<String>> {
        let (mut out, mut token) = (Vec::new(), None);
        loop {
            let req = self
                .sdk
                .describe_repositories()
                .set_registry_id(self.registry_id.clone());
            let page = req
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await;
            let page = page.map_err(|e| self.err("DescribeRepositories", "*", e))?;
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

    fn listed(&self, name: &str, d: &ImageDetail) -> Result<ListedImage> {
        let digest = d.image_digest().and_then(|d| Digest::parse(d).ok());
        let digest = digest.ok_or_else(|| {
            self.origin
                .protocol("DescribeImages", name, "an image without a valid digest")
        })?;
        let mut l = ListedImage::new(digest);
        l.tags = d.image_tags().to_vec();
        l.pushed_at = d
            .image_pushed_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        l.size = d.image_size_in_bytes().and_then(|s| u64::try_from(s).ok());
        l.media_type = d.image_manifest_media_type().map(str::to_string);
        Ok(l)
    }

    /// Every image of a repository (`DescribeImages`, all pages).
    pub async fn describe_images(&self, name: &str) -> Result<Vec<ListedImage>> {
        let (mut out, mut token) = (Vec::new(), None);
        loop {
            let req = self
                .sdk
                .describe_images()
                .repository_name(name)
                .set_registry_id(self.registry_id.clone());
            let page = req
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await;
            let page = page.map_err(|e| self.err("DescribeImages", name, e))?;
            for d in page.image_details() {
                out.push(self.listed(name, d)?);
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// One image by digest (`DescribeImages` with an image id); `None` when it is absent.
    pub async fn describe_image(&self, name: &str, digest: &Digest) -> Result<Option<ListedImage>> {
        let req = self
            .sdk
            .describe_images()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone());
        let sent = req.image_ids(digest_id(&digest.to_string())).send().await;
        match sent.map_err(|e| self.err("DescribeImages", &format!("{name}@{digest}"), e)) {
            Ok(out) => out
                .image_details()
                .first()
                .map(|d| self.listed(name, d))
                .transpose(),
            Err(e) if e.kind() == Kind::NotFound("manifest") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `BatchDeleteImage` of up to [`BATCH_LIMIT`] digests: the per-image failures (none:
    /// every image was deleted).
    pub async fn batch_delete_image(&self, name: &str, digests: &[Digest]) -> Result<Vec<Failure>> {
        let ids = digests.iter().map(|d| digest_id(&d.to_string())).collect();
        self.batch_delete(name, ids).await
    }

    /// `BatchDeleteImage` of one tag, named by the tag alone (ECR removes the tag; an image
    /// left without tags is deleted with it): the per-image failures.
    pub async fn batch_delete_tag(&self, name: &str, tag: &str) -> Result<Vec<Failure>> {
        self.batch_delete(
            name,
            vec![ImageIdentifier::builder().image_tag(tag).build()],
        )
        .await
    }

    async fn batch_delete(&self, name: &str, ids: Vec<ImageIdentifier>) -> Result<Vec<Failure>> {
        let req = self
            .sdk
            .batch_delete_image()
            .repository_name(name)
            .set_registry_id(self.registry_id.clone());
        let out = req.set_image_ids(Some(ids)).send().await;
        let out = out.map_err(|e| self.err("BatchDeleteImage", name, e))?;
        let failure = |f: &aws_sdk_ecr::types::ImageFailure| Failure {
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
        };
        Ok(out.failures().iter().map(failure).collect())
    }

    /// `GetAuthorizationToken`, decoded.
    pub async fn authorization_token(&self) -> Result<AuthToken> {
        let out = self.sdk.get_authorization_token().send().await;
        let out = out.map_err(|e| self.err("GetAuthorizationToken", "*", e))?;
        let missing = |what: &str| {
            self.origin
                .protocol("GetAuthorizationToken", "*", format!("no {what}"))
        };
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| missing("authorization data"))?;
        let token = data.authorization_token().ok_or_else(|| missing("token"))?;
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let proxy = data.proxy_endpoint().map(str::to_string);
        AuthToken::decode(
            &self.origin,
            token,
            expires_at.ok_or_else(|| missing("expiry"))?,
            proxy,
        )
    }
}

#[async_trait]
impl TokenSource for EcrApi {
    type Token = AuthToken;

    async fn fetch(&self) -> Result<AuthToken> {
        self.authorization_token().await
    }
}
