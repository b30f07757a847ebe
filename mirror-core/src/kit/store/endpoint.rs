//! One store from a location string, as a command line names copy endpoints:
//! `oci:PATH[:TAG]` (a layout) or an image reference (`host/repo:tag`, `repo@sha256:…`).

use std::sync::Arc;

use crate::error::Result;
use crate::reference::Reference;
use crate::store::http::credentials::Credentials;
use crate::store::http::RegistryClient;
use crate::store::layout::{parse_oci_location, LayoutStore};
use crate::store::ImageStore;

/// How [`Endpoint::open`] opens a location.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointOptions {
    /// Create a layout that does not exist yet (a destination).
    pub create: bool,
    /// Registry credentials; `None`: the docker `config.json`, when `docker_config` is set,
    /// else anonymous.
    pub credentials: Option<Credentials>,
    /// Read the docker `config.json` when no credentials are given (default true).
    pub docker_config: bool,
    /// Verify the registry's TLS certificate (default true).
    pub tls_verify: bool,
    /// Speak plain HTTP to the registry (default false; loopback hosts always may).
    pub plain_http: bool,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            create: false,
            credentials: None,
            docker_config: true,
            tls_verify: true,
            plain_http: false,
        }
    }
}

impl EndpointOptions {
    /// Creates a missing layout (a destination).
    pub fn creating(mut self) -> Self {
        self.create = true;
        self
    }

    /// With these credentials.
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// With TLS verification on or off.
    pub fn with_tls_verify(mut self, verify: bool) -> Self {
        self.tls_verify = verify;
        self
    }

    /// With plain HTTP forced on or off.
    pub fn with_plain_http(mut self, plain: bool) -> Self {
        self.plain_http = plain;
        self
    }
}

/// An opened location: its store and the tag or digest it names, if it names one.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The store.
    pub store: Arc<dyn ImageStore>,
    /// The tag or digest the location named (`None`: none was written).
    pub reference: Option<String>,
}

impl Endpoint {
    /// Opens `location`: `oci:PATH[:TAG]` as a layout (created with
    /// [`EndpointOptions::create`]), anything else as an image reference in a registry. A
    /// reference written without tag or digest names none (`reference` is `None`). Reads
    /// files (the layout, the docker config): call it where blocking is fine.
    pub fn open(location: &str, options: &EndpointOptions) -> Result<Endpoint> {
        if location.starts_with("oci:") {
            let (path, tag) = parse_oci_location(location)?;
            let store = if options.create {
                LayoutStore::create(&path)?
            } else {
                LayoutStore::open(&path)?
            };
            return Ok(Endpoint {
                store: Arc::new(store),
                reference: tag,
            });
        }
        let explicit = {
            let name = location.split('@').next().unwrap_or(location);
            let last = name.rsplit('/').next().unwrap_or(name);
            last.contains(':') || location.contains('@')
        };
        let r = Reference::parse(location)?;
        let mut builder = RegistryClient::builder(r.registry()).tls_verify(options.tls_verify);
        if options.plain_http {
            builder = builder.plain_http(true);
        }
        let builder = match (&options.credentials, options.docker_config) {
            (Some(c), _) => builder.credentials(c.clone()),
            (None, true) => builder.docker_config()?,
            (None, false) => builder,
        };
        Ok(Endpoint {
            store: Arc::new(builder.build()?.repository(r.repository())?),
            reference: explicit.then(|| r.manifest_reference()),
        })
    }
}
