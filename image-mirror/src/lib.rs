//! Keeps every image a Kubernetes cluster runs in a mirror registry next to it, and hands back
//! a digest-pinned reference: `mirror-core` with the cloud providers behind features.
//!
//! | feature | adds |
//! |---|---|
//! | `aws` | `ecr://…` locations ([`aws`]) and ECR sources |
//! | `gcp` | `gar://…` locations ([`gcp`]) and Artifact Registry / GCR sources |
//! | `scaleway` | `scaleway://…` locations ([`scaleway`]) |
//! | `clouds` | the three |
//! | `kubernetes` | in-use images from the Kubernetes API |
//! | `admission` | the admission webhook's core |
//! | `memory`, `mock` | an in-memory registry and mockall mocks for a deployer's unit tests |
//! | `oci-spec` | conversions to and from `oci-spec`'s descriptors, platforms and manifests |
//!
//! # Example
//!
//! Open the mirror registry from a configuration string and deploy:
//!
//! ```no_run
//! # async fn demo() -> image_mirror::Result<()> {
//! use std::sync::Arc;
//! use image_mirror::prelude::*;
//!
//! // `ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com` with feature `aws`, …
//! let registry = image_mirror::open("registry.internal:5000/mirror", &OpenOptions::new()).await?;
//! registry.check().await?; // a typo'd host or a refused credential fails here, at once
//! let mirror = Mirror::builder(registry, "prod-eu").build()?;
//! match mirror.mirror("api", &"ghcr.io/acme/api:1.4".parse()?).await {
//!     Ok(d) => println!("deploy {}", d.pull_reference),
//!     Err(e) if e.kind() == ErrorKind::Auth => eprintln!("{:?} refused: {e}", mirror.side_of(&e)),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

pub use mirror_core::*;

/// AWS Elastic Container Registry.
#[cfg(feature = "aws")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws")))]
pub use provider_aws as aws;

/// GCP Artifact Registry.
#[cfg(feature = "gcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "gcp")))]
pub use provider_gcp as gcp;

/// Scaleway Container Registry.
#[cfg(feature = "scaleway")]
#[cfg_attr(docsrs, doc(cfg(feature = "scaleway")))]
pub use provider_scaleway as scaleway;

use mirror_core::registry::{OpenOptions, RegistryFactory};

/// The registry `location` names, with `options` (the grammar: `mirror_core::registry::open`),
/// knowing every provider this crate was built with.
pub async fn open(location: &str, options: &OpenOptions) -> Result<Arc<dyn Registry>> {
    #[cfg(feature = "aws")]
    let aws = provider_aws::factory();
    #[cfg(feature = "gcp")]
    let gcp = provider_gcp::factory();
    #[cfg(feature = "scaleway")]
    let scaleway = provider_scaleway::factory();
    let factories: Vec<&dyn RegistryFactory> = vec![
        #[cfg(feature = "aws")]
        &aws,
        #[cfg(feature = "gcp")]
        &gcp,
        #[cfg(feature = "scaleway")]
        &scaleway,
    ];
    mirror_core::registry::open(location, options, &factories).await
}

/// The providers this crate was built with (`aws`, `gcp`, `scaleway`).
pub fn providers() -> Vec<&'static str> {
    vec![
        #[cfg(feature = "aws")]
        provider_aws::PROVIDER,
        #[cfg(feature = "gcp")]
        provider_gcp::PROVIDER,
        #[cfg(feature = "scaleway")]
        provider_scaleway::PROVIDER,
    ]
}

/// `sources` with the cloud source credentials of the enabled providers that need nothing
/// but the deployer's own identity: ECR hosts with the AWS SDK chain (`aws`), Artifact
/// Registry and GCR hosts with Google's default chain (`gcp`). Both are looked up at the
/// first pull of such a host, never before.
pub fn with_cloud_sources(sources: Sources) -> Sources {
    #[cfg(feature = "aws")]
    let sources = sources.with_source_credentials(Arc::new(provider_aws::EcrSources::new()));
    #[cfg(feature = "gcp")]
    let sources =
        sources.with_source_credentials(Arc::new(provider_gcp::GarSources::default_chain()));
    sources
}

/// What a deployer needs in one `use`.
pub mod prelude {
    pub use crate::open;
    pub use mirror_core::prelude::*;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_knows_layouts_and_distribution_registries_without_any_provider() {
        let dir = std::env::temp_dir().join("image-mirror-open-test");
        let layout = open(&format!("oci:{}", dir.display()), &OpenOptions::new())
            .await
            .unwrap();
        assert_eq!(layout.provider(), "layout");
        let generic = open("127.0.0.1:5000", &OpenOptions::new()).await.unwrap();
        assert_eq!(generic.provider(), "generic");
        #[cfg(not(feature = "aws"))]
        {
            let err = open("ecr://", &OpenOptions::new()).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Input, "{err}");
        }
    }
}
