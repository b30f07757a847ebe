//! Example binaries live beside this crate as `[[example]]` targets; what they share is here.

use std::sync::Arc;

pub mod registry;
pub mod serve;
pub mod show;
pub mod sources;
pub mod webhook;

/// A `/proc/<pid>/status` field in KiB (`VmHWM:` peak RSS, `VmRSS:` current), for the
/// benchmarks; `pid` is a process id or `self`. 0 where the file or field is missing (not
/// Linux).
pub fn proc_status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

use mirror_core::inuse::kubernetes::KubernetesInUse;
use mirror_core::inuse::InUseSource;

/// How `deploy`, `sweep`, `ls` and `build` find the images the cluster runs, besides
/// `--in-use`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KubernetesArgs {
    /// Ask the Kubernetes API which images the cluster runs (pods and the pod templates of
    /// Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and CronJobs): in a pod its
    /// service account, else `$KUBECONFIG` / `~/.kube/config`. Eviction and sweep keep them;
    /// when the API cannot tell, they delete nothing.
    #[arg(long)]
    pub kubernetes: bool,
    /// The kubeconfig file to use (implies `--kubernetes`).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context (implies `--kubernetes`; default: the current one).
    #[arg(long, value_name = "NAME")]
    pub kube_context: Option<String>,
    /// Only these namespaces (repeatable; default: all).
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Only objects matching this label selector (`app=web,tier!=cache`).
    #[arg(long = "selector", value_name = "LABELS")]
    pub selector: Option<String>,
}

impl KubernetesArgs {
    /// The in-use source the flags describe, `None` without them.
    pub async fn source(&self) -> mirror_core::Result<Option<Arc<dyn InUseSource>>> {
        if !self.kubernetes && self.kubeconfig.is_none() && self.kube_context.is_none() {
            return Ok(None);
        }
        let mut source =
            KubernetesInUse::connect(self.kubeconfig.as_deref(), self.kube_context.as_deref())
                .await?;
        if !self.namespaces.is_empty() {
            source = source.namespaces(self.namespaces.iter().cloned());
        }
        if let Some(selector) = &self.selector {
            source = source.label_selector(selector);
        }
        Ok(Some(Arc::new(source)))
    }
}
