//! Registry clients trust the system's root certificates, loaded on the first TLS handshake
//! (`mirror_core::kit::store::http`'s lazy verifier): plain-HTTP requests never read them; a
//! registry whose certificate chains to a root of the system store (here `SSL_CERT_FILE`,
//! read the way the system store is) is trusted, one whose certificate does not is refused.
//! Its own binary: `SSL_CERT_FILE` is set for the whole process before the first client
//! exists, and whether the roots were read is a per-process fact.

use mirror_core::kit::store::http::{system_roots_loaded, RegistryClient};
use mirror_core::Error;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

#[tokio::test]
async fn plain_http_never_reads_the_roots_a_system_root_is_trusted_any_other_refused() {
    let (trusted_port, root_pem) = tests::tls::serve_raw_with_cert(|_| OK.to_vec()).await;
    let (other_port, _) = tests::tls::serve_raw_with_cert(|_| OK.to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("roots.pem");
    std::fs::write(&bundle, root_pem).unwrap();
    // SAFETY: set before any client or thread reads the environment in this process.
    unsafe { std::env::set_var("SSL_CERT_FILE", &bundle) };

    // Plain HTTP (the TLS test server answers both on one port): the roots stay unread.
    let plain_port = tests::tls::serve_dual(|_, _| Some(OK.to_vec())).await;
    RegistryClient::builder(&format!("localhost:{plain_port}"))
        .plain_http(true)
        .build()
        .unwrap()
        .ping()
        .await
        .expect("a plain-HTTP ping");
    assert!(
        !system_roots_loaded(),
        "a plain-HTTP request read the roots"
    );

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
    assert!(system_roots_loaded(), "the first handshake read the roots");
    let err = client(other_port).ping().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("certificate")),
        "a certificate of no system root is refused: {err:?}"
    );
    // The first (trusted) client loaded the roots; the second used them: still trusted.
    client(trusted_port).ping().await.expect("trusted again");
}
