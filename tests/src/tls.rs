//! A minimal HTTPS server for tests: a self-signed certificate for `localhost` and
//! `127.0.0.1`, one request per connection, answered with the bytes a closure returns for its
//! request line. [`serve_dual`] answers TLS and plain HTTP on one port (it looks at the first
//! byte: 0x16 opens a TLS handshake), for redirects that change only the scheme.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves HTTPS on 127.0.0.1 and returns the port. `respond` gets the request as read (its
/// request line `GET /v2/ HTTP/1.1` first, then the headers) and returns the whole raw answer
/// (status line, headers, body).
pub async fn serve_raw<F>(respond: F) -> u16
where
    F: Fn(&str) -> Vec<u8> + Send + Sync + 'static,
{
    serve(
        move |line: &str, tls: bool| {
            if tls {
                Some(respond(line))
            } else {
                None
            }
        },
    )
    .await
}

/// [`serve_raw`], also returning the server's self-signed certificate as PEM (to make it a
/// trusted root).
pub async fn serve_raw_with_cert<F>(respond: F) -> (u16, String)
where
    F: Fn(&str) -> Vec<u8> + Send + Sync + 'static,
{
    serve_with_cert(move |line: &str, tls: bool| tls.then(|| respond(line))).await
}

/// Serves TLS and plain HTTP on one 127.0.0.1 port and returns it. `respond` gets the request
/// as read and whether it came over TLS; `None` closes the connection unanswered.
pub async fn serve_dual<F>(respond: F) -> u16
where
    F: Fn(&str, bool) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    serve(respond).await
}

async fn serve<F>(respond: F) -> u16
where
    F: Fn(&str, bool) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    serve_with_cert(respond).await.0
}

async fn serve_with_cert<F>(respond: F) -> (u16, String)
where
    F: Fn(&str, bool) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a self-signed certificate");
    let pem = cert.cert.pem();
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
                let mut first = [0u8; 1];
                if tcp.peek(&mut first).await.unwrap_or(0) == 0 {
                    return;
                }
                if first[0] == 0x16 {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        answer(&mut tls, true, &*respond).await;
                    }
                } else {
                    let mut tcp = tcp;
                    answer(&mut tcp, false, &*respond).await;
                }
            });
        }
    });
    (port, pem)
}

async fn answer<S, F>(stream: &mut S, tls: bool, respond: &F)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    F: Fn(&str, bool) -> Option<Vec<u8>>,
{
    let mut buf = vec![0u8; 16 * 1024];
    let n = stream.read(&mut buf).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    if let Some(bytes) = respond(&head, tls) {
        let _ = stream.write_all(&bytes).await;
    }
    let _ = stream.shutdown().await;
}
