//! The ECR control-plane calls of this crate, over the AWS SDK, errors read by
//! [`crate::error`]. Every call names the repository it is about; listings follow
//! `nextToken` to the end. The SDK retries throttled and transient failures itself (standard
//! mode: 3 attempts with exponential backoff and jitter); what still fails is returned.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_ecr::types::{ImageDetail, ImageIdentifier, ImageScanningConfiguration};
use aws_sdk_ecr::types::{ImageTagMutability, Tag};
use mirror_core::kit::provider::calls::{all_pages, Absent};
use mirror_core::kit::provider::cloud::ListedImage;
use mirror_core::kit::provider::retention::RetentionCalls;
use mirror_core::kit::provider::{Kind, Origin, TokenSource};
use mirror_core::Digest;

use crate::credential::{self, AuthToken};
use crate::error::{self, Error, Result};

/// Largest number of image ids ECR takes in one batch call.
pub const BATCH_LIMIT: usize = 100;

/// The ECR API of one registry (account and region).
#[derive(Debug, Clone)]
pub struct EcrApi {
    sdk: aws_sdk_ecr::Client,
    registry_id: Option<String>,
    origin: Origin,
}

/// A request about repository `$name`: `$api`'s `$op` with the repository and registry id.
macro_rules! on_repository {
    ($api:expr, $op:ident, $name:expr) => {
        $api.sdk
            .$op()
            .repository_name($name)
            .set_registry_id($api.registry_id.clone())
    };
}

