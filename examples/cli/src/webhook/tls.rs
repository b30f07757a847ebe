//! The webhook's certificate: read from two PEM files and read again when they change on
//! disk (cert-manager renews the Secret, the kubelet swaps the mounted files), so that a
//! rotated certificate is served without a restart. A pair that does not load (a key that
//! does not match, a file half written) is refused and the current one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// Certificate reloads, by `result` (`ok`, `failed`).
pub const CERT_RELOADS: &str = "mirror_webhook_certificate_reloads_total";

/// The current certificate and key, and where they come from.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, [u8; 32])>,
    /// Why the last reload failed, when it did.
    last_error: RwLock<Option<String>>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

impl ReloadingCert {
    /// Loads the pair (an error when it does not load).
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, key) = (read(cert_path)?, read(key_path)?);
        let certified = certified(&cert, &key, &provider).with_context(|| {
            format!("loading {} and {}", cert_path.display(), key_path.display())
        })?;
        Ok(Arc::new(ReloadingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new((Arc::new(certified), fingerprint(&cert, &key))),
            last_error: RwLock::new(None),
        }))
    }

    /// A rustls server configuration serving the current certificate (HTTP/2 and 1.1).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Reads both files; when their content changed, loads them. `Ok(true)`: a new pair is
    /// served from now on; an error keeps the current one.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let (cert, key) = (read(&self.cert_path)?, read(&self.key_path)?);
        let seen = fingerprint(&cert, &key);
        let unchanged = self.current.read().map(|c| c.1 == seen).unwrap_or(false);
        if unchanged {
            return Ok(false);
        }
        let certified = certified(&cert, &key, &self.provider)?;
        if let Ok(mut current) = self.current.write() {
            *current = (Arc::new(certified), seen);
        }
        Ok(true)
    }

    /// Why the last reload failed (`None` after a good one).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.read().ok().and_then(|e| e.clone())
    }

    /// Looks at the files every `every`, forever.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let result = self.reload_if_changed();
            let error = match &result {
                Ok(true) => {
                    tracing::info!(cert = %self.cert_path.display(), "certificate reloaded");
                    metrics::counter!(CERT_RELOADS, "result" => "ok").increment(1);
                    None
                }
                Ok(false) => None,
                Err(e) => {
                    tracing::warn!(
                        cert = %self.cert_path.display(),
                        error = format!("{e:#}"),
                        "the certificate files do not load; serving the previous pair"
                    );
                    metrics::counter!(CERT_RELOADS, "result" => "failed").increment(1);
                    Some(format!("{e:#}"))
                }
            };
            if let Ok(mut last) = self.last_error.write() {
                // A failure is kept until a good read, whether or not the content changed.
                if error.is_some() || result.is_ok() {
                    *last = error;
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}

fn fingerprint(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

/// A certificate chain and its key from PEM, checked to belong together.
fn certified(cert: &[u8], key: &[u8], provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate file is not PEM")?;
    anyhow::ensure!(
        !chain.is_empty(),
        "the certificate file holds no certificate"
    );
    let key = PrivateKeyDer::from_pem_slice(key).context("the key file holds no private key")?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| anyhow::anyhow!("the key does not go with the certificate: {e}"))
}
