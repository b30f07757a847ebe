//! An in-process Kubernetes API server for the in-use tests: the list endpoints of pods,
//! deployments, replicasets, statefulsets, daemonsets, jobs and cronjobs (all namespaces and
//! per namespace), serving real `k8s-openapi` objects as the API reference describes them.
//!
//! - `limit` / `continue` pagination; a `continue` token can be made to expire once
//!   ([`FakeKubernetes::expire_next_continue`]): 410 Gone with a `Status` of reason `Expired`,
//!   as an API server answers after etcd compaction;
//! - `labelSelector` with `k=v`, `k==v`, `k!=v`, `k` and `!k` terms;
//! - a resource can be forbidden ([`FakeKubernetes::forbid`]): 403 with the `Status` a real API
//!   server sends when RBAC lacks `list`;
//! - every request is recorded (method, path, query) for assertions on RBAC and paging;
//! - single objects of any kind put (`GET …/namespaces/NS/secrets/NAME`: Secrets and
//!   ServiceAccounts for the admission webhook's pull secrets), 404 with a `NotFound`
//!   `Status` when absent.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Pod, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Default)]
struct Inner {
    /// Objects per (API group, plural resource), each with its namespace and name.
    objects: BTreeMap<(String, String), Vec<Value>>,
    forbidden: HashSet<String>,
    expire_next: HashSet<String>,
    requests: Vec<String>,
    generation: u64,
}

/// The fake API server; stops when dropped.
pub struct FakeKubernetes {
    url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubernetes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubernetes {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let router = Router::new().fallback(answer).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeKubernetes { url, inner, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kube configuration for this server (no credentials; namespace `default`).
    pub fn config(&self) -> kube::Config {
        kube::Config::new(self.url.parse().expect("the server's URL"))
    }

    /// A kubeconfig file pointing at this server, for the CLI.
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: not-a-secret\n",
            self.url
        );
        std::fs::write(path, text).expect("write the kubeconfig");
    }

    /// Adds (or replaces, by namespace and name) an object.
    pub fn put<K>(&self, object: &K)
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let key = (K::group(&()).into_owned(), K::plural(&()).into_owned());
        let value = serde_json::to_value(object).expect("a k8s-openapi object serialises");
        let (ns, name) = ident(&value);
        let mut inner = self.inner.lock().expect("fake state");
        inner.generation += 1;
        let list = inner.objects.entry(key).or_default();
        list.retain(|o| ident(o) != (ns.clone(), name.clone()));
        list.push(value);
        list.sort_by_key(ident);
    }

    /// Removes an object of kind `K`.
    pub fn remove<K>(&self, namespace: &str, name: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let key = (K::group(&()).into_owned(), K::plural(&()).into_owned());
        let mut inner = self.inner.lock().expect("fake state");
        if let Some(list) = inner.objects.get_mut(&key) {
            list.retain(|o| ident(o) != (namespace.to_string(), name.to_string()));
        }
    }

    /// From now on `list` of `resource` (plural: `pods`, `cronjobs`) answers 403.
    pub fn forbid(&self, resource: &str) {
        let mut inner = self.inner.lock().expect("fake state");
        inner.forbidden.insert(resource.to_string());
    }

    /// The next request for `resource` that carries a continue token gets 410 Gone.
    pub fn expire_next_continue(&self, resource: &str) {
        let mut inner = self.inner.lock().expect("fake state");
        inner.expire_next.insert(resource.to_string());
    }

    /// Every request so far: `GET /apis/apps/v1/deployments?limit=2`.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().expect("fake state").requests.clone()
    }
}

fn ident(v: &Value) -> (String, String) {
    let meta = &v["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    )
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// `(group, namespace, plural, name)` of a list path or of one object's path.
fn route(path: &str) -> Option<(String, Option<String>, String, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, "v1", rest @ ..] => ((*group).to_string(), rest),
        _ => return None,
    };
    match rest {
        [plural] => Some((group, None, (*plural).to_string(), None)),
        ["namespaces", ns, plural] => {
            Some((group, Some((*ns).to_string()), (*plural).to_string(), None))
        }
        ["namespaces", ns, plural, name] => Some((
            group,
            Some((*ns).to_string()),
            (*plural).to_string(),
            Some((*name).to_string()),
        )),
        _ => None,
    }
}

