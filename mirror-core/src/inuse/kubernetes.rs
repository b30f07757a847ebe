//! In-use images from the Kubernetes API (feature `kubernetes`).
//!
//! [`KubernetesInUse`] lists, with the `kube` client, every Pod (its containers, init
//! containers and ephemeral containers: the images their specs name and the digests the nodes
//! resolved them to, `status.*ContainerStatuses[].imageID`) and the pod templates of
//! Deployments, ReplicaSets (also scaled to zero: they are rollback targets), StatefulSets,
//! DaemonSets, Jobs and CronJobs, in every namespace or in the ones given, optionally
//! narrowed by a label selector.
//!
//! Lists are read in pages (`limit` / `continue`). A continue token the API server no longer
//! knows (410 Gone, after etcd compaction) restarts that listing from its start, at most
//! `MAX_RESTARTS` times; a refusal (403: the service account lacks the RBAC of
//! [`CLUSTER_ROLE`]), an unreachable server, a page that takes longer than the request
//! timeout or a listing that does not end is [`Error::InUseUnknown`], never a shorter list.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{ImageUse, InUseSource, Workload, WorkloadKind};
use crate::error::{sanitize, Error, Result, MAX_SHOWN_TEXT};

/// The RBAC the discovery needs, as a ClusterRole: `get` and `list` on the resources it
/// reads, nothing else. Bind it to the service account that runs the mirror (README shows a
/// whole CronJob with its ServiceAccount and ClusterRoleBinding).
pub const CLUSTER_ROLE: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: image-mirror-in-use
rules:
  - apiGroups: [\"\"]
    resources: [\"pods\"]
    verbs: [\"get\", \"list\"]
  - apiGroups: [\"apps\"]
    resources: [\"deployments\", \"replicasets\", \"statefulsets\", \"daemonsets\"]
    verbs: [\"get\", \"list\"]
  - apiGroups: [\"batch\"]
    resources: [\"jobs\", \"cronjobs\"]
    verbs: [\"get\", \"list\"]
";

/// How often one listing restarts after its continue token expired (410 Gone).
pub(crate) const MAX_RESTARTS: usize = 3;

/// At most this many pages per listing: an API server whose continue tokens never end is
/// an error, not a loop.
const MAX_PAGES: usize = 100_000;

/// Images in use according to the Kubernetes API (see the [module docs](self)).
///
/// ```no_run
/// # async fn run() -> mirror_core::Result<()> {
/// use mirror_core::inuse::kubernetes::KubernetesInUse;
/// use mirror_core::inuse::InUseSource;
///
/// // In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config.
/// let cluster = KubernetesInUse::infer().await?.label_selector("team=payments");
/// for image in cluster.image_uses().await? {
///     println!("{} uses {}", image.workload, image.reference);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct KubernetesInUse {
    client: Client,
    origin: String,
    namespaces: Vec<String>,
    label_selector: Option<String>,
    page_size: u32,
    request_timeout: Duration,
}

impl fmt::Debug for KubernetesInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesInUse")
            .field("origin", &self.origin)
            .field("namespaces", &self.namespaces)
            .field("label_selector", &self.label_selector)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// The kubeconfig file kubectl reads: the first file of `$KUBECONFIG`, else
/// `~/.kube/config`.
pub(crate) fn default_kubeconfig() -> std::path::PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).next())
    {
        return first;
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    std::path::Path::new(&home).join(".kube").join("config")
}

impl KubernetesInUse {
    /// The cluster this process runs in (its service account) or, outside a cluster, the
    /// current context of `$KUBECONFIG` / `~/.kube/config`.
    pub async fn infer() -> Result<Self> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| unknown("kubernetes", "load the configuration", None, &e))?;
        Self::from_config(config)
    }

    /// The cluster of context `context` (or the current one) in the kubeconfig file `path`.
    pub async fn from_kubeconfig(path: &std::path::Path, context: Option<&str>) -> Result<Self> {
        let operation = format!("read the kubeconfig {}", path.display());
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| unknown("kubernetes", &operation, None, &e))?;
        let options = kube::config::KubeConfigOptions {
            context: context.map(str::to_string),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| unknown("kubernetes", &operation, None, &e))?;
        Self::from_config(config)
    }

    /// The cluster a deployer's flags name: the context `context` (or the current one) of
    /// the kubeconfig `kubeconfig`; with a context alone, of `default_kubeconfig`; with
    /// neither, [`KubernetesInUse::infer`] (in a pod, its service account).
    pub async fn connect(
        kubeconfig: Option<&std::path::Path>,
        context: Option<&str>,
    ) -> Result<Self> {
        match (kubeconfig, context) {
            (Some(path), context) => Self::from_kubeconfig(path, context).await,
            (None, Some(context)) => {
                let path = default_kubeconfig();
                Self::from_kubeconfig(&path, Some(context)).await
            }
            (None, None) => Self::infer().await,
        }
    }

    /// The cluster `config` describes.
    pub fn from_config(config: kube::Config) -> Result<Self> {
        let origin = format!("kubernetes {}", config.cluster_url);
        let client =
            Client::try_from(config).map_err(|e| unknown(&origin, "build the client", None, &e))?;
        Ok(Self::with_client(client, origin))
    }

    /// Through the client a deployer already holds (`kube`'s `Api::all(client)` style: the
    /// library builds no client of its own and installs nothing process-wide).
    pub fn from_client(client: Client) -> Self {
        let origin = "kubernetes (the deployer's client)".to_string();
        Self::with_client(client, origin)
    }

    fn with_client(client: Client, origin: String) -> Self {
        KubernetesInUse {
            client,
            origin,
            namespaces: Vec::new(),
            label_selector: None,
            page_size: 500,
            request_timeout: Duration::from_secs(60),
        }
    }

    /// Only these namespaces (default: all).
    pub fn namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }

    /// Only objects matching this label selector (`app=web,tier!=cache`). Pods and
    /// templates are filtered by their own labels.
    pub fn label_selector(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }

    /// Objects per page (default 500, the `limit` of each list request; at least 1).
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = n.max(1);
        self
    }

    /// How long one page may take (default 60 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Every object of kind `K` in scope, read page by page.
    async fn list<K>(&self, resource: &str) -> Result<Vec<K>>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        let scopes: Vec<(Api<K>, String)> = if self.namespaces.is_empty() {
            vec![(Api::all(self.client.clone()), "all namespaces".to_string())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| {
                    (
                        Api::namespaced(self.client.clone(), ns),
                        format!("namespace {ns}"),
                    )
                })
                .collect()
        };
        let mut out = Vec::new();
        for (api, scope) in scopes {
            let operation = format!("list {resource} in {scope}");
            out.extend(self.list_pages(&api, &operation).await?);
        }
        Ok(out)
    }

    /// One listing, restarted from its start when its continue token expires.
    async fn list_pages<K>(&self, api: &Api<K>, operation: &str) -> Result<Vec<K>>
    where
        K: Resource + Clone + DeserializeOwned + fmt::Debug,
    {
        let mut restarts = 0;
        'listing: loop {
            let mut items = Vec::new();
            let mut token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut params = ListParams::default().limit(self.page_size);
                if let Some(selector) = &self.label_selector {
                    params = params.labels(selector);
                }
                if let Some(t) = &token {
                    params = params.continue_token(t);
                }
                let page = match tokio::time::timeout(self.request_timeout, api.list(&params)).await
                {
                    Ok(Ok(page)) => page,
                    Ok(Err(kube::Error::Api(status)))
                        if status.code == 410 && token.is_some() && restarts < MAX_RESTARTS =>
                    {
                        restarts += 1;
                        tracing::info!(
                            operation,
                            restarts,
                            "the continue token expired; listing again from the start"
                        );
                        continue 'listing;
                    }
                    Ok(Err(e)) => return Err(self.error(operation, e)),
                    Err(_) => {
                        return Err(unknown(
                            &self.origin,
                            operation,
                            None,
                            &format!("no answer within {:?}", self.request_timeout),
                        ))
                    }
                };
                items.extend(page.items);
                match page.metadata.continue_ {
                    Some(next) if !next.is_empty() => {
                        if token.as_deref() == Some(next.as_str()) {
                            return Err(unknown(
                                &self.origin,
                                operation,
                                None,
                                &"the API server answered the same continue token twice",
                            ));
                        }
                        token = Some(next);
                    }
                    _ => return Ok(items),
                }
            }
            return Err(unknown(
                &self.origin,
                operation,
                None,
                &format!("the listing did not end after {MAX_PAGES} pages"),
            ));
        }
    }

    fn error(&self, operation: &str, e: kube::Error) -> Error {
        match &e {
            kube::Error::Api(status) => {
                let said = sanitize(&status.message, MAX_SHOWN_TEXT);
                let message = match status.code {
                    403 => format!(
                        "{said} (the account needs get and list on pods, deployments, \
                         replicasets, statefulsets, daemonsets, jobs and cronjobs: see \
                         the ClusterRole in KubernetesInUse's documentation)"
                    ),
                    401 => format!("{said} (the API server refused the credentials)"),
                    _ => said,
                };
                unknown(&self.origin, operation, Some(status.code), &message)
            }
            other => unknown(&self.origin, operation, None, other),
        }
    }

    /// The images of the pod templates of every `K`.
    async fn templates<K>(
        &self,
        resource: &str,
        kind: WorkloadKind,
        spec: fn(&K) -> Option<&PodSpec>,
    ) -> Result<Vec<ImageUse>>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        let mut out = Vec::new();
        for object in self.list::<K>(resource).await? {
            let workload = workload_of(&object, kind);
            if let Some(spec) = spec(&object) {
                push_uses(&mut out, &workload, spec_images(spec));
            }
        }
        Ok(out)
    }

    async fn pods(&self) -> Result<Vec<ImageUse>> {
        let mut out = Vec::new();
        for pod in self.list::<Pod>("pods").await? {
            let workload = workload_of(&pod, WorkloadKind::Pod);
            if let Some(spec) = &pod.spec {
                push_uses(&mut out, &workload, spec_images(spec));
            }
            if let Some(status) = &pod.status {
                let statuses = [
                    &status.container_statuses,
                    &status.init_container_statuses,
                    &status.ephemeral_container_statuses,
                ];
                let ids = statuses
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|s| s.image_id.as_str());
                push_uses(&mut out, &workload, ids);
            }
        }
        Ok(out)
    }
}

