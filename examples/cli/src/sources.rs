//! Source credentials from the command line: `--src-creds USER:PASS` and `--source-auth`.

use std::sync::Arc;

use anyhow::Context;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::Sources;

/// The cloud identities `--source-auth` names.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SourceAuth {
    Ecr,
    Gcp,
    Scaleway,
}

/// `sources` with the families `auth` names.
pub fn with_source_auth(mut sources: Sources, auth: &[SourceAuth]) -> anyhow::Result<Sources> {
    for a in auth {
        sources = match a {
            SourceAuth::Ecr => {
                sources.with_source_credentials(Arc::new(provider_aws::EcrSources::new()))
            }
            SourceAuth::Gcp => {
                sources.with_source_credentials(Arc::new(provider_gcp::GarSources::default_chain()))
            }
            SourceAuth::Scaleway => {
                let key = std::env::var("SCW_SECRET_KEY")
                    .context("--source-auth scaleway needs SCW_SECRET_KEY")?;
                sources.with_source_credentials(Arc::new(provider_scaleway::ScalewaySources::new(
                    &key,
                )))
            }
        };
    }
    Ok(sources)
}

/// `USER:PASS` as basic credentials.
pub fn creds(arg: &Option<String>) -> anyhow::Result<Option<Credentials>> {
    match arg {
        None => Ok(None),
        Some(s) => {
            let (u, p) = s.split_once(':').context("credentials must be USER:PASS")?;
            Ok(Some(Credentials::basic(u, p)))
        }
    }
}
