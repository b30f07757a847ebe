//! `mirror-webhook`: a mutating admission webhook that pins every pod's images to their
//! mirror copies (`mirror_core::admission`), served over HTTPS.
//!
//! ```text
//! cargo run --release -p mirror-cli --example mirror-webhook -- \
//!     --registry REG --cluster C [--retention 30d] [-o KEY=VALUE]... \
//!     --tls-cert /tls/tls.crt --tls-key /tls/tls.key [--tls-reload 10s] \
//!     [--listen 0.0.0.0:8443] [--probes-listen 0.0.0.0:8080] \
//!     [--budget 5s] [--strict] [--own-namespace NS] [--exclude-namespace NS]... \
//!     [--admit-kube-system] [--exclude-image PATTERN]... [--inject-pull-secret NAME] \
//!     [--pull-secrets] [KUBERNETES] [--source-auth ecr|gcp|scaleway]...
//! ```
//!
//! The first line on stdout is `serving https://ADDR` (tests and scripts read it with
//! `--listen 127.0.0.1:0`). Logs: `MIRROR_LOG=info` (one line per admission and per image),
//! `MIRROR_LOG_FORMAT=json` for JSON lines.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use mirror_cli::registry::{open_registry, with_discovery, RegistryArgs};
use mirror_cli::sources::{with_source_auth, SourceAuth};
use mirror_cli::webhook::tls::ReloadingCert;
use mirror_cli::webhook::{kube_client, serve_plain, stop_signal, Server};
use mirror_cli::KubernetesArgs;
use mirror_core::admission::{AdmissionConfig, AdmissionController, ImagePattern};
use mirror_core::kit::retry::RetryConfig;
use mirror_core::{ClusterStrategy, Mirror, Sources};

#[derive(Parser)]
#[command(
    name = "mirror-webhook",
    about = "A mutating admission webhook: every pod's images pinned to their mirror copies"
)]
struct Args {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Cluster mode's retention (what `sweep` uses; the webhook only copies and hands out).
    #[arg(long, default_value = "30d")]
    retention: humantime::Duration,
    /// Images handed out less than this ago are never deleted (their pods may be starting).
    #[arg(long, default_value = "10m")]
    eviction_grace: humantime::Duration,
    /// The HTTPS address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: std::net::SocketAddr,
    /// Also serve /healthz and /metrics over plain HTTP here.
    #[arg(long)]
    probes_listen: Option<std::net::SocketAddr>,
    /// The certificate chain (PEM), read again when it changes.
    #[arg(long)]
    tls_cert: std::path::PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    tls_key: std::path::PathBuf,
    /// How often the certificate files are looked at.
    #[arg(long, default_value = "10s")]
    tls_reload: humantime::Duration,
    /// How long an admission waits for a copy (at most 30s; the API server's `?timeout=`
    /// lowers it).
    #[arg(long, default_value = "5s")]
    budget: humantime::Duration,
    /// Deny pods whose images cannot be served from the mirror (air-gapped clusters).
    #[arg(long)]
    strict: bool,
    /// The webhook's own namespace, always excluded.
    #[arg(long, env = "POD_NAMESPACE")]
    own_namespace: Option<String>,
    /// Another namespace to leave alone (repeatable).
    #[arg(long = "exclude-namespace", value_name = "NS")]
    exclude_namespaces: Vec<String>,
    /// Rewrite pods of kube-system too.
    #[arg(long)]
    admit_kube_system: bool,
    /// Images to leave alone, `*` matching anything (repeatable): `registry.k8s.io/*`.
    #[arg(long = "exclude-image", value_name = "PATTERN")]
    exclude_images: Vec<String>,
    /// Mirror images of loopback hosts (for tests: a pod's localhost is its node's).
    #[arg(long, hide = true)]
    loopback_sources: bool,
    /// Add this pull secret (for the mirror registry) to rewritten pods.
    #[arg(long, value_name = "NAME")]
    inject_pull_secret: Option<String>,
    /// Read pods' imagePullSecrets (and their service accounts') through the Kubernetes API
    /// as their source credentials (needs KUBERNETES).
    #[arg(long)]
    pull_secrets: bool,
    /// Background lookups at once.
    #[arg(long, default_value_t = 32)]
    max_flights: usize,
    /// Reviews longer than this many bytes are answered unread.
    #[arg(long, default_value_t = mirror_core::admission::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Attempts per request to a source (the webhook answers within its budget anyway).
    #[arg(long, default_value_t = 3)]
    source_attempts: u32,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
    /// Pull from a cloud's registries with its own identity (repeatable), for every pod.
    #[arg(long = "source-auth", value_enum)]
    source_auth: Vec<SourceAuth>,
}

fn config(args: &Args) -> anyhow::Result<AdmissionConfig> {
    let mut config = AdmissionConfig::default()
        .with_budget(args.budget.into())
        .with_strict(args.strict)
        .with_kube_system(args.admit_kube_system)
        .with_loopback_sources(args.loopback_sources)
        .with_max_flights(args.max_flights)
        .with_source_retry(retry(args.source_attempts));
    config.max_body = args.max_body;
    if let Some(ns) = &args.own_namespace {
        config = config.with_own_namespace(ns);
    }
    for ns in &args.exclude_namespaces {
        config = config.with_excluded_namespace(ns);
    }
    for p in &args.exclude_images {
        config = config.with_excluded_image(ImagePattern::new(p)?);
    }
    if let Some(name) = &args.inject_pull_secret {
        config = config.with_pull_secret(name);
    }
    Ok(config)
}

fn retry(attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts: attempts.max(1),
        max_elapsed: Duration::from_secs(30),
        ..RetryConfig::default()
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.registry.json {
        bail!("mirror-webhook prints no JSON: /metrics and its logs say what it does");
    }
    if args.pull_secrets && kube_client(&args.kubernetes).await?.is_none() {
        bail!("--pull-secrets reads the Kubernetes API: add --kubernetes or --kubeconfig");
    }
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    let cert = ReloadingCert::load(&args.tls_cert, &args.tls_key)?;

    let registry = open_registry(&args.registry).await?;
    let sources = with_source_auth(Sources::new(), &args.source_auth)?
        .with_retry(retry(args.source_attempts));
    let mirror = Mirror::builder(registry, &args.registry.cluster)
        .strategy(Arc::new(ClusterStrategy::new(args.retention.into())))
        .eviction_grace(args.eviction_grace.into());
    let mirror = with_discovery(mirror, &args.kubernetes).await?.build()?;
    let mut controller = AdmissionController::builder(Arc::new(mirror))
        .config(config(&args)?)
        .sources(sources);
    if args.pull_secrets {
        if let Some(client) = kube_client(&args.kubernetes).await? {
            controller = controller.kubernetes(client);
        }
    }
    let controller = controller.build()?;
    let server = Server::new(controller, cert, Some(handle.clone()));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    if let Some(addr) = args.probes_listen {
        let probes = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let router = server.probes();
        tokio::spawn(async move {
            if let Err(e) = serve_plain(probes, router).await {
                tracing::error!(error = %e, "the probes' listener stopped");
            }
        });
    }
    // Idle gauges and the exporter's histogram buckets are kept small.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            handle.run_upkeep();
        }
    });
    println!("serving https://{}", listener.local_addr()?);
    server
        .run(listener, args.tls_reload.into(), stop_signal())
        .await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::from_env("MIRROR_LOG");
    if std::env::var("MIRROR_LOG_FORMAT").as_deref() == Ok("json") {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
