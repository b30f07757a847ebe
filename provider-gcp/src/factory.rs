//! [`GarFactory`]: Artifact Registry for `mirror_core::registry::open`.
//!
//! | location | registry |
//! |---|---|
//! | `gar://<location>-docker.pkg.dev/<project>[/<prefix>]`, or the same without `gar://` | that location and project; `<prefix>` starts every repository id |
//! | `gar://[/<project>[/<prefix>]]` | the location from the options (`location`), the project from the options or the credentials |
//! | `gar://HOST[:PORT]/<project>[/<prefix>]` (any other host) | a data-plane host override (Private Service Connect, a fake); location from the options |
//!
//! Options are [`GarConfigKey`]s (`location`, `credentials_file`, `endpoint`…, by key or
//! variable name), read after the `MIRROR_GAR_*` variables unless the options say not to
//! read the environment.

use std::sync::Arc;

use async_trait::async_trait;
use mirror_core::provider::config::factory_options;
use mirror_core::registry::{OpenOptions, RegistryFactory};
use mirror_core::{Registry, Result};

use crate::{naming, ArtifactRegistryBuilder, GarConfigKey, PROVIDER};

/// Opens Artifact Registry registries for `mirror_core::registry::open` (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct GarFactory;

/// What the `username`/`password` options (the CLI's `--registry-creds`) are told: the data
/// plane takes other credentials.
const CREDENTIALS_HINT: &str = "the data plane takes user oauth2accesstoken with an OAuth access token (set credentials_file, GOOGLE_APPLICATION_CREDENTIALS or the default chain)";

/// The factory, to pass to `mirror_core::registry::open`.
pub fn factory() -> GarFactory {
    GarFactory
}

impl GarFactory {
    /// The builder `open` would build: the environment (unless refused), the location, then
    /// the options. The location's path is `<project>[/<prefix>]`.
    pub fn builder(
        &self,
        host: Option<&str>,
        path: Option<&str>,
        options: &OpenOptions,
    ) -> Result<ArtifactRegistryBuilder> {
        let mut b = if options.reads_env() {
            ArtifactRegistryBuilder::from_env()
        } else {
            ArtifactRegistryBuilder::new()
        };
        if let Some(h) = host.filter(|h| *h != "default") {
            b = b.docker_host(h);
        }
        let (project, prefix) = match path {
            Some(p) => match p.split_once('/') {
                Some((project, prefix)) => (Some(project), Some(prefix)),
                None => (Some(p), None),
            },
            None => (None, None),
        };
        if let Some(p) = project {
            b = b.project(p);
        }
        if let Some(p) = options.prefix(prefix)? {
            b = b.repository_prefix(p);
        }
        for (k, v) in factory_options::<GarConfigKey>(options, "gar", CREDENTIALS_HINT)? {
            b = b.with_config(k, v);
        }
        Ok(b)
    }
}

#[async_trait]
impl RegistryFactory for GarFactory {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["gar"]
    }

    fn recognises(&self, host: &str) -> bool {
        naming::location_of_host(host).is_some()
    }

    async fn open(
        &self,
        host: Option<&str>,
        path: Option<&str>,
        options: &OpenOptions,
    ) -> Result<Arc<dyn Registry>> {
        Ok(Arc::new(self.builder(host, path, options)?.build().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_options_reach_the_builder() {
        let f = factory();
        assert!(f.recognises("europe-west1-docker.pkg.dev"));
        assert!(!f.recognises("registry.example.com"));
        let b = f
            .builder(
                Some("europe-west1-docker.pkg.dev"),
                Some("my-project/team"),
                &OpenOptions::new()
                    .without_env()
                    .with("cleanup_policies", "off"),
            )
            .unwrap();
        assert_eq!(
            b.get_config(GarConfigKey::Project).as_deref(),
            Some("my-project")
        );
        assert_eq!(b.get_config(GarConfigKey::Prefix).as_deref(), Some("team"));
        assert_eq!(
            b.get_config(GarConfigKey::DockerHost).as_deref(),
            Some("europe-west1-docker.pkg.dev")
        );
        assert_eq!(
            b.get_config(GarConfigKey::CleanupPolicies).as_deref(),
            Some("false")
        );
        let e = f
            .builder(
                None,
                None,
                &OpenOptions::new().without_env().with("region", "x"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"region\""), "{e}");
    }
}