fn unknown(origin: &str, operation: &str, status: Option<u16>, e: &dyn fmt::Display) -> Error {
    Error::InUseUnknown {
        origin: origin.to_string(),
        operation: operation.to_string(),
        status,
        message: sanitize(&e.to_string(), MAX_SHOWN_TEXT),
    }
}

fn workload_of<K: Resource>(object: &K, kind: WorkloadKind) -> Workload {
    Workload {
        kind,
        namespace: object.meta().namespace.clone(),
        name: object.name_any(),
    }
}

/// The image of every container, init container and ephemeral container of `spec`.
fn spec_images(spec: &PodSpec) -> impl Iterator<Item = &str> {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter_map(|c| c.image.as_deref());
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .filter_map(|c| c.image.as_deref());
    containers.chain(ephemeral)
}

fn push_uses<'a>(
    out: &mut Vec<ImageUse>,
    workload: &Workload,
    images: impl Iterator<Item = &'a str>,
) {
    for image in images {
        let image = image.trim();
        if image.is_empty() {
            continue;
        }
        out.push(ImageUse {
            reference: image.to_string(),
            workload: workload.clone(),
        });
    }
}

#[async_trait]
impl InUseSource for KubernetesInUse {
    async fn image_uses(&self) -> Result<Vec<ImageUse>> {
        let (pods, deployments, replica_sets, stateful_sets, daemon_sets, jobs, cron_jobs) = futures::try_join!(
            self.pods(),
            self.templates::<Deployment>("deployments", WorkloadKind::Deployment, |d| {
                d.spec.template.spec.as_ref()
            }),
            self.templates::<ReplicaSet>("replicasets", WorkloadKind::ReplicaSet, |r| {
                r.spec.template.as_ref()?.spec.as_ref()
            }),
            self.templates::<StatefulSet>("statefulsets", WorkloadKind::StatefulSet, |s| {
                s.spec.template.spec.as_ref()
            }),
            self.templates::<DaemonSet>("daemonsets", WorkloadKind::DaemonSet, |d| {
                d.spec.template.spec.as_ref()
            }),
            self.templates::<Job>("jobs", WorkloadKind::Job, |j| {
                j.spec.as_ref()?.template.spec.as_ref()
            }),
            self.templates::<CronJob>("cronjobs", WorkloadKind::CronJob, |c| {
                c.spec.job_template.spec.as_ref()?.template.spec.as_ref()
            }),
        )?;
        let mut out = pods;
        for more in [
            deployments,
            replica_sets,
            stateful_sets,
            daemon_sets,
            jobs,
            cron_jobs,
        ] {
            out.extend(more);
        }
        Ok(out)
    }
}
