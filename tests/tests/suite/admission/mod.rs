//! The admission webhook end to end: real `AdmissionReview` JSON (built with `kube`'s types,
//! as the API server sends it) posted over real HTTPS to `mirror_cli::webhook::Server`
//! (in process, or the `mirror-webhook` binary), images copied between real distribution
//! registries, and every answer's patch applied with the `json-patch` crate, an
//! implementation independent of the code under test (which only writes patches).
//!
//! - `rewrite`: three containers from two sources, a digest kept, an ephemeral container
//!   added by an update, a slow source within the budget, fifty concurrent admissions, a
//!   pod already on the mirror;
//! - `private`: a source reachable only with the pod's pull secret (basic auth), read from
//!   the in-process Kubernetes API (`tests::kube_api`), and a pod without it;
//! - `refusals`: a failing source, excluded namespaces, dry runs, malformed reviews, each
//!   allowed unchanged, or denied with its message in strict mode;
//! - `binary`: the `mirror-webhook` process: /healthz, /metrics, JSON logs, a certificate
//!   rotated on disk served without a restart.

mod binary;
mod private;
mod refusals;
mod rewrite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::{
    Container, EphemeralContainer, LocalObjectReference, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube::core::{GroupVersionKind, GroupVersionResource, TypeMeta};
use mirror_cli::webhook::tls::ReloadingCert;
use mirror_cli::webhook::Server;
use mirror_core::admission::{AdmissionConfig, AdmissionController};
use mirror_core::kit::retry::RetryConfig;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::{HttpStore, RegistryClient};
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{ClusterStrategy, GenericRegistry, Mirror, Sources};
use serde_json::{json, Value};

/// The cluster id of every test.
const CLUSTER: &str = "prod";

/// A CA and a server certificate it signed for `localhost` and `127.0.0.1`, as PEM files
/// (the key next to it), as cert-manager writes them.
pub struct Certs {
    pub dir: tempfile::TempDir,
    /// The CA a client trusts.
    pub ca_pem: String,
}

impl Certs {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut certs = Certs {
            dir,
            ca_pem: String::new(),
        };
        certs.rotate();
        certs
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// A new CA and a new server certificate, written over the files the way the kubelet
    /// updates a mounted Secret (new files renamed into place).
    pub fn rotate(&mut self) {
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("test CA {}", rand_suffix()),
        );
        let ca = ca_params.self_signed(&ca_key).expect("a CA");
        let key = rcgen::KeyPair::generate().expect("a server key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("a server certificate");
        write_atomically(&self.cert_path(), cert.pem().as_bytes());
        write_atomically(&self.key_path(), key.serialize_pem().as_bytes());
        self.ca_pem = ca.pem();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// An HTTPS client trusting `ca_pem` only (no system roots), a new connection pool.
pub fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .https_only(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTPS client")
}

/// The webhook server in process, on 127.0.0.1, serving HTTPS until dropped.
pub struct Webhook {
    pub url: String,
    pub controller: AdmissionController,
    _certs: Certs,
    pub client: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    pub async fn start(controller: AdmissionController) -> Self {
        let certs = Certs::new();
        let cert = ReloadingCert::load(&certs.cert_path(), &certs.key_path()).expect("cert");
        let server = Server::new(controller.clone(), cert, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let _ = server
                .run(listener, Duration::from_millis(200), std::future::pending())
                .await;
        });
        Webhook {
            url: format!("https://localhost:{port}/mutate?timeout=10s"),
            client: client(&certs.ca_pem),
            controller,
            _certs: certs,
            task,
        }
    }

    /// Posts `body` and returns the answer's `response` object and how long it took.
    pub async fn post(&self, body: Vec<u8>) -> (Value, Duration) {
        let started = Instant::now();
        let answer = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the webhook answers over HTTPS");
        assert_eq!(answer.status(), 200);
        let took = started.elapsed();
        let v: Value = answer.json().await.expect("an AdmissionReview");
        assert_eq!(v["kind"], "AdmissionReview", "{v}");
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{v}");
        (v["response"].clone(), took)
    }

    /// Posts the review of `pod` and returns the response and the pod after its patch.
    pub async fn admit(&self, pod: &Pod) -> (Value, Pod) {
        let (response, _) = self.post(review(pod, Operation::Create, None, false)).await;
        let patched = apply(pod, &response);
        (response, patched)
    }
}

/// The mirror registry's `Mirror` in Cluster mode.
pub fn mirror(reg: &TestRegistry) -> Arc<Mirror> {
    let client = RegistryClient::new(&reg.host(), Credentials::Anonymous).expect("client");
    Arc::new(
        Mirror::builder(Arc::new(GenericRegistry::new(client)), CLUSTER)
            .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(
                30 * 86_400,
            ))))
            .build()
            .expect("a Mirror"),
    )
}

/// Few, quick retries: a failing source fails within the tests' budgets.
pub fn quick() -> RetryConfig {
    RetryConfig {
        max_attempts: 2,
        max_elapsed: Duration::from_secs(5),
        ..RetryConfig::fast()
    }
}

/// The configuration of the tests: sources on 127.0.0.1 allowed, quick retries.
pub fn config() -> AdmissionConfig {
    AdmissionConfig::default()
        .with_own_namespace("mirror-system")
        .with_loopback_sources(true)
        .with_source_retry(quick())
}

/// A controller of `mirror` with `config`.
pub fn controller(mirror: Arc<Mirror>, config: AdmissionConfig) -> AdmissionController {
    AdmissionController::builder(mirror)
        .config(config)
        .sources(Sources::new().with_retry(quick()))
        .build()
        .expect("a controller")
}

/// A registry store (anonymous) of `repository` on `reg`.
pub fn store(reg: &TestRegistry, repository: &str) -> HttpStore {
    RegistryClient::new(&reg.host(), Credentials::Anonymous)
        .expect("client")
        .repository(repository)
        .expect("repository")
}

