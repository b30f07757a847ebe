//! `mirror serve`: a read-only HTTP view of one mirror registry and cluster.
//!
//! | path | what |
//! |---|---|
//! | `/` | the page: repositories with their images, totals, a filter and sorting ([`page`]) |
//! | `/api/inventory` | the same as JSON: `mirror ls --json`'s object plus `refreshed_at` |
//! | `/metrics` | the Prometheus text format: the library's metrics (the inventory's storage totals among them) and the refresh's own |
//! | `/healthz` | `200 ok` when the last refresh succeeded and is recent, `503` with the reason otherwise |
//!
//! The inventory is taken by one background task, once per refresh interval and never two at
//! a time; requests are answered from the last one, so a page view costs the registry
//! nothing. Nothing the server renders comes from credentials: it shows what
//! [`Mirror::inventory`] returns.

pub mod page;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use mirror_core::{Inventory, Mirror};
use serde::Serialize;

/// Seconds the last inventory refresh took.
pub const REFRESH_SECONDS: &str = "mirror_serve_refresh_duration_seconds";
/// Inventory refreshes that failed.
pub const REFRESH_FAILURES: &str = "mirror_serve_refresh_failures_total";
/// When the last refresh succeeded (Unix seconds).
pub const LAST_REFRESH: &str = "mirror_serve_last_refresh_timestamp_seconds";

/// What the last refreshes found.
#[derive(Default)]
pub struct Snapshot {
    /// The last inventory taken (kept when a later refresh fails).
    pub inventory: Option<Arc<Inventory>>,
    /// When it was taken.
    pub refreshed_at: Option<SystemTime>,
    /// How long it took.
    pub took: Option<Duration>,
    /// Why the last refresh failed, when it did.
    pub error: Option<String>,
}

/// The server: a [`Mirror`], the last [`Snapshot`] and the metrics handle.
pub struct Server {
    mirror: Mirror,
    refresh: Duration,
    metrics: Option<PrometheusHandle>,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl Server {
    /// A server of `mirror`'s inventory, taken every `refresh`; `/metrics` renders `metrics`
    /// (404 without).
    pub fn new(mirror: Mirror, refresh: Duration, metrics: Option<PrometheusHandle>) -> Arc<Self> {
        Arc::new(Server {
            mirror,
            refresh,
            metrics,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
        })
    }

    /// The last snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The time one refresh may take: twice the interval, at least 30 s.
    fn refresh_timeout(&self) -> Duration {
        (self.refresh * 2).max(Duration::from_secs(30))
    }

    /// Takes one inventory now and keeps it (a failure keeps the previous one and says why).
    pub async fn refresh_once(&self) {
        let started = Instant::now();
        let result = tokio::time::timeout(self.refresh_timeout(), self.mirror.inventory()).await;
        let took = started.elapsed();
        metrics::gauge!(REFRESH_SECONDS).set(took.as_secs_f64());
        let previous = self.snapshot();
        let next = match result {
            Ok(Ok(inventory)) => {
                let now = SystemTime::now();
                let unix = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                metrics::gauge!(LAST_REFRESH).set(unix.as_secs_f64());
                Snapshot {
                    inventory: Some(Arc::new(inventory)),
                    refreshed_at: Some(now),
                    took: Some(took),
                    error: None,
                }
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!(
                        "the inventory took longer than {:?}",
                        self.refresh_timeout()
                    ),
                };
                tracing::warn!(%error, "inventory refresh failed");
                metrics::counter!(REFRESH_FAILURES).increment(1);
                Snapshot {
                    inventory: previous.inventory.clone(),
                    refreshed_at: previous.refreshed_at,
                    took: previous.took,
                    error: Some(error),
                }
            }
        };
        match self.snapshot.write() {
            Ok(mut s) => *s = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
    }

    /// Refreshes forever, one inventory per interval (the next starts an interval after the
    /// last one ended, so a slow registry is never asked twice at once).
    pub async fn refresh_forever(self: Arc<Self>) {
        loop {
            self.refresh_once().await;
            if let Some(m) = &self.metrics {
                m.run_upkeep();
            }
            tokio::time::sleep(self.refresh).await;
        }
    }

    /// The routes (see the module docs).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/", get(page_handler))
            .route("/api/inventory", get(api_inventory))
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(healthz))
            .with_state(self)
    }

    /// Serves on `listener` with the refresh task running, until the process is asked to stop
    /// (Ctrl-C or SIGTERM).
    /// If the refresh task ends (it only does by panicking), so does the server: a page that
    /// silently stopped refreshing would be worse than none.
    pub async fn run(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let mut refresher = tokio::spawn(self.clone().refresh_forever());
        let serve = axum::serve(listener, self.router()).with_graceful_shutdown(stop_signal());
        tokio::select! {
            served = serve => {
                refresher.abort();
                served
            }
            ended = &mut refresher => Err(std::io::Error::other(format!(
                "the inventory refresh task stopped: {}",
                match ended {
                    Err(e) => e.to_string(),
                    Ok(()) => "without an error".to_string(),
                }
            ))),
        }
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn page_handler(
    State(server): State<Arc<Server>>,
    Query(query): Query<page::PageQuery>,
) -> Html<String> {
    let snapshot = server.snapshot();
    Html(page::render(
        &snapshot,
        &query,
        server.refresh,
        SystemTime::now(),
    ))
}

#[derive(Serialize)]
struct ApiInventory<'a> {
    #[serde(flatten)]
    inventory: &'a Inventory,
    refreshed_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_error: Option<&'a str>,
}

async fn api_inventory(State(server): State<Arc<Server>>) -> Response {
    let snapshot = server.snapshot();
    let Some(inventory) = &snapshot.inventory else {
        let why = snapshot
            .error
            .clone()
            .unwrap_or_else(|| "the first inventory is being taken".to_string());
        let body = serde_json::json!({ "error": format!("no inventory yet: {why}") });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    };
    let body = ApiInventory {
        inventory,
        refreshed_at: unix_secs(snapshot.refreshed_at),
        refresh_error: snapshot.error.as_deref(),
    };
    axum::Json(body).into_response()
}

async fn metrics_handler(State(server): State<Arc<Server>>) -> Response {
    metrics_response(server.metrics.as_ref())
}

/// The `/metrics` answer (of this server and the webhook's): the Prometheus text of
/// `handle`, 404 without a recorder.
pub(crate) fn metrics_response(handle: Option<&PrometheusHandle>) -> Response {
    match handle {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics recorder\n").into_response(),
    }
}

async fn healthz(State(server): State<Arc<Server>>) -> Response {
    let snapshot = server.snapshot();
    // A refresh that should have finished long ago: the task is stuck or gone.
    let overdue = server.refresh + server.refresh_timeout() + Duration::from_secs(5);
    let age = snapshot
        .refreshed_at
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    match (&snapshot.inventory, &snapshot.error) {
        (Some(_), None) if age.is_some_and(|a| a > overdue) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the last inventory is {} s old\n",
                age.unwrap_or_default().as_secs()
            ),
        )
            .into_response(),
        (Some(_), None) => (StatusCode::OK, "ok\n").into_response(),
        (_, Some(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the last inventory refresh failed: {e}\n"),
        )
            .into_response(),
        (None, None) => not_yet(&snapshot),
    }
}

fn not_yet(snapshot: &Snapshot) -> Response {
    let why = match &snapshot.error {
        Some(e) => format!("no inventory yet: {e}\n"),
        None => "no inventory yet: the first refresh is under way\n".to_string(),
    };
    (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
}

fn unix_secs(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
