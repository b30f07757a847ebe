//! ECR registries as image sources: [`EcrSources`] gives `mirror_core::Sources` a refreshing
//! credential provider for every `<account>.dkr.ecr.<region>.amazonaws.com` (any account,
//! any region), so that an application image kept in a customer's own ECR is mirrored with
//! the deployer's AWS identity and its 12-hour tokens renew in the middle of a long copy.
//!
//! Each region gets one token cache (`GetAuthorizationToken` of that region, the cache of
//! [`crate::credential`]): an ECR token is valid for every registry of its region that the
//! caller may pull from, other accounts' included (cross-account pulls need the other
//! account's repository policy to allow them, as for `docker pull`). Nothing is called before
//! the first pull; the AWS configuration (the SDK's default chain, a profile, or a given
//! [`SdkConfig`], for example one with an assumed role) is loaded then.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use mirror_core::provider::Origin;
use mirror_core::store::http::credentials::{CredentialProvider, ExpiringCredentials};
use mirror_core::SourceCredentials;
use tokio::sync::OnceCell;

use crate::builder::https_client;
use crate::client::EcrApi;
use crate::credential::{self, EcrCredentials};
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
#[derive(Clone, Default)]
pub struct EcrSources {
    sdk: Option<SdkConfig>,
    endpoint: Option<String>,
    hosts: HashMap<String, String>,
    regions: Arc<Mutex<HashMap<String, Arc<RegionTokens>>>>,
}

impl fmt::Debug for EcrSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrSources")
            .field("endpoint", &self.endpoint)
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl EcrSources {
    /// With the SDK's default credential chain and region resolution.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this AWS configuration (credentials, an assumed role, a profile).
    pub fn sdk_config(mut self, config: SdkConfig) -> Self {
        self.sdk = Some(config);
        self
    }

    /// The ECR API endpoint to call instead of the regional one (a VPC endpoint, an
    /// emulator).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Serves `host` too, a registry host not shaped like ECR's (a DNS alias, an emulator),
    /// whose tokens come from `region`.
    pub fn host(mut self, host: impl Into<String>, region: impl Into<String>) -> Self {
        self.hosts.insert(host.into(), region.into());
        self
    }

    fn region_of(&self, host: &str) -> Option<String> {
        self.hosts
            .get(host)
            .cloned()
            .or_else(|| naming::parse_registry_host(host).map(|(_, region)| region))
    }
}

impl SourceCredentials for EcrSources {
    fn provider_for(&self, host: &str) -> Option<Arc<dyn CredentialProvider>> {
        let region = self.region_of(host)?;
        let mut regions = self.regions.lock().ok()?;
        let tokens = regions
            .entry(region.clone())
            .or_insert_with(|| {
                Arc::new(RegionTokens {
                    region,
                    host: host.to_string(),
                    sdk: self.sdk.clone(),
                    endpoint: self.endpoint.clone(),
                    cache: OnceCell::new(),
                })
            })
            .clone();
        Some(tokens)
    }
}

/// The token cache of one region, built on first use.
struct RegionTokens {
    region: String,
    host: String,
    sdk: Option<SdkConfig>,
    endpoint: Option<String>,
    cache: OnceCell<EcrCredentials>,
}

impl fmt::Debug for RegionTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrSourceTokens")
            .field("region", &self.region)
            .finish()
    }
}

impl RegionTokens {
    async fn cache(&self) -> &EcrCredentials {
        self.cache
            .get_or_init(|| async {
                let sdk = match &self.sdk {
                    Some(c) => c.clone(),
                    None => {
                        aws_config::defaults(BehaviorVersion::latest())
                            .http_client(https_client())
                            .region(Region::new(self.region.clone()))
                            .load()
                            .await
                    }
                };
                let mut conf = aws_sdk_ecr::config::Builder::from(&sdk)
                    .region(Region::new(self.region.clone()));
                if let Some(e) = &self.endpoint {
                    conf = conf.endpoint_url(e);
                }
                if sdk.http_client().is_none() {
                    conf = conf.http_client(https_client());
                }
                let api = EcrApi::new(
                    aws_sdk_ecr::Client::from_conf(conf.build()),
                    None,
                    Origin::new(PROVIDER, &format!("ecr.{}", self.region)),
                );
                credential::credentials(format!("{PROVIDER}:{}", self.host), Arc::new(api))
            })
            .await
    }
}

#[async_trait]
impl CredentialProvider for RegionTokens {
    async fn credentials(&self) -> mirror_core::Result<ExpiringCredentials> {
        self.cache().await.credentials().await
    }

    fn invalidate(&self) {
        if let Some(c) = self.cache.get() {
            CredentialProvider::invalidate(c);
        }
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
