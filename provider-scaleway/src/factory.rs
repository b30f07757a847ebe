//! [`ScalewayFactory`]: Scaleway Container Registry for `mirror_core::registry::open`.
//!
//! | location | registry |
//! |---|---|
//! | `scaleway://<region>[/<prefix>]` (`fr-par`, `nl-ams`, `pl-waw`) | that region; `<prefix>` starts every namespace name |
//! | `scaleway://rg.<region>.scw.cloud[/<prefix>]`, or the host alone | the region of the host |
//! | `scaleway://[/<prefix>]` | the region from the options or `SCW_DEFAULT_REGION` |
//! | `scaleway://HOST[:PORT][/<prefix>]` (any other host) | a data-plane host override (an emulator); region from the options |
//!
//! Options are [`ScalewayConfigKey`]s (`secret_key`, `project_id`, `api_url`…, by key or
//! variable name), read after the `SCW_*` / `MIRROR_SCW_*` variables unless the options say
//! not to read the environment.

use std::sync::Arc;

use async_trait::async_trait;
use mirror_core::provider::config::factory_options;
use mirror_core::registry::{OpenOptions, RegistryFactory};
use mirror_core::{Registry, Result};

use crate::{naming, ScalewayBuilder, ScalewayConfigKey, PROVIDER};

/// Opens Scaleway registries for `mirror_core::registry::open` (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScalewayFactory;

/// What the `username`/`password` options (the CLI's `--registry-creds`) are told: the data
/// plane takes other credentials.
const CREDENTIALS_HINT: &str =
    "the data plane takes user nologin with the secret key; set SCW_SECRET_KEY";

/// The factory, to pass to `mirror_core::registry::open`.
pub fn factory() -> ScalewayFactory {
    ScalewayFactory
}

/// The region a host names: `rg.<region>.scw.cloud`.
fn region_of_host(host: &str) -> Option<&str> {
    host.strip_prefix("rg.")?
        .strip_suffix(".scw.cloud")
        .filter(|r| !r.is_empty() && !r.contains('.'))
}

impl ScalewayFactory {
    /// The builder `open` would build: the environment (unless refused), the location, then
    /// the options.
    pub fn builder(
        &self,
        host: Option<&str>,
        prefix: Option<&str>,
        options: &OpenOptions,
    ) -> Result<ScalewayBuilder> {
        let mut b = if options.reads_env() {
            ScalewayBuilder::from_env()
        } else {
            ScalewayBuilder::new()
        };
        match host {
            None | Some("default") => {}
            // A word without dot or port is a region (new regions need no new release).
            Some(h) if !h.contains('.') && !h.contains(':') => b = b.region(h),
            Some(h) => {
                if let Some(region) = region_of_host(h) {
                    b = b.region(region);
                }
                if naming::registry_host(region_of_host(h).unwrap_or("")) != h {
                    b = b.registry_host(h);
                }
            }
        }
        if let Some(p) = options.prefix(prefix)? {
            b = b.prefix(p);
        }
        for (k, v) in factory_options::<ScalewayConfigKey>(options, "scaleway", CREDENTIALS_HINT)? {
            b = b.with_config(k, v);
        }
        Ok(b)
    }
}

#[async_trait]
impl RegistryFactory for ScalewayFactory {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["scaleway", "scw"]
    }

    fn recognises(&self, host: &str) -> bool {
        region_of_host(host).is_some()
    }

    async fn open(
        &self,
        host: Option<&str>,
        prefix: Option<&str>,
        options: &OpenOptions,
    ) -> Result<Arc<dyn Registry>> {
        Ok(Arc::new(self.builder(host, prefix, options)?.build()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_options_reach_the_builder() {
        let f = factory();
        assert!(f.recognises("rg.nl-ams.scw.cloud"));
        assert!(!f.recognises("registry.example.com"));
        let o = OpenOptions::new().without_env().with("public", "true");
        let b = f
            .builder(Some("rg.nl-ams.scw.cloud"), Some("team"), &o)
            .unwrap();
        assert_eq!(
            b.get_config(ScalewayConfigKey::Region).as_deref(),
            Some("nl-ams")
        );
        assert_eq!(b.get_config(ScalewayConfigKey::RegistryHost), None);
        assert_eq!(
            b.get_config(ScalewayConfigKey::Prefix).as_deref(),
            Some("team")
        );
        assert_eq!(
            b.get_config(ScalewayConfigKey::Public).as_deref(),
            Some("true")
        );
        let b = f.builder(Some("pl-waw"), None, &o).unwrap();
        assert_eq!(
            b.get_config(ScalewayConfigKey::Region).as_deref(),
            Some("pl-waw")
        );
        let b = f.builder(Some("127.0.0.1:5000"), None, &o).unwrap();
        assert_eq!(
            b.get_config(ScalewayConfigKey::RegistryHost).as_deref(),
            Some("127.0.0.1:5000")
        );
        let e = f
            .builder(
                None,
                None,
                &OpenOptions::new().without_env().with("account", "1"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"account\""), "{e}");
    }
}
