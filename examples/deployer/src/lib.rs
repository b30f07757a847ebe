//! An example deployer: what a team writes to adopt the library. It reads its configuration
//! (the mirror registry as one string, the cluster, a source per service), mirrors every
//! service's image, and decides per service what to do with the outcome: deploy the pinned
//! reference, hold the rollout when the mirror refuses, retry later when the network is
//! down, and report what the warnings say.

use std::collections::BTreeMap;
use std::sync::Arc;

use image_mirror::prelude::*;
use serde::Deserialize;

/// The deployer's configuration file.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// The mirror registry (`ecr://…`, `gar://…`, `host:5000/mirror`, `oci:/path`).
    pub registry: String,
    /// Registry options (`key=value` pairs: credentials, a prefix…).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The cluster id.
    pub cluster: String,
    /// The image of each service.
    pub services: BTreeMap<String, Source>,
}

/// What the deployer does with one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Roll out this digest-pinned reference (`notes`: what the warnings said).
    Deploy {
        /// The reference Kubernetes pulls.
        reference: String,
        /// One line per warning worth a look.
        notes: Vec<String>,
    },
    /// The source or mirror refused us: a person must fix credentials; nothing rolls out.
    Hold(String),
    /// The network failed (a retry later may pass): keep the running version.
    RetryLater(String),
    /// The configuration is wrong (a typo'd image): fail the pipeline.
    Fail(String),
}

/// The mirror the configuration describes.
pub async fn mirror_of(config: &Config) -> Result<Mirror> {
    let options: OpenOptions = config.options.iter().collect();
    let registry = image_mirror::open(&config.registry, &options).await?;
    Mirror::builder(registry, &config.cluster)
        .sources(image_mirror::with_cloud_sources(Sources::new()))
        .build()
}

/// Mirrors every service and decides what to do with each.
pub async fn deploy_all(mirror: &Mirror, config: &Config) -> BTreeMap<String, Decision> {
    let mut out = BTreeMap::new();
    for (service, source) in &config.services {
        out.insert(
            service.clone(),
            decide(mirror, mirror.mirror(service, source).await),
        );
    }
    out
}

/// The decision for one outcome: branches on the error's kind and on the warnings' types,
/// never on their text.
pub fn decide(mirror: &Mirror, outcome: Result<Deployment>) -> Decision {
    match outcome {
        Ok(d) => {
            let notes = d
                .warnings
                .iter()
                .filter_map(|w| match w {
                    Warning::SourceUnreachable { .. } | Warning::SourceGone { .. } => {
                        Some(format!("served from the mirror: {w}"))
                    }
                    Warning::MutableTag { .. } => Some(format!("re-pushed tag: {w}")),
                    _ => None,
                })
                .collect();
            Decision::Deploy {
                reference: d.pull_reference,
                notes,
            }
        }
        Err(e) => match e.kind() {
            ErrorKind::Auth => Decision::Hold(format!("{:?} refused: {e}", mirror.side_of(&e))),
            ErrorKind::Network | ErrorKind::RateLimited => Decision::RetryLater(e.to_string()),
            ErrorKind::NotFound | ErrorKind::Input => Decision::Fail(e.to_string()),
            _ if e.is_retryable() => Decision::RetryLater(e.to_string()),
            _ => Decision::Fail(e.to_string()),
        },
    }
}

/// A shareable mirror for the binary.
pub type SharedMirror = Arc<Mirror>;

#[cfg(test)]
mod tests {
    use super::*;
    use image_mirror::memory::MemoryRegistry;
    use image_mirror::mock::MockRegistry;
    use mirror_core::testing::TestImage;

    fn layout(dir: &std::path::Path, name: &str, seed: u64) -> Source {
        TestImage::builder()
            .seed(seed)
            .build()
            .write_layout(dir.join(name), "v1")
            .unwrap();
        Source::parse(&format!("oci:{}:v1", dir.join(name).display())).unwrap()
    }

    fn config(dir: &std::path::Path) -> Config {
        Config {
            registry: "unused".into(),
            options: BTreeMap::new(),
            cluster: "prod".into(),
            services: BTreeMap::from([
                ("api".to_string(), layout(dir, "api", 1)),
                ("worker".to_string(), layout(dir, "worker", 2)),
            ]),
        }
    }

    #[tokio::test]
    async fn two_services_are_deployed_pinned_to_the_in_memory_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(MemoryRegistry::new("mirror.test"));
        let mirror = Mirror::builder(registry.clone(), "prod").build().unwrap();
        let decisions = deploy_all(&mirror, &config(dir.path())).await;
        for (service, d) in &decisions {
            match d {
                Decision::Deploy { reference, notes } => {
                    assert!(
                        reference
                            .starts_with(&format!("mirror.test/prod/services/{service}@sha256:")),
                        "{reference}"
                    );
                    assert!(notes.is_empty(), "{notes:?}");
                }
                other => panic!("{service}: {other:?}"),
            }
        }
        assert_eq!(registry.repositories().len(), 2);
    }

    #[tokio::test]
    async fn a_refusing_mirror_holds_the_rollout_and_says_it_was_the_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = MockRegistry::new();
        registry.expect_repository().returning(|scope| {
            Ok(image_mirror::Repository::new(
                "prod/services/x",
                scope.clone(),
            ))
        });
        registry.expect_store().returning(|_| {
            Err(Error::Unauthorized {
                registry: "mirror.test".into(),
                message: "denied".into(),
            })
        });
        registry
            .expect_location()
            .returning(|| "mirror.test".to_string());
        registry.expect_provider().return_const("mock".to_string());
        let mirror = Mirror::builder(Arc::new(registry), "prod").build().unwrap();
        let decisions = deploy_all(&mirror, &config(dir.path())).await;
        for d in decisions.values() {
            assert!(
                matches!(d, Decision::Hold(why) if why.starts_with("Mirror refused")),
                "{d:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_typo_in_an_image_fails_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(MemoryRegistry::new("mirror.test"));
        let mirror = Mirror::builder(registry, "prod").build().unwrap();
        let missing =
            Source::parse(&format!("oci:{}:v1", dir.path().join("nope").display())).unwrap();
        let d = decide(&mirror, mirror.mirror("api", &missing).await);
        assert!(matches!(d, Decision::Fail(_)), "{d:?}");
    }

    #[test]
    fn the_configuration_reads_from_json() {
        let config: Config = serde_json::from_str(
            r#"{"registry": "ecr://123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror",
                "cluster": "prod-eu",
                "services": {"api": "ghcr.io/acme/api:1.4", "web": "nginx:1.27"}}"#,
        )
        .unwrap();
        assert_eq!(
            config.services["web"].to_string(),
            "docker.io/library/nginx:1.27"
        );
        assert!(image_mirror::providers().contains(&"aws"));
    }
}
