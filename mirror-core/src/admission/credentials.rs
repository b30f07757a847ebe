//! A pod's source credentials: its `imagePullSecrets` and its service account's, read
//! through the Kubernetes API ([`PullSecrets`]), and the [`Sources`] made of them
//! ([`SourceSets`]): one per registry host and credential, so that a pod's secret opens its
//! own images and nobody else's.
//!
//! Only the `auths` of a secret are read (types `kubernetes.io/dockerconfigjson` and
//! `kubernetes.io/dockercfg`, as the kubelet does): a secret's `credHelpers` or `credsStore`
//! would make the webhook run a program a namespace's user named.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::pod::{pull_secret_names, service_account};
use crate::error::{sanitize, MAX_SHOWN_TEXT};
use crate::mirror::Sources;
use crate::retry::RetryConfig;
use crate::store::http::credentials::{Credentials, DockerConfig};

/// Entries a cache keeps at most (then the expired ones go, else all).
const MAX_ENTRIES: usize = 4096;

/// A map whose entries expire.
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let (at, v) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key, (Instant::now(), value));
        }
    }
}

/// A secret's registry credentials (its `auths` only), `None` when it is no pull secret.
pub(crate) fn docker_config(secret: &Secret) -> Option<DockerConfig> {
    let data = secret.data.as_ref()?;
    let (raw, whole_is_auths) = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => (data.get(".dockerconfigjson")?, false),
        Some("kubernetes.io/dockercfg") => (data.get(".dockercfg")?, true),
        _ => return None,
    };
    let value: Value = serde_json::from_slice(&raw.0).ok()?;
    let auths = if whole_is_auths {
        value
    } else {
        value.get("auths")?.clone()
    };
    if !auths.is_object() {
        return None;
    }
    let text = serde_json::to_vec(&json!({ "auths": auths })).ok()?;
    let name = format!(
        "secret {}/{}",
        secret.metadata.namespace.as_deref().unwrap_or(""),
        secret.metadata.name.as_deref().unwrap_or("")
    );
    DockerConfig::parse(Path::new(&name), &text).ok()
}

/// Reads pods' pull secrets through the Kubernetes API, with a short cache.
pub(crate) struct PullSecrets {
    client: Option<kube::Client>,
    accounts: TtlCache<(String, String), Arc<Vec<String>>>,
    secrets: TtlCache<(String, String), Option<Arc<DockerConfig>>>,
}

impl PullSecrets {
    pub fn new(client: Option<kube::Client>, ttl: Duration) -> Self {
        PullSecrets {
            client,
            accounts: TtlCache::new(ttl),
            secrets: TtlCache::new(ttl),
        }
    }

    /// The credentials the pod's pull secrets (its own first, then its service account's)
    /// hold for each of `hosts`: the first secret with an entry for a host wins. Secrets
    /// that cannot be read are passed over (logged): the images of their hosts are then
    /// read with the webhook's own credentials, and only given to the pod when those can
    /// read them.
    pub async fn for_pod(
        &self,
        namespace: &str,
        pod: &Pod,
        hosts: &BTreeSet<String>,
    ) -> HashMap<String, Credentials> {
        let mut found = HashMap::new();
        let Some(client) = &self.client else {
            return found;
        };
        if hosts.is_empty() || namespace.is_empty() {
            return found;
        }
        let mut names = pull_secret_names(pod);
        for name in self
            .account_secrets(client, namespace, &service_account(pod))
            .await
            .iter()
        {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        for name in names {
            let Some(config) = self.secret(client, namespace, &name).await else {
                continue;
            };
            for host in hosts {
                if found.contains_key(host) {
                    continue;
                }
                match config.credentials_for(host) {
                    Ok(c) if !c.is_anonymous() => {
                        found.insert(host.clone(), c);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        namespace,
                        secret = %name,
                        host = %host,
                        error = %e,
                        "a pull secret's entry cannot be read"
                    ),
                }
            }
            if found.len() == hosts.len() {
                break;
            }
        }
        found
    }

    async fn account_secrets(
        &self,
        client: &kube::Client,
        namespace: &str,
        account: &str,
    ) -> Arc<Vec<String>> {
        let key = (namespace.to_string(), account.to_string());
        if let Some(names) = self.accounts.get(&key) {
            return names;
        }
        let api: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), namespace);
        let names = match api.get_opt(account).await {
            Ok(Some(sa)) => sa
                .image_pull_secrets
                .into_iter()
                .flatten()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(
                    namespace,
                    service_account = account,
                    error = %sanitize(&e.to_string(), MAX_SHOWN_TEXT),
                    "cannot read the service account's pull secrets"
                );
                // Not cached: the next admission asks again.
                return Arc::new(Vec::new());
            }
        };
        let names = Arc::new(names);
        self.accounts.put(key, names.clone());
        names
    }

    async fn secret(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<DockerConfig>> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(config) = self.secrets.get(&key) {
            return config;
        }
        let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
        let config = match api.get_opt(name).await {
            Ok(Some(secret)) => {
                let config = docker_config(&secret).map(Arc::new);
                if config.is_none() {
                    tracing::warn!(namespace, secret = name, "not a docker pull secret");
                }
                config
            }
            Ok(None) => {
                tracing::warn!(namespace, secret = name, "the pull secret does not exist");
                None
            }
            Err(e) => {
                tracing::warn!(
                    namespace,
                    secret = name,
                    error = %sanitize(&e.to_string(), MAX_SHOWN_TEXT),
                    "cannot read the pull secret"
                );
                return None;
            }
        };
        self.secrets.put(key, config.clone());
        config
    }
}

