//! `mirror-webhook`: the mutating admission webhook, served over HTTPS.
//!
//! | path | what |
//! |---|---|
//! | `POST /mutate` | an `AdmissionReview` of a Pod in, the answer out ([`AdmissionController::review`]); the API server's `?timeout=` lowers the budget |
//! | `/healthz` | `200 ok` while the server runs (the last certificate reload's failure is said, the previous pair still served) |
//! | `/metrics` | the Prometheus text format: admissions by outcome, their latency, lookups and copies started, the library's registry metrics, certificate reloads |
//!
//! TLS with rustls; the certificate and key are read again when they change on disk
//! ([`tls::ReloadingCert`]). `/healthz` and `/metrics` can also be served over plain HTTP on
//! another address, for probes and scrapers that do not speak the webhook's TLS.

pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use mirror_core::admission::AdmissionController;

use self::tls::ReloadingCert;

/// How long a client has for its TLS handshake and for sending a review.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook server: the admission controller, the certificate, the metrics handle.
pub struct Server {
    controller: AdmissionController,
    cert: Arc<ReloadingCert>,
    metrics: Option<PrometheusHandle>,
}

impl Server {
    /// A server of `controller` with `cert`; `/metrics` renders `metrics` (404 without).
    pub fn new(
        controller: AdmissionController,
        cert: Arc<ReloadingCert>,
        metrics: Option<PrometheusHandle>,
    ) -> Arc<Self> {
        Arc::new(Server {
            controller,
            cert,
            metrics,
        })
    }

    /// The controller.
    pub fn controller(&self) -> &AdmissionController {
        &self.controller
    }

    /// `POST /mutate`, `/healthz`, `/metrics`.
    pub fn router(self: &Arc<Self>) -> Router {
        Self::probe_routes()
            .route("/mutate", post(mutate))
            .with_state(self.clone())
    }

    /// `/healthz` and `/metrics` alone (the plain-HTTP listener).
    pub fn probes(self: &Arc<Self>) -> Router {
        Self::probe_routes().with_state(self.clone())
    }

    fn probe_routes() -> Router<Arc<Self>> {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_handler))
    }

    /// Serves HTTPS on `listener` (the certificate watched every `reload`) until `stop`
    /// completes; then stops accepting and gives the connections under way the budget and a
    /// second to finish.
    pub async fn run(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        reload: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(self.cert.server_config()?));
        let watcher = tokio::spawn(self.cert.clone().watch(reload));
        let router = self.router();
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(stop);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut stop => break,
            };
            // Answers are small writes (HTTP/2 frames): without this, Nagle's algorithm holds
            // the last one until the client's delayed ACK, 40 ms later.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "TCP_NODELAY");
            }
            let acceptor = acceptor.clone();
            let router = router.clone();
            let watch = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let service = TowerToHyperService::new(router);
                let conn = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .into_owned();
                if let Err(e) = watch.watch(conn).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        watcher.abort();
        let grace = self.controller.config().budget + Duration::from_secs(1);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {grace:?}; closing them");
        }
        Ok(())
    }
}

/// The API server's `?timeout=10s`.
#[derive(serde::Deserialize)]
struct MutateQuery {
    timeout: Option<String>,
}

async fn mutate(
    State(server): State<Arc<Server>>,
    Query(query): Query<MutateQuery>,
    body: Body,
) -> Response {
    let api_timeout = query
        .timeout
        .as_deref()
        .and_then(|t| humantime::parse_duration(t).ok());
    let max = server.controller.config().max_body;
    // Read at most one byte more than the limit: a longer review is answered from what was
    // read (its uid), without holding the rest.
    let mut read = Vec::new();
    let mut stream = body.into_data_stream();
    let reading = async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    let room = (max + 1).saturating_sub(read.len());
                    read.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    if read.len() > max {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(CLIENT_TIMEOUT, reading).await {
        Ok(Ok(())) => {}
        // The body broke off or never came: answer what was read (malformed).
        Ok(Err(e)) => tracing::debug!(error = %e, "the review's body broke off"),
        Err(_) => tracing::debug!("the review's body did not come in time"),
    }
    let answer = server.controller.review(&read, api_timeout).await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_json(),
    )
        .into_response()
}

async fn healthz(State(server): State<Arc<Server>>) -> Response {
    match server.cert.last_error() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(e) => (
            StatusCode::OK,
            format!("ok; the last certificate reload failed (the previous pair is served): {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics_handler(State(server): State<Arc<Server>>) -> Response {
    crate::serve::metrics_response(server.metrics.as_ref())
}

/// Serves `router` over plain HTTP on `listener` (the probes' address).
pub async fn serve_plain(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A kube client for the pods' pull secrets, from the `KUBERNETES` flags (`None` without).
pub async fn kube_client(args: &crate::KubernetesArgs) -> anyhow::Result<Option<kube::Client>> {
    if !args.kubernetes && args.kubeconfig.is_none() && args.kube_context.is_none() {
        return Ok(None);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = kube::config::KubeConfigOptions {
        context: args.kube_context.clone(),
        ..Default::default()
    };
    let config = match (&args.kubeconfig, &args.kube_context) {
        (Some(path), _) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
        (None, None) => kube::Config::infer().await?,
    };
    Ok(Some(kube::Client::try_from(config)?))
}
