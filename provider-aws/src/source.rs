//! ECR registries as image sources: [`EcrSources`] gives `mirror_core::Sources` refreshing
//! credentials for every `<account>.dkr.ecr.<region>.amazonaws.com` (any account, any
//! region), so that an application image kept in a customer's ECR is mirrored with the
//! deployer's AWS identity and its 12-hour tokens renew in the middle of a long copy.
//!
//! Each region gets one token cache (`GetAuthorizationToken` of that region, policy of
//! [`crate::credential`]): an ECR token is valid for every registry of its region the caller
//! may pull from, other accounts' included (their repository policy must allow it, as for
//! `docker pull`). Nothing is called, and no AWS configuration loaded, before the first pull.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;
use mirror_core::kit::provider::{Origin, SourceCaches, TokenSource};
use mirror_core::kit::store::http::credentials::CredentialProvider;
use mirror_core::SourceCredentials;

use crate::client::EcrApi;
use crate::config::{load_sdk, sdk_client};
use crate::credential::{AuthToken, POLICY};
use crate::{naming, PROVIDER};

/// Credentials for ECR registries as sources (see the [module docs](self)).
///
/// ```no_run
/// use std::sync::Arc;
/// use mirror_core::Sources;
/// use provider_aws::EcrSources;
///
/// // Pull from any ECR registry the deployer's AWS identity may read.
/// let sources = Sources::new().with_source_credentials(Arc::new(EcrSources::new()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct EcrSources {
    sdk: Option<SdkConfig>,
    endpoint: Option<String>,
    hosts: HashMap<String, String>,
    caches: Arc<OnceLock<SourceCaches<AuthToken>>>,
}

impl EcrSources {
    /// With the SDK's default credential chain and region resolution.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this AWS configuration (credentials, an assumed role, a profile).
    pub fn sdk_config(self, config: SdkConfig) -> Self {
        EcrSources {
            sdk: Some(config),
            caches: Arc::default(),
            ..self
        }
    }

    /// The ECR API endpoint to call instead of the regional one (a VPC endpoint, an
    /// emulator).
    pub fn endpoint(self, url: impl Into<String>) -> Self {
        EcrSources {
            endpoint: Some(url.into()),
            caches: Arc::default(),
            ..self
        }
    }

    /// Serves `host` too, a registry host not shaped like ECR's (a DNS alias, an emulator),
    /// whose tokens come from `region`.
    pub fn host(mut self, host: impl Into<String>, region: impl Into<String>) -> Self {
        self.hosts.insert(host.into(), region.into());
        self
    }

    /// The caches, made with the configuration as it is at the first pull.
    fn caches(&self) -> &SourceCaches<AuthToken> {
        self.caches.get_or_init(|| {
            let (sdk, endpoint) = (self.sdk.clone(), self.endpoint.clone());
            SourceCaches::new(PROVIDER, POLICY, move |region: String| {
                let (sdk, endpoint) = (sdk.clone(), endpoint.clone());
                async move {
                    let sdk = match sdk {
                        Some(c) => c,
                        None => load_sdk(Some(&region), None, None).await,
                    };
                    let client = sdk_client(&sdk, &region, endpoint.as_deref());
                    let origin = Origin::new(PROVIDER, &format!("ecr.{region}"));
                    Ok(Arc::new(EcrApi::new(client, None, origin))
                        as Arc<dyn TokenSource<Token = AuthToken>>)
                }
            })
        })
    }
}

impl SourceCredentials for EcrSources {
    fn provider_for(&self, host: &str) -> Option<Arc<dyn CredentialProvider>> {
        let region = self.hosts.get(host).cloned();
        let region = region.or_else(|| naming::parse_registry_host(host).map(|(_, r)| r))?;
        self.caches().provider_for(&region, host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_ecr_host_is_served_and_others_are_not() {
        let s = EcrSources::new().host("127.0.0.1:5000", "eu-west-1");
        assert!(s
            .provider_for("123456789012.dkr.ecr.us-east-2.amazonaws.com")
            .is_some());
        assert!(s
            .provider_for("210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn")
            .is_some());
        assert!(s.provider_for("127.0.0.1:5000").is_some());
        assert!(s.provider_for("ghcr.io").is_none());
        assert!(s
            .provider_for("12345.dkr.ecr.us-east-2.amazonaws.com")
            .is_none());
        // One token cache per region, shared by the accounts of that region.
        let a = s
            .provider_for("123456789012.dkr.ecr.us-east-2.amazonaws.com")
            .unwrap();
        let b = s
            .provider_for("210987654321.dkr.ecr.us-east-2.amazonaws.com")
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
