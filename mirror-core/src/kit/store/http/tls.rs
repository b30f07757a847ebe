//! The TLS configuration of every registry client: rustls with ring, trusting what reqwest
//! with `rustls-tls` and `rustls-tls-native-roots` trusts (the Mozilla roots of
//! `webpki-roots`, built in, and the system's roots), the system's read on the **first
//! handshake** instead of when a client is built.
//!
//! Loading the roots reads and parses every file of `/etc/ssl/certs` (hundreds of `stat`,
//! `open` and base64 decodes: several milliseconds, most of the CPU of a warm deploy against
//! a plain-HTTP registry). A client that never speaks TLS never pays it; one that does pays it
//! once per process. rustls has no lazy root store, so the verifier is ours: it builds
//! rustls's own WebPKI verifier on first use and hands every check to it.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The client configuration: certificates verified against the system's roots, or with
/// `verify` false (test registries only) accepted as they are, signatures still checked.
pub(super) fn client_config(verify: bool) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Verifier {
        provider: provider.clone(),
        check_chain: verify,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // reqwest speaks HTTP/2 where the server offers it, as it does with its own config.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

static LOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process has read the system's root certificates yet (they are read on the
/// first TLS handshake that verifies a certificate).
pub fn system_roots_loaded() -> bool {
    LOADED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The built-in and system roots, loaded once per process on first use.
fn system_roots(
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
    static VERIFIER: OnceLock<Result<Arc<WebPkiServerVerifier>, String>> = OnceLock::new();
    let loaded = VERIFIER.get_or_init(|| {
        LOADED.store(true, std::sync::atomic::Ordering::Relaxed);
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            let why = found
                .errors
                .first()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(format!(
                "no trusted root certificates found on this system{why}"
            ));
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("the system's root certificates cannot be used: {e}"))
    });
    loaded.clone().map_err(rustls::Error::General)
}

/// Verifies the chain against the system's roots, loaded on the first handshake; with
/// `check_chain` false (`tls_verify = false`, test registries) accepts any certificate. The
/// handshake signatures are checked either way (the peer holds the key of what it shows).
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    check_chain: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        system_roots(&self.provider)?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
