//! The data proxy's rules (see [`crate::testing`]): Artifact Registry's token exchange,
//! refusals, and what a stored manifest records.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::http::Method;
use axum::response::Response;
use mirror_core::testing::control_plane::StoredManifest;
use mirror_core::testing::control_plane::{json, Decision, ProxyRequest, ProxyRules};

use super::rest::Fake;
use super::PROJECT;

const USER: &str = "oauth2accesstoken";

#[async_trait]
impl ProxyRules for Fake {
    async fn decide(&self, request: &ProxyRequest) -> Decision {
        let access = request.basic().filter(|(u, _)| u == USER).map(|(_, p)| p);
        if request.path == "/v2/token" {
            let max = Duration::from_secs(300);
            let answer = self
                .registry_tokens
                .exchange(access.as_deref(), &self.oauth, max);
            return Decision::Answer(answer);
        }
        let authorized = match request.bearer() {
            Some(token) => self.registry_tokens.valid(token),
            None => access.is_some_and(|p| self.oauth.valid(&p)),
        };
        if !authorized {
            self.st().data_unauthorized += 1;
            let base = self.urls.get().map_or("", |u| u.1.as_str());
            let host = base.trim_start_matches("http://");
            let realm = format!(r#"Bearer realm="{base}/v2/token",service="{host}""#);
            return Decision::challenge(&realm, "UNAUTHORIZED", "authentication required");
        }
        if request.path == "/v2/" || request.path == "/v2" {
            return Decision::Answer(json(200, &serde_json::json!({})));
        }
        if request.method == Method::PATCH {
            self.st().data_patches += 1;
            let message = "chunked uploads are not supported; upload the blob with one PUT";
            return Decision::refuse(405, "UNSUPPORTED", message);
        }
        let Some((name, kind, reference)) = &request.target else {
            return Decision::refuse(404, "NAME_UNKNOWN", "no such path");
        };
        let under = name.strip_prefix(&format!("{PROJECT}/"));
        let Some((repo, _)) = under.and_then(|r| r.split_once('/')) else {
            let message = format!("permission denied on {name}");
            return Decision::refuse(403, "DENIED", &message);
        };
        let absent = self.st().repos.get(repo).is_none_or(|r| !r.1);
        if request.is_write() && absent {
            let message = format!("Repository \"{repo}\" not found");
            return Decision::refuse(404, "NAME_UNKNOWN", &message);
        }
        // A deleted tag (`tags.delete`) is gone for readers until it is pushed again.
        let reading = request.method == Method::GET || request.method == Method::HEAD;
        let tag = (*kind == "manifests" && !reference.contains(':')).then_some(reference);
        let removed = |t: &String| self.st().removed_tags.contains(&(name.clone(), t.clone()));
        if reading && tag.is_some_and(removed) {
            return Decision::refuse(
                404,
                "MANIFEST_UNKNOWN",
                &format!("tag {reference} not found"),
            );
        }
        Decision::Forward
    }

    async fn stored(&self, m: StoredManifest) -> Option<Response> {
        let under = m.repository.strip_prefix(&format!("{PROJECT}/"))?;
        let (repo, package) = under.split_once('/')?;
        let key = (repo.to_string(), package.to_string());
        let mut st = self.st();
        st.removed_tags
            .remove(&(m.repository.clone(), m.reference.clone()));
        let versions = st.versions.entry(key).or_default();
        versions
            .entry(m.digest)
            .or_insert((SystemTime::now(), m.media_type));
        None
    }
}
