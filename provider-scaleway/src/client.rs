//! The Scaleway Container Registry API v1 calls of this crate, over the kit's [`RestClient`].
//!
//! From Scaleway's API reference: calls are under `<api url>/registry/v1/regions/<region>/`
//! with the secret key in `X-Auth-Token`; `namespaces` have a `status` (`ready`; `deleting`,
//! `error`, `locked`; anything else while being set up); a Scaleway *image* is a distribution
//! repository inside a namespace, and `images/<id>/tags` name digests; `DELETE tags/<id>`
//! needs `force=true` when other tags share the digest; lists are paged by `page` and
//! `page_size` (at most 100) with a `total_count`; `null` fields read as empty.

use mirror_core::kit::provider::{Origin, Paging, RestClient};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::Result;

/// Largest page size the API accepts.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The default API URL.
pub const DEFAULT_API_URL: &str = "https://api.scaleway.com";

/// A namespace, with the fields this crate reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Namespace {
    /// Its UUID.
    pub id: String,
    /// Its name (unique in the region across all customers).
    pub name: String,
    /// The project it belongs to.
    pub project_id: String,
    /// `ready`, `deleting`, `error`, `locked`, or `unknown` while being set up.
    pub status: String,
    /// Details of the status.
    pub status_message: String,
    /// The endpoint docker reaches it at (`rg.<region>.scw.cloud/<name>`).
    pub endpoint: String,
    /// Whether anyone may pull without credentials.
    pub is_public: bool,
}

/// An image (a repository of a namespace) or a tag: what this crate reads of both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Item {
    /// Its UUID.
    pub id: String,
    /// Its name (inside the namespace; the tag).
    pub name: String,
    /// `ready`, `deleting`, `error`, `locked`, `unknown`.
    pub status: String,
    /// An image's tag names.
    pub tags: Vec<String>,
    /// A tag's manifest digest (`sha256:…`).
    pub digest: String,
}

/// The Scaleway registry API of one region and project. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ScalewayApi {
    rest: RestClient,
    region: String,
    project_id: String,
    paging: Paging,
}

impl ScalewayApi {
    /// The API of `region` and `project_id` through `rest` (its base the API URL).
    pub fn new(rest: RestClient, region: &str, project_id: &str, page_size: u32) -> Self {
        let paging = Paging::Numbered {
            page_size: page_size.clamp(1, MAX_PAGE_SIZE),
        };
        let (region, project_id) = (region.to_string(), project_id.to_string());
        ScalewayApi {
            rest,
            region,
            project_id,
            paging,
        }
    }

    /// Who answers, for errors.
    pub fn origin(&self) -> &Origin {
        self.rest.origin()
    }

    /// The REST client.
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// `<api url>/registry/v1/regions/<region>/<segments…>`.
    fn url(&self, segments: &[&str]) -> url::Url {
        let mut all = vec!["registry", "v1", "regions", self.region.as_str()];
        all.extend(segments);
        self.rest.url(&all)
    }

    async fn list<T: DeserializeOwned>(
        &self,
        op: &'static str,
        target: &str,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        let mut url = self.url(path);
        url.query_pairs_mut().extend_pairs(query);
        let key = path.last().copied().unwrap_or_default();
        self.rest.list(op, target, url, key, self.paging).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        op: &'static str,
        target: &str,
        method: Method,
        path: &[&str],
        body: Option<Value>,
    ) -> Result<T> {
        let url = self.url(path);
        self.rest
            .call_as(op, target, method, url, body.as_ref())
            .await
    }