/// The name of the webhook's own [`Sources`] in [`SourceSets`].
pub(crate) const BASE: &str = "base";

/// The [`Sources`] images are opened with: the webhook's own (for hosts a pod has no
/// credentials for), else one per host and credential, made when first needed and kept
/// (their clients keep their connections and tokens).
pub(crate) struct SourceSets {
    base: Arc<Sources>,
    retry: Option<RetryConfig>,
    made: Mutex<HashMap<String, (Instant, Arc<Sources>)>>,
}

/// Credential sets kept at most; the least recently used goes first.
const MAX_SOURCE_SETS: usize = 256;

impl SourceSets {
    pub fn new(base: Arc<Sources>, retry: Option<RetryConfig>) -> Self {
        SourceSets {
            base,
            retry,
            made: Mutex::default(),
        }
    }

    /// The name and [`Sources`] to open an image of `host` with, for a pod holding
    /// `credentials` for it (if any). The name is a hash of host and credentials, never
    /// the credentials.
    pub fn for_host(
        &self,
        host: &str,
        credentials: Option<&Credentials>,
    ) -> (String, Arc<Sources>) {
        let Some(credentials) = credentials.filter(|c| !c.is_anonymous()) else {
            return (BASE.to_string(), self.base.clone());
        };
        let name = fingerprint(host, credentials);
        let Ok(mut made) = self.made.lock() else {
            return (BASE.to_string(), self.base.clone());
        };
        if let Some((used, sources)) = made.get_mut(&name) {
            *used = Instant::now();
            return (name, sources.clone());
        }
        if made.len() >= MAX_SOURCE_SETS {
            if let Some(oldest) = made
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
            {
                made.remove(&oldest);
            }
        }
        let mut sources = Sources::new().with_credentials(host, credentials.clone());
        if let Some(r) = &self.retry {
            sources = sources.with_retry(r.clone());
        }
        let sources = Arc::new(sources);
        made.insert(name.clone(), (Instant::now(), sources.clone()));
        (name, sources)
    }
}

/// A hash naming `credentials` for `host` (never shown: a key of maps and flights).
fn fingerprint(host: &str, credentials: &Credentials) -> String {
    let mut h = Sha256::new();
    h.update(host.as_bytes());
    h.update([0]);
    match credentials {
        Credentials::Anonymous => h.update(b"anonymous"),
        Credentials::Basic { username, password } => {
            h.update(b"basic\0");
            h.update(username.as_bytes());
            h.update([0]);
            h.update(password.expose().as_bytes());
        }
        Credentials::IdentityToken(t) => {
            h.update(b"identity\0");
            h.update(t.expose().as_bytes());
        }
        Credentials::Bearer(t) => {
            h.update(b"bearer\0");
            h.update(t.expose().as_bytes());
        }
    }
    format!("pod-{}", hex::encode(&h.finalize()[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(kind: &str, key: &str, text: &str) -> Secret {
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("regcred".into()),
                namespace: Some("team".into()),
                ..Default::default()
            },
            type_: Some(kind.into()),
            data: Some([(key.to_string(), ByteString(text.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn pull_secrets_give_their_auths_and_never_run_helpers() {
        let s = secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            r#"{"auths":{"ghcr.io":{"auth":"dXNlcjpwYXNz"}},
                "credHelpers":{"ghcr.io":"evil"},"credsStore":"evil"}"#,
        );
        let c = docker_config(&s).unwrap();
        assert_eq!(
            c.credentials_for("ghcr.io").unwrap(),
            Credentials::basic("user", "pass")
        );
        // Without the auths-only filter, the helper would be run (and fail) for this host.
        assert_eq!(
            c.credentials_for("quay.io").unwrap(),
            Credentials::Anonymous
        );
        let legacy = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            r#"{"https://index.docker.io/v1/":{"username":"a","password":"b"}}"#,
        );
        assert_eq!(
            docker_config(&legacy)
                .unwrap()
                .credentials_for("docker.io")
                .unwrap(),
            Credentials::basic("a", "b")
        );
        assert!(docker_config(&secret("Opaque", ".dockerconfigjson", "{}")).is_none());
        assert!(docker_config(&secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            "not json"
        ))
        .is_none());
    }

    #[test]
    fn source_sets_are_kept_per_host_and_credential() {
        let sets = SourceSets::new(Arc::new(Sources::new()), None);
        let (base, _) = sets.for_host("ghcr.io", None);
        assert_eq!(base, BASE);
        let (anon, _) = sets.for_host("ghcr.io", Some(&Credentials::Anonymous));
        assert_eq!(anon, BASE);
        let alice = Credentials::basic("alice", "pw1");
        let (a1, s1) = sets.for_host("ghcr.io", Some(&alice));
        let (a2, s2) = sets.for_host("ghcr.io", Some(&alice));
        assert_eq!(a1, a2);
        assert!(Arc::ptr_eq(&s1, &s2), "one client set per credential");
        let (b, _) = sets.for_host("ghcr.io", Some(&Credentials::basic("alice", "pw2")));
        assert_ne!(a1, b);
        let (c, _) = sets.for_host("quay.io", Some(&alice));
        assert_ne!(a1, c, "the same secret for another host is another set");
        assert!(!a1.contains("pw1") && !a1.contains("alice"));
    }

    #[test]
    fn caches_expire() {
        let cache = TtlCache::new(Duration::from_millis(30));
        cache.put("k", 1);
        assert_eq!(cache.get(&"k"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&"k"), None);
    }
}
