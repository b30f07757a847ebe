//! Registry clients trust the system's root certificates, loaded on the first TLS handshake
//! (`mirror_core::store::http`'s lazy verifier): a registry whose certificate chains to a root
//! of the system store (here `SSL_CERT_FILE`, read the way the system store is) is trusted,
//! one whose certificate does not is refused. Its own binary: `SSL_CERT_FILE` is set for the
//! whole process before the first client exists.

use mirror_core::store::http::RegistryClient;
use mirror_core::Error;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

#[tokio::test]
async fn a_certificate_of_a_system_root_is_trusted_and_any_other_refused() {
    let (trusted_port, root_pem) = tests::tls::serve_raw_with_cert(|_| OK.to_vec()).await;
    let (other_port, _) = tests::tls::serve_raw_with_cert(|_| OK.to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("roots.pem");
    std::fs::write(&bundle, root_pem).unwrap();
    // SAFETY: set before any client or thread reads the environment in this process.
    unsafe { std::env::set_var("SSL_CERT_FILE", &bundle) };

    let client = |port: u16| {
        RegistryClient::builder(&format!("localhost:{port}"))
            .plain_http(false)
            .build()
            .unwrap()
    };
    client(trusted_port)
        .ping()
        .await
        .expect("a certificate issued by a system root is trusted");
    let err = client(other_port).ping().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("certificate")),
        "a certificate of no system root is refused: {err:?}"
    );
    // The first (trusted) client loaded the roots; the second used them: still trusted.
    client(trusted_port).ping().await.expect("trusted again");
}