    /// The namespace of the project named `name`, if any.
    pub async fn find_namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let query = [("project_id", self.project_id.as_str()), ("name", name)];
        let all: Vec<Namespace> = self
            .list("ListNamespaces", name, &["namespaces"], &query)
            .await?;
        let ours = |n: &Namespace| n.project_id.is_empty() || n.project_id == self.project_id;
        Ok(all.into_iter().find(|n| n.name == name && ours(n)))
    }

    /// One namespace by id (`name` is for errors).
    pub async fn get_namespace(&self, id: &str, name: &str) -> Result<Namespace> {
        self.call("GetNamespace", name, Method::GET, &["namespaces", id], None)
            .await
    }

    /// Creates a namespace in the project.
    pub async fn create_namespace(
        &self,
        name: &str,
        description: &str,
        public: bool,
    ) -> Result<Namespace> {
        let body = json!({"name": name, "description": description, "project_id": self.project_id, "is_public": public});
        let path = ["namespaces"];
        self.call("CreateNamespace", name, Method::POST, &path, Some(body))
            .await
    }

    /// Sets whether a namespace is public.
    pub async fn update_namespace(&self, id: &str, name: &str, public: bool) -> Result<Namespace> {
        let (path, body) = (["namespaces", id], Some(json!({ "is_public": public })));
        self.call("UpdateNamespace", name, Method::PATCH, &path, body)
            .await
    }

    /// The images of a namespace (`name` is for errors).
    pub async fn list_images(&self, namespace_id: &str, name: &str) -> Result<Vec<Item>> {
        let query = [("namespace_id", namespace_id), ("order_by", "name_asc")];
        self.list("ListImages", name, &["images"], &query).await
    }

    /// The image `image` of a namespace, if any; `repository` is for errors.
    pub async fn find_image(
        &self,
        namespace_id: &str,
        image: &str,
        repository: &str,
    ) -> Result<Option<Item>> {
        let query = [("namespace_id", namespace_id), ("name", image)];
        let all = self.list::<Item>("ListImages", repository, &["images"], &query);
        Ok(all.await?.into_iter().find(|i| i.name == image))
    }

    /// Deletes an image and all its tags.
    pub async fn delete_image(&self, id: &str, repository: &str) -> Result<()> {
        let path = ["images", id];
        let done = self.call::<Value>("DeleteImage", repository, Method::DELETE, &path, None);
        done.await.map(drop)
    }

    /// The tags of an image.
    pub async fn list_tags(&self, image_id: &str, repository: &str) -> Result<Vec<Item>> {
        let path = ["images", image_id, "tags"];
        self.list("ListTags", repository, &path, &[("order_by", "name_asc")])
            .await
    }

    /// Deletes a tag; `force` deletes it even when other tags share its digest.
    pub async fn delete_tag(&self, id: &str, target: &str, force: bool) -> Result<()> {
        let mut url = self.url(&["tags", id]);
        if force {
            url.query_pairs_mut().append_pair("force", "true");
        }
        self.rest
            .call("DeleteTag", target, Method::DELETE, url, None)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_core::kit::provider::HeaderAuth;
    use std::sync::Arc;

    fn api(base: &str) -> ScalewayApi {
        let rest = RestClient::new(
            base,
            "api_url",
            Origin::new("scaleway", "h"),
            Arc::new(HeaderAuth::new("X-Auth-Token", "s3cret".into())),
            crate::error::DIALECT,
            "test",
        )
        .unwrap();
        ScalewayApi::new(rest, "fr-par", "p", 100)
    }

    #[test]
    fn urls_are_built_from_segments() {
        let a = api("https://api.scaleway.com");
        assert_eq!(
            a.url(&["namespaces", "id/with?odd"]).as_str(),
            "https://api.scaleway.com/registry/v1/regions/fr-par/namespaces/id%2Fwith%3Fodd"
        );
        let a = api("http://127.0.0.1:9/base/");
        assert_eq!(
            a.url(&["images"]).as_str(),
            "http://127.0.0.1:9/base/registry/v1/regions/fr-par/images"
        );
        assert!(RestClient::new(
            "ftp://x",
            "api_url",
            Origin::new("scaleway", "l"),
            Arc::new(HeaderAuth::new("X-Auth-Token", "s".into())),
            crate::error::DIALECT,
            "test",
        )
        .is_err());
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn nulls_read_as_empty() {
        let nulls: Namespace = api("https://api.scaleway.com")
            .rest()
            .read(
                "GetNamespace",
                "n",
                serde_json::from_str(
                    r#"{"id":"1","name":"n","description":null,"status":null,"is_public":null,"image_count":null}"#,
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(nulls.status, "");
        assert!(!nulls.is_public);
    }
}
