//! The data proxy's rules (see [`crate::testing`]): Artifact Registry's token exchange,
//! refusals, and what a stored manifest records.

use std::time::Duration;

use async_trait::async_trait;
use axum::http::Method;
use axum::response::Response;
use mirror_core::testing::control_plane::{access_token_auth, Decision, ProxyRequest};
use mirror_core::testing::control_plane::{ProxyRules, StoredManifest};

use super::rest::Fake;
use super::PROJECT;

#[async_trait]
impl ProxyRules for Fake {
    async fn decide(&self, request: &ProxyRequest) -> Decision {
        let tokens = (&self.oauth, &self.registry_tokens, Duration::from_secs(300));
        let base = self.urls.get().map_or("", |u| u.1.as_str());
        let refused = || self.st().data_unauthorized += 1;
        let user = crate::credential::USERNAME;
        if let Some(answer) = access_token_auth(request, user, tokens, base, refused) {
            return answer;
        }
        if request.method == Method::PATCH {
            self.st().data_patches += 1;
            let message = "chunked uploads are not supported; upload the blob with one PUT";
            return Decision::refuse(405, "UNSUPPORTED", message);
        }
        let Some((name, _, _)) = &request.target else {
            return Decision::refuse(404, "NAME_UNKNOWN", "no such path");
        };
        let under = name.strip_prefix(&format!("{PROJECT}/"));
        let Some((repo, _)) = under.and_then(|r| r.split_once('/')) else {
            return Decision::refuse(403, "DENIED", &format!("permission denied on {name}"));
        };
        if request.is_write() && self.st().repos.get(repo).is_none_or(|r| !r.1) {
            let message = format!("Repository \"{repo}\" not found");
            return Decision::refuse(404, "NAME_UNKNOWN", &message);
        }
        self.hidden.refuse(request).unwrap_or(Decision::Forward)
    }

    async fn stored(&self, m: StoredManifest) -> Option<Response> {
        self.hidden.pushed(&m.repository, &m.reference);
        self.pushed.seen(&m.repository, &m.digest);
        None
    }
}
