//! What emulators of cloud data planes share in front of a real registry: [`HiddenTags`]
//! (tags a control plane deleted alone, which the distribution API cannot do),
//! [`access_token_auth`] (a registry taking a cloud access token as the password of a fixed
//! user and exchanging it for a registry token behind a `Bearer` challenge) and
//! [`PushTimes`] (upload times a control plane lists).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::http::Method;

use super::*;

/// Tags a control plane deleted without their manifest: hidden from readers and listings
/// until they are pushed again.
#[derive(Debug, Default)]
pub struct HiddenTags(Mutex<BTreeSet<(String, String)>>);

impl HiddenTags {
    /// Hides `tag` of `repository`.
    pub fn hide(&self, repository: &str, tag: &str) {
        lock(&self.0).insert((repository.to_string(), tag.to_string()));
    }

    /// `reference` of `repository` was pushed: a tag of that name is visible again.
    pub fn pushed(&self, repository: &str, reference: &str) {
        lock(&self.0).remove(&(repository.to_string(), reference.to_string()));
    }

    /// Whether `tag` of `repository` is hidden.
    pub fn hidden(&self, repository: &str, tag: &str) -> bool {
        lock(&self.0).contains(&(repository.to_string(), tag.to_string()))
    }

    /// `tags` of `repository` without the hidden ones.
    pub fn visible(&self, repository: &str, mut tags: Vec<String>) -> Vec<String> {
        tags.retain(|t| !self.hidden(repository, t));
        tags
    }

    /// The refusal of a read of a hidden tag through a [`DataProxy`], if `request` is one.
    pub fn refuse(&self, request: &ProxyRequest) -> Option<Decision> {
        let reading = request.method == Method::GET || request.method == Method::HEAD;
        let (name, kind, reference) = request.target.as_ref()?;
        let tag = *kind == "manifests" && !reference.contains(':');
        let message = format!("tag {reference} not found");
        (reading && tag && self.hidden(name, reference))
            .then(|| Decision::refuse(404, "MANIFEST_UNKNOWN", &message))
    }
}

/// A registry's authentication by cloud access tokens (those `access` issued) sent as the
/// password of `user`: `/v2/token` exchanges one for a registry token (issued by
/// `registry`, living at most `max`), and a request with neither a valid registry token nor
/// a valid access token gets a `Bearer` challenge whose realm is `<base>/v2/token` (`base`
/// the proxy's URL). `Some` is the answer to give now (`/v2/` answers 200 once authorized);
/// `refused` is called for each challenge.
pub fn access_token_auth(
    request: &ProxyRequest,
    user: &str,
    (access, registry, max): (&OAuthTokens, &OAuthTokens, Duration),
    base: &str,
    refused: impl FnOnce(),
) -> Option<Decision> {
    let password = request.basic().filter(|(u, _)| u == user).map(|(_, p)| p);
    if request.path == "/v2/token" {
        return Some(Decision::Answer(registry.exchange(
            password.as_deref(),
            access,
            max,
        )));
    }
    let authorized = match request.bearer() {
        Some(token) => registry.valid(token),
        None => password.is_some_and(|p| access.valid(&p)),
    };
    if !authorized {
        refused();
        let host = base.trim_start_matches("http://");
        let realm = format!(r#"Bearer realm="{base}/v2/token",service="{host}""#);
        return Some(Decision::challenge(
            &realm,
            "UNAUTHORIZED",
            "authentication required",
        ));
    }
    if request.path == "/v2/" || request.path == "/v2" {
        return Some(Decision::Answer(json(200, &serde_json::json!({}))));
    }
    None
}

/// When the manifests of each repository were pushed, as control planes that list images
/// with an upload time record it: the time a fake first saw one (stored through its data
/// proxy, or found when listing), settable to age images.
#[derive(Debug, Default)]
pub struct PushTimes(Mutex<BTreeMap<String, BTreeMap<String, SystemTime>>>);

impl PushTimes {
    /// When `digest` of `repository` was pushed; now, recorded, if it was not known.
    pub fn seen(&self, repository: &str, digest: &str) -> SystemTime {
        let mut all = lock(&self.0);
        let times = all.entry(repository.to_string()).or_default();
        *times
            .entry(digest.to_string())
            .or_insert_with(SystemTime::now)
    }

    /// Records that `digest` of `repository` was pushed at `at`.
    pub fn set(&self, repository: &str, digest: &str, at: SystemTime) {
        let mut all = lock(&self.0);
        let times = all.entry(repository.to_string()).or_default();
        times.insert(digest.to_string(), at);
    }

    /// Forgets `digests` of `repository` (deleted).
    pub fn forget(&self, repository: &str, digests: &[String]) {
        if let Some(times) = lock(&self.0).get_mut(repository) {
            times.retain(|d, _| !digests.contains(d));
        }
    }

    /// The digests of `repository` seen so far.
    pub fn known(&self, repository: &str) -> Vec<String> {
        let all = lock(&self.0);
        all.get(repository)
            .map_or_else(Vec::new, |t| t.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_tags_and_push_times() {
        let hidden = HiddenTags::default();
        hidden.hide("r", "v1");
        let tags = vec!["v1".to_string(), "v2".to_string()];
        assert_eq!(hidden.visible("r", tags.clone()), vec!["v2".to_string()]);
        assert_eq!(hidden.visible("other", tags.clone()), tags);
        hidden.pushed("r", "v1");
        assert!(!hidden.hidden("r", "v1"));

        let times = PushTimes::default();
        let first = times.seen("r", "sha256:a");
        assert_eq!(times.seen("r", "sha256:a"), first);
        let old = SystemTime::UNIX_EPOCH;
        times.set("r", "sha256:a", old);
        assert_eq!(times.seen("r", "sha256:a"), old);
        assert_eq!(times.known("r"), vec!["sha256:a".to_string()]);
        times.forget("r", &["sha256:a".to_string()]);
        assert!(times.known("r").is_empty());
    }
}
