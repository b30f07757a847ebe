//! A minimal HTTPS server for tests: a self-signed certificate for `localhost` and
//! `127.0.0.1`, one request per connection, answered with the bytes a closure returns for its
//! request line.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves HTTPS on 127.0.0.1 and returns the port. `respond` gets the request line
/// (`GET /v2/ HTTP/1.1`) and returns the whole raw answer (status line, headers, body).
pub async fn serve_raw<F>(respond: F) -> u16
where
    F: Fn(&str) -> Vec<u8> + Send + Sync + 'static,
{
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("a TLS server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let respond = respond.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = vec![0u8; 16 * 1024];
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let line = text.lines().next().unwrap_or("").to_string();
                    let _ = tls.write_all(&respond(&line)).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    port
}
