//! `--provider scaleway` of the `mirror` CLI: Scaleway Container Registry through
//! `provider_scaleway`. Included by `mirror.rs` with `#[path]`.
//!
//! Settings come from the environment first (`SCW_SECRET_KEY`, `SCW_DEFAULT_PROJECT_ID`,
//! `SCW_DEFAULT_REGION`, `SCW_API_URL`, `MIRROR_SCW_*`; see the provider's README), then from
//! the `--scw-*` flags, which win. The secret key is only read from the environment.

use std::sync::Arc;

use anyhow::bail;
use mirror_core::Registry;
use provider_scaleway::{ScalewayBuilder, ScalewayConfigKey};

/// The `--scw-*` flags.
#[derive(clap::Args, Debug, Default)]
pub struct ScalewayArgs {
    /// `--provider scaleway`: region (`fr-par`, `nl-ams`, `pl-waw`; else `SCW_DEFAULT_REGION`,
    /// else `fr-par`).
    #[arg(long)]
    pub scw_region: Option<String>,
    /// `--provider scaleway`: project the namespaces are created in (else
    /// `SCW_DEFAULT_PROJECT_ID`).
    #[arg(long)]
    pub scw_project_id: Option<String>,
    /// `--provider scaleway`: registry API URL override (else `SCW_API_URL`, else
    /// `https://api.scaleway.com`).
    #[arg(long)]
    pub scw_api_url: Option<String>,
    /// `--provider scaleway`: make the namespaces public (anyone may pull).
    #[arg(long)]
    pub scw_public: bool,
    /// `--provider scaleway`: how long to wait for a new namespace to be ready (`60s`).
    #[arg(long)]
    pub scw_namespace_timeout: Option<String>,
}

/// The registry for `--provider scaleway`. `registry` is `scaleway` (the region's
/// `rg.<region>.scw.cloud`) or a data-plane host override; `prefix` is the namespace prefix.
pub fn open(
    args: &ScalewayArgs,
    registry: &str,
    prefix: Option<&str>,
    registry_creds: bool,
) -> anyhow::Result<Arc<dyn Registry>> {
    if registry_creds {
        bail!(
            "--registry-creds does not apply to --provider scaleway: the data plane takes user \
             `nologin` with the secret key, set SCW_SECRET_KEY"
        );
    }
    let mut b = ScalewayBuilder::from_env();
    if !matches!(registry, "scaleway" | "scw") {
        b = b.registry_host(registry);
    }
    for (key, value) in [
        (ScalewayConfigKey::Region, &args.scw_region),
        (ScalewayConfigKey::ProjectId, &args.scw_project_id),
        (ScalewayConfigKey::ApiUrl, &args.scw_api_url),
        (
            ScalewayConfigKey::NamespaceTimeout,
            &args.scw_namespace_timeout,
        ),
    ] {
        if let Some(v) = value {
            b = b.with_config(key, v);
        }
    }
    if let Some(p) = prefix {
        b = b.prefix(p);
    }
    if args.scw_public {
        b = b.public(true);
    }
    Ok(Arc::new(b.build()?))
}