/// An image named by digest or by tag, for `DescribeImages` and `BatchDeleteImage`.
pub fn image_id(digest: Option<&Digest>, tag: Option<&str>) -> ImageIdentifier {
    let builder = ImageIdentifier::builder().set_image_digest(digest.map(Digest::to_string));
    builder.set_image_tag(tag.map(str::to_string)).build()
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

    /// `CreateRepository`: true when created, false when it existed already.
    pub async fn create_repository(
        &self,
        name: &str,
        mutability: ImageTagMutability,
        scan_on_push: bool,
        tags: &[(String, String)],
    ) -> Result<bool> {
        let scanning = ImageScanningConfiguration::builder().scan_on_push(scan_on_push);
        let tag = |(k, v): &(String, String)| {
            let tag = Tag::builder().key(k).value(v).build();
            tag.map_err(|e| {
                self.origin
                    .config("tags", format!("repository tag {k}: {e}"))
            })
        };
        let tags = tags.iter().map(tag).collect::<Result<Vec<_>>>()?;
        let req = on_repository!(self, create_repository, name).set_tags(Some(tags));
        let req = req.image_scanning_configuration(scanning.build());
        let sent = req.image_tag_mutability(mutability).send().await;
        let created = sent.map_err(|e| self.err("CreateRepository", name, e));
        Ok(created.absent_if(Kind::AlreadyExists)?.is_some())
    }

    /// Every repository name of the registry (`DescribeRepositories`, all pages).
    pub async fn repository_names(&self) -> Result<Vec<String>> {
        all_pages(|token| async move {
            let req = self.sdk.describe_repositories().max_results(1000);
            let req = req.set_registry_id(self.registry_id.clone());
            let sent = req.set_next_token(token).send().await;
            let page = sent.map_err(|e| self.err("DescribeRepositories", "*", e))?;
            let names = page
                .repositories()
                .iter()
                .filter_map(|r| r.repository_name());
            let names = names.map(str::to_string).collect();
            Ok((names, page.next_token().map(str::to_string)))
        })
        .await
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

    /// One page of `DescribeImages`: the whole repository, or one image by digest.
    async fn describe(
        &self,
        name: &str,
        digest: Option<&Digest>,
        token: Option<String>,
    ) -> Result<(Vec<ListedImage>, Option<String>)> {
        let req = on_repository!(self, describe_images, name).set_next_token(token);
        let req = req.set_image_ids(digest.map(|d| vec![image_id(Some(d), None)]));
        // `maxResults` cannot go with `imageIds`.
        let sent = req
            .set_max_results(digest.is_none().then_some(1000))
            .send()
            .await;
        let target = digest.map_or(name.to_string(), |d| format!("{name}@{d}"));
        let page = sent.map_err(|e| self.err("DescribeImages", &target, e))?;
        let details = page.image_details().iter().map(|d| self.listed(name, d));
        Ok((
            details.collect::<Result<_>>()?,
            page.next_token().map(str::to_string),
        ))
    }

    /// Every image of a repository (`DescribeImages`, all pages).
    pub async fn describe_images(&self, name: &str) -> Result<Vec<ListedImage>> {
        all_pages(|token| self.describe(name, None, token)).await
    }

    /// One image by digest (`DescribeImages` with an image id); `None` when it is absent.
    pub async fn describe_image(&self, name: &str, digest: &Digest) -> Result<Option<ListedImage>> {
        let found = self.describe(name, Some(digest), None).await;
        let found = found.absent_if(Kind::NotFound("manifest"))?;
        Ok(found.and_then(|(images, _)| images.into_iter().next()))
    }

    /// `BatchDeleteImage` of up to [`BATCH_LIMIT`] images ([`image_id`]; one named by a tag
    /// loses that tag, and goes when it was its last): the per-image failures as errors
    /// naming `repository@image` (none: every image was deleted).
    pub async fn batch_delete_image(
        &self,
        name: &str,
        images: Vec<ImageIdentifier>,
    ) -> Result<Vec<Error>> {
        let sent = on_repository!(self, batch_delete_image, name)
            .set_image_ids(Some(images))
            .send()
            .await;
        let out = sent.map_err(|e| self.err("BatchDeleteImage", name, e))?;
        let failure = |f: &aws_sdk_ecr::types::ImageFailure| {
            let id = f
                .image_id()
                .and_then(|i| i.image_digest().or(i.image_tag()));
            let target = format!("{name}@{}", id.unwrap_or("?"));
            let code = f.failure_code().map_or("Unknown", |c| c.as_str());
            let reason = f.failure_reason().unwrap_or("");
            error::service(
                &self.origin,
                "BatchDeleteImage",
                &target,
                code,
                reason,
                None,
            )
        };
        Ok(out.failures().iter().map(failure).collect())
    }
}

/// ECR's lifecycle policy as the kit's retention document.
#[async_trait]
impl RetentionCalls for EcrApi {
    /// `GetLifecyclePolicy`.
    async fn read(&self, name: &str) -> Result<Option<String>> {
        let sent = on_repository!(self, get_lifecycle_policy, name)
            .send()
            .await;
        let out = sent.map_err(|e| self.err("GetLifecyclePolicy", name, e));
        let out = out.absent_if(Kind::NotFound("lifecycle policy"))?;
        Ok(out.and_then(|o| o.lifecycle_policy_text().map(str::to_string)))
    }

    /// `PutLifecyclePolicy`.
    async fn write(&self, name: &str, text: &str) -> Result<()> {
        let req = on_repository!(self, put_lifecycle_policy, name).lifecycle_policy_text(text);
        let sent = req.send().await;
        sent.map(|_| ())
            .map_err(|e| self.err("PutLifecyclePolicy", name, e))
    }

    /// `DeleteLifecyclePolicy` (absent is success).
    async fn remove(&self, name: &str) -> Result<()> {
        let sent = on_repository!(self, delete_lifecycle_policy, name)
            .send()
            .await;
        let gone = sent.map_err(|e| self.err("DeleteLifecyclePolicy", name, e));
        gone.absent_if(Kind::NotFound("lifecycle policy"))
            .map(|_| ())
    }
}

/// `GetAuthorizationToken`, decoded; the registry it names is the token's `registry`.
#[async_trait]
impl TokenSource for EcrApi {
    type Token = AuthToken;

    async fn fetch(&self) -> Result<AuthToken> {
        let out = self.sdk.get_authorization_token().send().await;
        let out = out.map_err(|e| self.err("GetAuthorizationToken", "*", e))?;
        let missing = |what: &str| {
            self.origin
                .protocol("GetAuthorizationToken", "*", format!("no {what}"))
        };
        let data = out.authorization_data().first();
        let data = data.ok_or_else(|| missing("authorization data"))?;
        let token = data.authorization_token().ok_or_else(|| missing("token"))?;
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let expires_at = expires_at.ok_or_else(|| missing("expiry"))?;
        let mut token = credential::decode(&self.origin, token, expires_at)?;
        token.registry = data.proxy_endpoint().map(str::to_string);
        Ok(token)
    }
}