/// Pushes a fresh image (`seed`, layers of `sizes`) to `reg` as `repository:tag`.
pub async fn push(
    reg: &TestRegistry,
    repository: &str,
    tag: &str,
    seed: u64,
    sizes: &[u64],
) -> TestImage {
    let image = TestImage::builder()
        .seed(seed)
        .layers(sizes.to_vec())
        .build();
    image
        .push(&store(reg, repository), tag)
        .await
        .expect("push the fixture");
    image
}

/// A pod of `namespace` whose containers run `images` (named `c0`, `c1`…) and whose init
/// container runs `init`, as a user writes it (the API server's defaults added).
pub fn pod(namespace: &str, images: &[&str], init: Option<&str>) -> Pod {
    let container = |name: String, image: &str| Container {
        name,
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        termination_message_path: Some("/dev/termination-log".into()),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some("web-5d8f7c9b6-".into()),
            namespace: Some(namespace.into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: images
                .iter()
                .enumerate()
                .map(|(i, image)| container(format!("c{i}"), image))
                .collect(),
            init_containers: init.map(|i| vec![container("init".into(), i)]),
            restart_policy: Some("Always".into()),
            service_account_name: Some("default".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `pod` listing the pull secret `name`.
pub fn with_pull_secret(mut pod: Pod, name: &str) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.image_pull_secrets = Some(vec![LocalObjectReference { name: name.into() }]);
    }
    pod
}

/// `pod` with an ephemeral (debug) container running `image`.
pub fn with_ephemeral(mut pod: Pod, image: &str) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.ephemeral_containers = Some(vec![EphemeralContainer {
            name: "debugger".into(),
            image: Some(image.into()),
            ..Default::default()
        }]);
    }
    pod
}

/// A fresh request uid.
pub fn uid() -> String {
    format!("{:032x}", rand_suffix())
}

/// The `AdmissionReview` the API server sends for `pod` (`old`: an update's old object; the
/// `pods/ephemeralcontainers` subresource when the update adds an ephemeral container).
pub fn review(pod: &Pod, operation: Operation, old: Option<&Pod>, dry_run: bool) -> Vec<u8> {
    review_as(&uid(), pod, operation, old, dry_run)
}

/// [`review`] with a given uid.
pub fn review_as(
    uid: &str,
    pod: &Pod,
    operation: Operation,
    old: Option<&Pod>,
    dry_run: bool,
) -> Vec<u8> {
    let ephemeral = old.is_some_and(|o| {
        o.spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
            .map(Vec::len)
            != pod
                .spec
                .as_ref()
                .and_then(|s| s.ephemeral_containers.as_ref())
                .map(Vec::len)
    });
    let options = match operation {
        Operation::Create => "CreateOptions",
        _ => "UpdateOptions",
    };
    let request = AdmissionRequest {
        types: TypeMeta::default(),
        uid: uid.to_string(),
        kind: GroupVersionKind::gvk("", "v1", "Pod"),
        resource: GroupVersionResource::gvr("", "v1", "pods"),
        sub_resource: ephemeral.then(|| "ephemeralcontainers".to_string()),
        request_kind: Some(GroupVersionKind::gvk("", "v1", "Pod")),
        request_resource: Some(GroupVersionResource::gvr("", "v1", "pods")),
        request_sub_resource: ephemeral.then(|| "ephemeralcontainers".to_string()),
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone(),
        operation,
        user_info: UserInfo {
            username: Some("system:serviceaccount:kube-system:replicaset-controller".into()),
            uid: Some("2f1a3f7c-2a43-4a5b-9d0e-0d3c1f1e2b3a".into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:kube-system".into(),
                "system:authenticated".into(),
            ]),
            extra: None,
        },
        object: Some(pod.clone()),
        old_object: old.cloned(),
        dry_run,
        options: Some(RawExtension(json!({
            "kind": options,
            "apiVersion": "meta.k8s.io/v1",
            "fieldManager": "kube-controller-manager",
        }))),
    };
    let review = AdmissionReview {
        types: TypeMeta {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
        },
        request: Some(request),
        response: None,
    };
    serde_json::to_vec(&review).expect("a review serialises")
}

/// `pod` after the answer's patch, applied by the `json-patch` crate; `pod` itself when the
/// answer has none. Panics on a patch the API server would refuse.
pub fn apply(pod: &Pod, response: &Value) -> Pod {
    let Some(encoded) = response.get("patch").and_then(Value::as_str) else {
        return pod.clone();
    };
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("an RFC 6902 patch");
    let mut doc = serde_json::to_value(pod).expect("a pod serialises");
    json_patch::patch(&mut doc, &patch).expect("the patch applies to the pod");
    serde_json::from_value(doc).expect("the patched object is still a Pod")
}

/// Every image of `pod`: containers, init containers, ephemeral containers, in order.
pub fn images(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().expect("a spec");
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter_map(|c| c.image.clone())
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .filter_map(|c| c.image.clone()),
        )
        .collect()
}

/// The pinned reference the mirror registry `reg` serves `image` under.
pub fn pinned(reg: &TestRegistry, image: &mirror_core::Digest) -> String {
    format!("{}/{CLUSTER}/mirror@{image}", reg.host())
}

/// Asserts an answer allows the pod and changes nothing.
#[track_caller]
pub fn assert_allowed_unpatched(response: &Value) {
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("patch").is_none(), "no patch: {response}");
}

/// Waits until no lookup of `controller` runs (copies that outlived their admission).
pub async fn settle(controller: &AdmissionController) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while controller.lookups_in_progress() > 0 {
        assert!(
            Instant::now() < deadline,
            "lookups still running after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
