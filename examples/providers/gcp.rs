//! `--provider gcp` of the `mirror` CLI: Google Artifact Registry through `provider_gcp`.
//! Included by `mirror.rs` with `#[path]`.
//!
//! Settings come from the environment first (`MIRROR_GAR_*`, see the provider's README), then
//! from the `--gcp-*` flags, which win. Credentials: `--gcp-credentials-file` (a
//! service-account key), else `GOOGLE_APPLICATION_CREDENTIALS`, else the gcloud
//! application-default credentials, the metadata server or the `gcloud` CLI.

use std::sync::Arc;

use anyhow::bail;
use mirror_core::Registry;
use provider_gcp::{ArtifactRegistryBuilder, GarConfigKey};

/// The `--gcp-*` flags.
#[derive(clap::Args, Debug, Default)]
pub struct GcpArgs {
    /// `--provider gcp`: project owning the repositories (else `MIRROR_GAR_PROJECT`, else the
    /// credentials' project).
    #[arg(long)]
    pub gcp_project: Option<String>,
    /// `--provider gcp`: location of the repositories (`europe-west1`, `us`; else
    /// `MIRROR_GAR_LOCATION`, else the location of a `*-docker.pkg.dev` `--registry`).
    #[arg(long)]
    pub gcp_location: Option<String>,
    /// `--provider gcp`: Artifact Registry REST endpoint override (else
    /// `https://artifactregistry.googleapis.com`).
    #[arg(long)]
    pub gcp_endpoint: Option<String>,
    /// `--provider gcp`: service-account key file (JSON).
    #[arg(long)]
    pub gcp_credentials_file: Option<String>,
    /// `--provider gcp`: OAuth token endpoint override for the key file.
    #[arg(long)]
    pub gcp_token_uri: Option<String>,
    /// `--provider gcp`: leave retention to `sweep` instead of cleanup policies (which cannot
    /// know which images are in use).
    #[arg(long)]
    pub gcp_no_cleanup_policies: bool,
}

/// The registry for `--provider gcp`. `registry` is `gar` (the location's
/// `<location>-docker.pkg.dev`) or a docker host (`europe-west1-docker.pkg.dev`, which gives
/// the location, or a data-plane override); `prefix` is the repository id prefix.
pub fn open(
    args: &GcpArgs,
    registry: &str,
    prefix: Option<&str>,
    registry_creds: bool,
) -> anyhow::Result<Arc<dyn Registry>> {
    if registry_creds {
        bail!(
            "--registry-creds does not apply to --provider gcp: the data plane takes user \
             `oauth2accesstoken` with an OAuth access token from the Google credentials"
        );
    }
    let mut b = ArtifactRegistryBuilder::from_env();
    if !matches!(registry, "gar" | "gcp") {
        b = b.docker_host(registry);
    }
    for (key, value) in [
        (GarConfigKey::Project, &args.gcp_project),
        (GarConfigKey::Location, &args.gcp_location),
        (GarConfigKey::Endpoint, &args.gcp_endpoint),
        (GarConfigKey::CredentialsFile, &args.gcp_credentials_file),
        (GarConfigKey::TokenUri, &args.gcp_token_uri),
    ] {
        if let Some(v) = value {
            b = b.with_config(key, v);
        }
    }
    if let Some(p) = prefix {
        b = b.repository_prefix(p);
    }
    if args.gcp_no_cleanup_policies {
        b = b.cleanup_policies(false);
    }
    // `open_registry` is synchronous and the credentials are found asynchronously.
    let gar =
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(b.build()))?;
    Ok(Arc::new(gar))
}
