//! The mirror registry of the commands: its flags and how they open it.

use std::sync::Arc;

use anyhow::{bail, Context};
use mirror_core::registry::{OpenOptions, RegistryFactory};
use mirror_core::Registry;

use crate::KubernetesArgs;

/// Where the mirror registry is and which cluster: the flags every command but `copy` takes.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// The mirror registry: `oci:PATH`, `host[:port][/prefix]`, `ecr://…`, `gar://…`,
    /// `scaleway://…` or a provider's own host (see the crate docs and README).
    #[arg(long, env = "MIRROR_REGISTRY")]
    pub registry: String,
    /// A registry setting `KEY=VALUE`: a provider configuration key (`region`, `account`,
    /// `endpoint`, `project`, `lifecycle_policy`…, or its variable name), or for distribution
    /// registries `plain_http`, `tls_verify`. Repeatable; wins over the environment.
    #[arg(long = "registry-option", short = 'o', value_name = "KEY=VALUE")]
    pub registry_options: Vec<String>,
    /// The cluster id.
    #[arg(long)]
    pub cluster: String,
    /// Mirror registry credentials `USER:PASS` for a distribution registry (else docker
    /// config.json, else anonymous).
    #[arg(long, env = "MIRROR_REGISTRY_CREDS", hide_env_values = true)]
    pub registry_creds: Option<String>,
    /// Put every repository under this path prefix (the same as a path after the host).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The registry `--registry` names, through `mirror_core::registry::open` with the factories
/// of the three provider crates.
pub async fn open_registry(args: &RegistryArgs) -> anyhow::Result<Arc<dyn Registry>> {
    if let Ok(p) = std::env::var("MIRROR_PROVIDER") {
        bail!(
            "MIRROR_PROVIDER={p} is no longer read: the registry location names the provider \
             (ecr://…, gar://…, scaleway://…, or the provider's own host; see --help)"
        );
    }
    // A command line reads the docker config for a distribution registry, as docker does.
    let mut options = OpenOptions::new().with_docker_config();
    for pair in &args.registry_options {
        options = options.with_pair(pair)?;
    }
    if let Some(p) = &args.prefix {
        options = options.with("prefix", p);
    }
    if let Some(c) = &args.registry_creds {
        let (u, p) = c.split_once(':').context("credentials must be USER:PASS")?;
        options = options.with("username", u).with("password", p);
    }
    let factories: [&dyn RegistryFactory; 3] = [
        &provider_aws::factory(),
        &provider_gcp::factory(),
        &provider_scaleway::factory(),
    ];
    Ok(mirror_core::registry::open(&args.registry, &options, &factories).await?)
}

/// The builder with the Kubernetes in-use source of the flags, if any.
pub async fn with_discovery(
    builder: mirror_core::MirrorBuilder,
    args: &KubernetesArgs,
) -> anyhow::Result<mirror_core::MirrorBuilder> {
    Ok(match args.source().await? {
        Some(source) => builder.in_use_source(source),
        None => builder,
    })
}