fn matches(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
            if let Some((k, v)) = term.split_once("!=") {
                get(k) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k).is_none()
            } else {
                get(term).is_some()
            }
        })
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().expect("fake state");
    inner.requests.push(format!(
        "{method} {}{}",
        uri.path(),
        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
    ));
    let Some((group, namespace, plural, name)) = route(uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if method != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "read only",
        );
    }
    if inner.forbidden.contains(&plural) {
        let scope = match &namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "{plural} is forbidden: User \"system:serviceaccount:mirror:image-mirror\" cannot \
                 list resource \"{plural}\" in API group \"{group}\" {scope}"
            ),
        );
    }
    if let Some(name) = name {
        let found = inner
            .objects
            .get(&(group.clone(), plural.clone()))
            .into_iter()
            .flatten()
            .find(|o| ident(o) == (namespace.clone().unwrap_or_default(), name.clone()))
            .cloned();
        return match found {
            Some(object) => axum::Json(object).into_response(),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{plural} \"{name}\" not found"),
            ),
        };
    }
    let offset: usize = match query.get("continue") {
        None => 0,
        Some(token) => {
            if inner.expire_next.remove(&plural) {
                return status(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter.",
                );
            }
            match token
                .split_once(':')
                .and_then(|(p, o)| (p == plural).then(|| o.parse().ok()))
                .flatten()
            {
                Some(o) => o,
                None => {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "invalid continue token",
                    )
                }
            }
        }
    };
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let all: Vec<Value> = inner
        .objects
        .get(&(group.clone(), plural.clone()))
        .into_iter()
        .flatten()
        .filter(|o| {
            namespace
                .as_deref()
                .is_none_or(|ns| o["metadata"]["namespace"] == ns)
        })
        .filter(|o| matches(&selector, &o["metadata"]["labels"]))
        .cloned()
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
    let next = offset + page.len();
    let mut metadata = json!({ "resourceVersion": inner.generation.to_string() });
    if next < all.len() {
        metadata["continue"] = json!(format!("{plural}:{next}"));
        metadata["remainingItemCount"] = json!(all.len() - next);
    }
    let kind = page
        .first()
        .and_then(|o| o["kind"].as_str())
        .map(|k| format!("{k}List"))
        .unwrap_or_else(|| "List".to_string());
    let api_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    axum::Json(json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": metadata,
        "items": page,
    }))
    .into_response()
}

/// `labels` as a label map, `None` when there are none.
fn label_map(labels: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    })
}

fn meta(namespace: &str, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: label_map(labels),
        ..ObjectMeta::default()
    }
}

/// A pod template running `image` (one container, plus `init` as an init container).
pub fn template(image: &str, init: Option<&str>, labels: &[(&str, &str)]) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: label_map(labels),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(image, init)),
    }
}

fn pod_spec(image: &str, init: Option<&str>) -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "main".to_string(),
            image: Some(image.to_string()),
            ..Container::default()
        }],
        init_containers: init.map(|i| {
            vec![Container {
                name: "init".to_string(),
                image: Some(i.to_string()),
                ..Container::default()
            }]
        }),
        ..PodSpec::default()
    }
}

/// A `$kind` (`$spec` its spec) named `$name` with `$labels`, whose pods (`app: $name`)
/// run `$image`.
macro_rules! templated {
    ($kind:ident, $spec:ident, $namespace:expr, $name:expr, $image:expr, $labels:expr) => {
        $kind {
            metadata: meta($namespace, $name, $labels),
            spec: $spec {
                selector: LabelSelector {
                    match_labels: label_map(&[("app", $name)]),
                    ..LabelSelector::default()
                },
                template: template($image, None, &[("app", $name)]),
                ..$spec::default()
            },
            ..$kind::default()
        }
    };
}

/// A Deployment of `image`.
pub fn deployment(namespace: &str, name: &str, image: &str, labels: &[(&str, &str)]) -> Deployment {
    templated!(Deployment, DeploymentSpec, namespace, name, image, labels)
}

/// A ReplicaSet of `image` with `replicas` (0: a rollback target).
pub fn replica_set(namespace: &str, name: &str, image: &str, replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: meta(namespace, name, &[]),
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: label_map(&[("app", name)]),
                ..LabelSelector::default()
            },
            template: Some(template(image, None, &[("app", name)])),
            ..ReplicaSetSpec::default()
        },
        ..ReplicaSet::default()
    }
}

/// A StatefulSet of `image`.
pub fn stateful_set(namespace: &str, name: &str, image: &str) -> StatefulSet {
    templated!(StatefulSet, StatefulSetSpec, namespace, name, image, &[])
}

/// A DaemonSet of `image`.
pub fn daemon_set(namespace: &str, name: &str, image: &str) -> DaemonSet {
    templated!(DaemonSet, DaemonSetSpec, namespace, name, image, &[])
}

/// A Job of `image`.
pub fn job(namespace: &str, name: &str, image: &str) -> Job {
    Job {
        metadata: meta(namespace, name, &[]),
        spec: Some(job_spec(image)),
        ..Job::default()
    }
}

fn job_spec(image: &str) -> JobSpec {
    JobSpec {
        template: template(image, None, &[]),
        ..JobSpec::default()
    }
}

/// A CronJob of `image`.
pub fn cron_job(namespace: &str, name: &str, image: &str) -> CronJob {
    CronJob {
        metadata: meta(namespace, name, &[]),
        spec: CronJobSpec {
            schedule: "0 3 * * *".to_string(),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(job_spec(image)),
            },
            ..CronJobSpec::default()
        },
        ..CronJob::default()
    }
}

/// A running Pod of `image` (by tag, say) whose node resolved it to `image_id`, with `init`
/// as an init container and `ephemeral` as an ephemeral (debug) container.
pub fn pod(
    namespace: &str,
    name: &str,
    image: &str,
    image_id: Option<&str>,
    init: Option<&str>,
    ephemeral: Option<&str>,
    labels: &[(&str, &str)],
) -> Pod {
    let mut spec = pod_spec(image, init);
    spec.ephemeral_containers = ephemeral.map(|e| {
        vec![k8s_openapi::api::core::v1::EphemeralContainer {
            name: "debug".to_string(),
            image: Some(e.to_string()),
            ..Default::default()
        }]
    });
    Pod {
        metadata: meta(namespace, name, labels),
        spec: Some(spec),
        status: image_id.map(|id| PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "main".to_string(),
                image: image.to_string(),
                image_id: id.to_string(),
                ready: true,
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}
