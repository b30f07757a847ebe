//! A private source: readable only with the pull secret of the pods that name it, which the
//! webhook reads through the Kubernetes API; pods without it are not given the mirror's copy.

use base64::Engine;
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{Error, ImageStore};
use tests::kube_api::FakeKubernetes;

use super::*;

const USER: &str = "puller";
const PASSWORD: &str = "pull-secret-pa55word";

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

fn pull_secret(namespace: &str, name: &str, host: &str) -> Secret {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = json!({ "auths": { host: { "auth": auth } } });
    Secret {
        metadata: meta(namespace, name),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(serde_json::to_vec(&config).unwrap()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

fn account(namespace: &str, name: &str, secrets: &[&str]) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(namespace, name),
        image_pull_secrets: Some(
            secrets
                .iter()
                .map(|s| LocalObjectReference { name: (*s).into() })
                .collect(),
        ),
        ..Default::default()
    }
}

fn with_account(mut pod: Pod, name: &str) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.service_account_name = Some(name.into());
    }
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_source_is_mirrored_with_the_pods_pull_secret_and_for_no_one_else() {
    let (dst, src) = (
        TestRegistry::start(),
        TestRegistry::with_basic_auth(USER, PASSWORD),
    );
    let image = TestImage::builder().seed(31).layers([25_000]).build();
    let authed = RegistryClient::new(&src.host(), Credentials::basic(USER, PASSWORD))
        .unwrap()
        .repository("private/app")
        .unwrap();
    image.push(&authed, "7").await.unwrap();
    // Reachable only with the secret.
    let anonymous = store(&src, "private/app").head_manifest("7").await;
    assert!(
        matches!(anonymous, Err(Error::Unauthorized { .. })),
        "{anonymous:?}"
    );

    let k8s = FakeKubernetes::start().await;
    k8s.put(&pull_secret("team", "regcred", &src.host()));
    k8s.put(&account("team", "builder", &["regcred"]));
    k8s.put(&account("team", "default", &[]));
    k8s.put(&account("other", "default", &[]));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_from(k8s.config()).unwrap();
    let controller = AdmissionController::builder(mirror(&dst))
        .config(config())
        .sources(Sources::new().with_retry(quick()))
        .kubernetes(client)
        .build()
        .unwrap();
    let webhook = Webhook::start(controller).await;
    let private = format!("{}/private/app:7", src.host());
    let expected = vec![pinned(&dst, image.digest())];

    // The pod's own imagePullSecrets.
    let own = with_pull_secret(pod("team", &[&private], None), "regcred");
    let (response, patched) = webhook.admit(&own).await;
    assert_eq!(images(&patched), expected, "{response}");

    // A pod of another namespace without the secret names the same image: the mirror holds
    // it now, but the pod could not pull it from its source, so it does not get it.
    let stranger = pod("other", &[&private], None);
    let (response, _) = webhook.admit(&stranger).await;
    assert_allowed_unpatched(&response);
    // Nor a pod of the same namespace whose service account has no pull secret.
    let (response, _) = webhook.admit(&pod("team", &[&private], None)).await;
    assert_allowed_unpatched(&response);

    // The secret of the pod's service account.
    let via_account = with_account(pod("team", &[&private], None), "builder");
    let (response, patched) = webhook.admit(&via_account).await;
    assert_eq!(images(&patched), expected, "{response}");

    // Only gets of named objects (RBAC: get on secrets and serviceaccounts).
    let requests = k8s.requests();
    assert!(
        requests.contains(&"GET /api/v1/namespaces/team/secrets/regcred".to_string()),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"GET /api/v1/namespaces/team/serviceaccounts/builder".to_string()),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("GET /api/v1/namespaces/")
                && (r.contains("/secrets/") || r.contains("/serviceaccounts/"))),
        "{requests:?}"
    );
    assert_eq!(webhook.controller.stats().copies, 1);
}
