//! [`EcrFactory`]: ECR for `mirror_core::registry::open`.
//!
//! | location | registry |
//! |---|---|
//! | `ecr://<account>.dkr.ecr.<region>.amazonaws.com[/PREFIX]`, or the host alone | that account and region |
//! | `ecr://[/PREFIX]` | the caller's account, the region of the SDK chain |
//! | `ecr://HOST[:PORT][/PREFIX]` (any other host) | a data-plane host override (a proxy, an emulator); account and region from the options or the SDK chain |
//!
//! Options are [`EcrConfigKey`]s (`region`, `account`, `endpoint`…, by key or variable name),
//! read after the `MIRROR_ECR_*` variables unless the options say not to read the
//! environment.

use std::sync::Arc;

use async_trait::async_trait;
use mirror_core::provider::config::factory_options;
use mirror_core::registry::{OpenOptions, RegistryFactory};
use mirror_core::{Registry, Result};

use crate::{naming, EcrBuilder, EcrConfigKey, PROVIDER};

/// Opens ECR registries for `mirror_core::registry::open` (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct EcrFactory;

/// What the `username`/`password` options (the CLI's `--registry-creds`) are told: the data
/// plane takes other credentials.
const CREDENTIALS_HINT: &str = "its data-plane credentials come from GetAuthorizationToken";

/// The factory, to pass to `mirror_core::registry::open`.
pub fn factory() -> EcrFactory {
    EcrFactory
}

impl EcrFactory {
    /// The builder `open` would build: the environment (unless refused), the location, then
    /// the options.
    pub fn builder(
        &self,
        host: Option<&str>,
        prefix: Option<&str>,
        options: &OpenOptions,
    ) -> Result<EcrBuilder> {
        let mut b = if options.reads_env() {
            EcrBuilder::from_env()
        } else {
            EcrBuilder::new()
        };
        if let Some(h) = host.filter(|h| *h != "default") {
            b = b.registry_host(h);
        }
        if let Some(p) = options.prefix(prefix)? {
            b = b.repository_prefix(p);
        }
        for (k, v) in factory_options::<EcrConfigKey>(options, "ecr", CREDENTIALS_HINT)? {
            b = b.with_config(k, v);
        }
        Ok(b)
    }
}

#[async_trait]
impl RegistryFactory for EcrFactory {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["ecr"]
    }

    fn recognises(&self, host: &str) -> bool {
        naming::parse_registry_host(host).is_some()
    }

    async fn open(
        &self,
        host: Option<&str>,
        prefix: Option<&str>,
        options: &OpenOptions,
    ) -> Result<Arc<dyn Registry>> {
        Ok(Arc::new(
            self.builder(host, prefix, options)?.build().await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_options_reach_the_builder() {
        let f = factory();
        assert!(f.recognises("123456789012.dkr.ecr.eu-west-1.amazonaws.com"));
        assert!(!f.recognises("registry.example.com"));
        let b = f
            .builder(
                Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
                Some("team/mirror"),
                &OpenOptions::new()
                    .without_env()
                    .with("lifecycle_policy", "false"),
            )
            .unwrap();
        assert_eq!(
            b.get_config(EcrConfigKey::RegistryHost).as_deref(),
            Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::Prefix).as_deref(),
            Some("team/mirror")
        );
        assert_eq!(
            b.get_config(EcrConfigKey::LifecyclePolicy).as_deref(),
            Some("false")
        );
        let e = f
            .builder(
                None,
                None,
                &OpenOptions::new().without_env().with("project", "x"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"project\""), "{e}");
    }
}
