//! `mirror`: the command-line face of the library.
//!
//! ```text
//! cargo run --release -p mirror-cli --example mirror -- copy SRC DST [--platform os/arch]... [--concurrency N] [--json]
//! ```
//!
//! ```text
//! mirror deploy --registry REG --cluster C --service S [--mode service|cluster]
//!               [--tag-policy verify|trust] [--keep-previous N] [--retention DURATION]
//!               [--in-use REF]... [KUBERNETES] SRC [--json]
//! mirror sweep  --registry REG --cluster C --retention DURATION [--in-use REF]... [KUBERNETES]
//!               [--dry-run] [--json]
//! mirror ls     --registry REG --cluster C [--retention DURATION] [KUBERNETES] [--json]
//! mirror serve  --registry REG --cluster C [--retention DURATION] [KUBERNETES]
//!               [--listen 127.0.0.1:8080] [--refresh 60s]
//!
//! KUBERNETES: --kubernetes | --kubeconfig PATH [--kube-context NAME]
//!             [--namespace NS]... [--selector LABELS]
//! ```
//!
//! REG is a registry location (see `mirror_core::registry::open`): `oci:PATH` (a directory of
//! OCI layouts), `host[:port][/prefix]` (any distribution registry, with `--registry-creds
//! USER:PASS`, else the docker config, else anonymous), `ecr://…` or
//! `<account>.dkr.ecr.<region>.amazonaws.com`, `gar://…` or `<location>-docker.pkg.dev/<project>`,
//! `scaleway://<region>` or `rg.<region>.scw.cloud`. Provider settings come from the
//! provider's environment variables and `--registry-option KEY=VALUE` (repeatable; the
//! provider's configuration keys), which win.
//!
//! SRC and DST are `host[:port]/repo[:tag|@digest]` (a registry; loopback hosts speak plain
//! HTTP, others HTTPS) or `oci:PATH[:tag]` (an OCI image layout directory). Registry
//! credentials come from `--src-creds` / `--dest-creds USER:PASS`, else from the docker
//! `config.json` (`$DOCKER_CONFIG`, `~/.docker`), else anonymous.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mirror_cli::registry::{open_registry, with_discovery, RegistryArgs};
use mirror_cli::show::{referrer_summary, time_string, use_summary};
use mirror_cli::sources::{creds, with_source_auth, SourceAuth};
use mirror_cli::KubernetesArgs;
use mirror_core::kit::image::referrers::ReferrerOptions;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::{Endpoint, EndpointOptions};
use mirror_core::{
    ClusterStrategy, CopyEvent, CopyOptions, Digest, Mirror, MirrorBuilder, MirrorStrategy,
    PlatformFilter, ServiceStrategy, Source, Sources, TagPolicy, Warning,
};

/// Mirror container images between registries and OCI layouts
#[derive(Parser)]
#[command(name = "mirror")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one image (all platforms of an index by default) from SRC to DST.
    Copy(CopyArgs),
    /// Mirror SRC for a service of a cluster and print the digest-pinned reference to deploy.
    Deploy(DeployArgs),
    /// Cluster mode: delete images older than the retention time that are not in use.
    Sweep(SweepArgs),
    /// List the cluster's repositories, images, tags, sizes and push times.
    Ls(LsArgs),
    /// Build a service's image from source unless already built (or built for a clone), push
    /// it to the service's build repository and print the digest-pinned reference to deploy.
    Build(BuildArgs),
    /// Serve a read-only web page, JSON and Prometheus metrics of the cluster's repositories
    /// (what `ls` shows), refreshed on an interval.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    ls: LsArgs,
    /// The address to listen on (loopback by default; `127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// How often the inventory is taken again (`60s`, `5m`).
    #[arg(long, default_value = "60s")]
    refresh: humantime::Duration,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    Service,
    Cluster,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Policy {
    Verify,
    Trust,
}

/// Referrer flags of `deploy` and `build` (on by default).
#[derive(clap::Args)]
struct ReferrerArgs {
    /// Do not copy the image's referrers (signatures, SBOMs, attestations).
    #[arg(long, conflicts_with = "referrer_types")]
    no_referrers: bool,
    /// Copy only referrers of this artifact type (repeatable), e.g.
    /// `application/vnd.dev.cosign.artifact.sig.v1+json`.
    #[arg(long = "referrer-type", value_name = "ARTIFACT_TYPE")]
    referrer_types: Vec<String>,
    /// When the image is already mirrored, still copy the referrers the source has gained
    /// since (a signature added after the first deploy). Costs a discovery at the source.
    #[arg(long, conflicts_with = "no_referrers")]
    refresh_referrers: bool,
}

impl ReferrerArgs {
    fn options(&self) -> ReferrerOptions {
        if self.no_referrers {
            ReferrerOptions::none()
        } else {
            ReferrerOptions {
                refresh_on_skip: self.refresh_referrers,
                ..ReferrerOptions::all().with_types(self.referrer_types.iter().cloned())
            }
        }
    }
}

#[derive(clap::Args)]
struct DeployArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// The service id.
    #[arg(long)]
    service: String,
    /// Service mode (a repository per service, evicts old images) or Cluster mode (one
    /// repository, retention time).
    #[arg(long, value_enum, default_value = "service")]
    mode: Mode,
    /// What to do when the tag is already mirrored.
    #[arg(long, value_enum, default_value = "verify")]
    tag_policy: Policy,
    /// Service mode: previous images kept for rollbacks.
    #[arg(long, default_value_t = 1)]
    keep_previous: usize,
    /// Cluster mode: retention time (`7d`, `36h`).
    #[arg(long, default_value = "30d")]
    retention: humantime::Duration,
    /// Images pushed less than this ago are never evicted (another deployer may use them).
    #[arg(long, default_value = "10m")]
    eviction_grace: humantime::Duration,
    /// Images in use (references or digests), never evicted. Repeatable.
    #[arg(long = "in-use")]
    in_use: Vec<String>,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
    /// Which referrers (signatures, SBOMs, attestations) travel with the image.
    #[command(flatten)]
    referrers: ReferrerArgs,
    /// Source credentials `USER:PASS` for the source registry.
    #[arg(long, env = "MIRROR_SRC_CREDS", hide_env_values = true)]
    src_creds: Option<String>,
    /// Authenticate pulls from a cloud's registries with its own identity: `ecr` (the AWS
    /// SDK chain, any `<account>.dkr.ecr.<region>.amazonaws.com`), `gcp` (the Google default
    /// chain, `*-docker.pkg.dev`, `gcr.io`), `scaleway` (`SCW_SECRET_KEY`,
    /// `rg.<region>.scw.cloud`). Repeatable; before the docker config, after --src-creds.
    #[arg(long = "source-auth", value_enum)]
    source_auth: Vec<SourceAuth>,
    /// The image to mirror: a reference or `oci:PATH[:tag]`.
    source: String,
}

#[derive(clap::Args)]
struct SweepArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Images older than this are deleted unless in use (`7d`, `36h`).
    #[arg(long)]
    retention: humantime::Duration,
    /// Images pushed or handed out by a deploy less than this ago are never deleted (their
    /// pods may be starting).
    #[arg(long, default_value = "10m")]
    grace: humantime::Duration,
    /// Images in use (references or digests), never deleted. Repeatable.
    #[arg(long = "in-use")]
    in_use: Vec<String>,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
    /// Only print the plan.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BuilderKind {
    Buildah,
    Buildx,
}

/// `mirror build --registry REG --cluster C --service S --context DIR [--dockerfile F]
/// [--target T] --commit SHA [--env K=V]... [--platform P]... [--builder buildah|buildx] [--json]`
#[derive(clap::Args)]
struct BuildArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// The service id.
    #[arg(long)]
    service: String,
    /// The build context: a clean checkout of `--commit`.
    #[arg(long)]
    context: std::path::PathBuf,
    /// The Dockerfile (default `Dockerfile` in the context; a relative path is relative to the
    /// current directory, as for `docker build -f`).
    #[arg(long)]
    dockerfile: Option<std::path::PathBuf>,
    /// The stage to build.
    #[arg(long)]
    target: Option<String>,
    /// The commit the context is a checkout of (part of the build key).
    #[arg(long)]
    commit: String,
    /// A build-arg candidate `K=V` (or `K`, taking the value from the environment); only the
    /// names the Dockerfile declares with `ARG` are used. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Target platform `os/arch[/variant]`; two or more build an index. Repeatable.
    #[arg(long = "platform")]
    platforms: Vec<String>,
    /// The build backend.
    #[arg(long, value_enum, default_value = "buildah")]
    builder: BuilderKind,
    /// Buildah: give the build its own storage, removed afterwards (only the remote cache is
    /// reused).
    #[arg(long)]
    ephemeral_storage: bool,
    /// Previous builds kept by eviction.
    #[arg(long, default_value_t = 1)]
    keep_previous: usize,
    /// Images pushed less than this ago are never evicted (another deployer may use them).
    #[arg(long, default_value = "10m")]
    eviction_grace: humantime::Duration,
    /// The build is killed after this long.
    #[arg(long, default_value = "1h")]
    timeout: humantime::Duration,
    /// Images in use (references or digests), never evicted. Repeatable.
    #[arg(long = "in-use")]
    in_use: Vec<String>,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
    /// Do not stream the build log to stderr.
    #[arg(long)]
    quiet: bool,
    /// Which referrers (signatures, SBOMs, attestations) travel with the image.
    #[command(flatten)]
    referrers: ReferrerArgs,
}

#[derive(clap::Args)]
struct LsArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Cluster mode's retention time, to show when each image of the cluster repository
    /// expires (`7d`, `36h`).
    #[arg(long)]
    retention: Option<humantime::Duration>,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
}

#[derive(clap::Args)]
struct CopyArgs {
    /// Source: `host[:port]/repo[:tag|@digest]` or `oci:PATH[:tag]`.
    src: String,
    /// Destination: `host[:port]/repo[:tag]` or `oci:PATH[:tag]`; the tag defaults to the
    /// source's.
    dst: String,
    /// Copy only these platforms of an index (`os/arch[/variant]`, repeatable).
    #[arg(long = "platform")]
    platforms: Vec<String>,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = mirror_core::copy::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Print the copy report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Source registry credentials `USER:PASS` (else docker config.json, else anonymous).
    #[arg(long, env = "MIRROR_SRC_CREDS", hide_env_values = true)]
    src_creds: Option<String>,
    /// Destination registry credentials `USER:PASS`.
    #[arg(long, env = "MIRROR_DEST_CREDS", hide_env_values = true)]
    dest_creds: Option<String>,
    /// Do not verify TLS certificates of the source registry.
    #[arg(long)]
    src_insecure: bool,
    /// Do not verify TLS certificates of the destination registry.
    #[arg(long)]
    dest_insecure: bool,
    /// Speak plain HTTP to the source registry (loopback hosts do by default).
    #[arg(long)]
    src_plain_http: bool,
    /// Speak plain HTTP to the destination registry (loopback hosts do by default).
    #[arg(long)]
    dest_plain_http: bool,
    /// Copy the image's referrers too (signatures, SBOMs, attestations), before its tag.
    #[arg(long)]
    referrers: bool,
    /// With `--referrers`: only referrers of this artifact type (repeatable).
    #[arg(
        long = "referrer-type",
        value_name = "ARTIFACT_TYPE",
        requires = "referrers"
    )]
    referrer_types: Vec<String>,
}

/// `spec` as a copy endpoint (`oci:PATH[:TAG]` or a reference).
fn open(
    spec: &str,
    create: bool,
    creds: Option<Credentials>,
    insecure: bool,
    plain_http: bool,
) -> anyhow::Result<Endpoint> {
    let mut options = EndpointOptions::default()
        .with_credentials(creds)
        .with_tls_verify(!insecure)
        .with_plain_http(plain_http);
    if create {
        options = options.creating();
    }
    Ok(Endpoint::open(spec, &options)?)
}

async fn copy_cmd(args: CopyArgs) -> anyhow::Result<()> {
    let src = open(
        &args.src,
        false,
        creds(&args.src_creds)?,
        args.src_insecure,
        args.src_plain_http,
    )?;
    let dst = open(
        &args.dst,
        true,
        creds(&args.dest_creds)?,
        args.dest_insecure,
        args.dest_plain_http,
    )?;
    let src_ref = src
        .reference
        .clone()
        .unwrap_or_else(|| "latest".to_string());
    let dst_ref = match (&dst.reference, &src.reference) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) if !s.contains(':') => s.clone(),
        (None, _) => bail!("{}: give the destination a tag", args.dst),
    };
    let platforms = args
        .platforms
        .iter()
        .map(|p| PlatformFilter::parse(p))
        .collect::<Result<Vec<_>, _>>()?;

    let bar = if std::io::stderr().is_terminal() && !args.json {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let events = bar.clone().map(|bar| {
        Arc::new(move |e: &CopyEvent| match e {
            CopyEvent::BlobStarted { size, .. } => bar.inc_length(*size),
            CopyEvent::BlobProgress { bytes, .. } => bar.inc(*bytes),
            CopyEvent::BlobDone { digest, action, .. } => {
                bar.set_message(format!("{} {:?}", digest.short(), action))
            }
            CopyEvent::ManifestPushed { reference, .. } => {
                bar.set_message(format!("manifest {reference}"))
            }
            CopyEvent::BlobRetry {
                digest, attempt, ..
            } => bar.set_message(format!("{} retry {attempt}", digest.short())),
        }) as mirror_core::EventSink
    });
    let options = CopyOptions {
        referrers: if args.referrers {
            ReferrerOptions::all().with_types(args.referrer_types.iter().cloned())
        } else {
            ReferrerOptions::none()
        },
        platforms,
        concurrency: {
            if args.concurrency > mirror_core::copy::MAX_CONCURRENCY {
                eprintln!(
                    "warning: --concurrency {} is more than {}; {} transfers run at once",
                    args.concurrency,
                    mirror_core::copy::MAX_CONCURRENCY,
                    mirror_core::copy::MAX_CONCURRENCY
                );
            }
            args.concurrency.max(1)
        },
        events,
        ..CopyOptions::default()
    };
    let report = mirror_core::copy(
        src.store.as_ref(),
        &src_ref,
        dst.store.as_ref(),
        &dst_ref,
        &options,
    )
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "copied {} -> {} {}: {} uploaded ({} bytes), {} mounted, {} skipped, {} manifests pushed{} in {:.2}s",
            report.source,
            report.destination,
            report.digest,
            report.blobs_uploaded,
            report.bytes_uploaded,
            report.blobs_mounted,
            report.blobs_skipped,
            report.manifests_pushed,
            if report.index_preserved { "" } else { " (platform-filtered: index not preserved)" },
            report.elapsed_ms as f64 / 1000.0
        );
    }
    Ok(())
}

/// Builds the mirror with the Kubernetes in-use source the flags describe, and resolves the
/// `--in-use` references.
async fn build_mirror(
    builder: MirrorBuilder,
    kubernetes: &KubernetesArgs,
    in_use: &[String],
) -> anyhow::Result<(Mirror, HashSet<Digest>)> {
    let mirror = with_discovery(builder, kubernetes).await?.build()?;
    let in_use = mirror.resolve_in_use(in_use).await?;
    Ok((mirror, in_use))
}

/// With `--json`, prints `report` as one JSON object on stdout and returns `false`; else
/// prints its warnings on stderr and returns `true`: the caller prints the text form.
fn print_json_or_warnings<T: serde::Serialize>(
    json: bool,
    report: &T,
    warnings: &[Warning],
) -> anyhow::Result<bool> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(false);
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(true)
}

async fn deploy_cmd(args: DeployArgs) -> anyhow::Result<()> {
    let registry = open_registry(&args.registry).await?;
    let strategy: Arc<dyn MirrorStrategy> = match args.mode {
        Mode::Service => Arc::new(ServiceStrategy {
            keep_previous: args.keep_previous,
        }),
        Mode::Cluster => Arc::new(ClusterStrategy::new(args.retention.into())),
    };
    let source = Source::parse(&args.source)?;
    // A command line reads the docker config, as docker and skopeo do.
    let mut sources = with_source_auth(Sources::new().with_docker_config(), &args.source_auth)?;
    if let (Some(c), Source::Registry(r)) = (creds(&args.src_creds)?, &source) {
        sources = sources.with_credentials(r.registry(), c);
    }
    let mirror = Mirror::builder(registry, &args.registry.cluster)
        .strategy(strategy)
        .tag_policy(match args.tag_policy {
            Policy::Verify => TagPolicy::Verify,
            Policy::Trust => TagPolicy::Trust,
        })
        .eviction_grace(args.eviction_grace.into())
        .sources(sources)
        .referrers(args.referrers.options());
    let (mirror, in_use) = build_mirror(mirror, &args.kubernetes, &args.in_use).await?;
    let d = mirror.mirror_with(&args.service, &source, &in_use).await?;
    if print_json_or_warnings(args.registry.json, &d, &d.warnings)? {
        println!(
            "{:?} {} -> {} ({} uploaded, {} bytes, {} mounted; {} referrers; {} evicted)",
            d.action,
            d.source,
            d.pull_reference,
            d.blobs_uploaded,
            d.bytes_uploaded,
            d.blobs_mounted,
            d.referrers.copied_total(),
            d.evicted.len()
        );
    }
    Ok(())
}

async fn sweep_cmd(args: SweepArgs) -> anyhow::Result<()> {
    let registry = open_registry(&args.registry).await?;
    let mirror = Mirror::builder(registry, &args.registry.cluster)
        .strategy(Arc::new(ClusterStrategy::new(args.retention.into())))
        .eviction_grace(args.grace.into());
    let (mirror, in_use) = build_mirror(mirror, &args.kubernetes, &args.in_use).await?;
    let report = mirror
        .sweep(std::time::SystemTime::now(), &in_use, args.dry_run)
        .await?;
    if !print_json_or_warnings(args.registry.json, &report, &report.warnings)? {
        return Ok(());
    }
    for plan in &report.plans {
        for img in &plan.delete {
            println!(
                "{} {}@{} {:?} pushed {}",
                if report.dry_run {
                    "would delete"
                } else {
                    "deleted"
                },
                plan.repository,
                img.digest,
                img.tags,
                time_string(img.pushed_at)
            );
        }
        println!(
            "{}: {} to delete, {} kept{}",
            plan.repository,
            plan.delete.len(),
            plan.keep.len(),
            if report.dry_run { " (dry run)" } else { "" }
        );
    }
    Ok(())
}

/// The mirror `ls` and `serve` look at.
async fn ls_mirror(args: &LsArgs) -> anyhow::Result<Mirror> {
    let registry = open_registry(&args.registry).await?;
    let mut mirror = Mirror::builder(registry, &args.registry.cluster);
    if let Some(r) = args.retention {
        mirror = mirror.strategy(Arc::new(ClusterStrategy::new(r.into())));
    }
    Ok(with_discovery(mirror, &args.kubernetes).await?.build()?)
}

async fn serve_cmd(args: ServeArgs) -> anyhow::Result<()> {
    if args.ls.registry.json {
        bail!("serve prints no JSON: its /api/inventory serves it");
    }
    let refresh: std::time::Duration = args.refresh.into();
    if refresh < std::time::Duration::from_secs(1)
        || refresh > std::time::Duration::from_secs(86_400)
    {
        bail!("--refresh must be between 1s and 1d");
    }
    // Gauges not set again for three refreshes (a repository that is gone) leave /metrics.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .idle_timeout(
            metrics_util::MetricKindMask::GAUGE,
            Some(refresh * 3 + std::time::Duration::from_secs(60)),
        )
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    let mirror = ls_mirror(&args.ls).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let server = mirror_cli::serve::Server::new(mirror, refresh, Some(handle));
    // The first line on stdout says where (tests and scripts read it with `--listen …:0`).
    println!("serving http://{}", listener.local_addr()?);
    server.run(listener).await?;
    Ok(())
}

async fn ls_cmd(args: LsArgs) -> anyhow::Result<()> {
    let mirror = ls_mirror(&args).await?;
    let inv = mirror.inventory().await?;
    if !print_json_or_warnings(args.registry.json, &inv, &inv.warnings)? {
        return Ok(());
    }
    println!("{} cluster {}", inv.registry, inv.cluster);
    for repo in &inv.repositories {
        println!(
            "{} ({} images{}, {} bytes stored)",
            repo.repository,
            repo.images.len(),
            if repo.build_cache {
                ", build cache"
            } else {
                ""
            },
            repo.stored_bytes
        );
        for img in &repo.images {
            println!(
                "  {}  {:>10}  pushed {}  {}{}{}",
                &img.digest.to_string()[..19],
                img.size
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                time_string(img.pushed_at),
                img.tags.join(", "),
                referrer_summary(img),
                use_summary(img)
            );
        }
    }
    Ok(())
}

async fn build_cmd(args: BuildArgs) -> anyhow::Result<()> {
    use mirror_core::{BuildEvent, BuildSpec, Builder};
    let registry = open_registry(&args.registry).await?;
    let mut spec = BuildSpec::new(&args.context, &args.commit)
        .with_platforms(args.platforms.iter().cloned())
        .with_keep_previous(args.keep_previous)
        .with_timeout(args.timeout.into());
    if let Some(df) = &args.dockerfile {
        // Relative to the current directory, as `docker build -f`.
        spec = spec.with_dockerfile(std::path::absolute(df)?);
    }
    if let Some(t) = &args.target {
        spec = spec.with_target(t.clone());
    }
    for e in &args.env {
        match e.split_once('=') {
            Some((k, v)) => spec = spec.with_env([(k, v)]),
            None => match std::env::var(e) {
                Ok(v) => spec = spec.with_env([(e.clone(), v)]),
                Err(_) => bail!("--env {e}: no such environment variable (write {e}=VALUE)"),
            },
        }
    }
    // The builder pushes with the credentials the mirror registry hands out
    // (`BuildCapability::builder_credentials`: --registry-creds, else the docker config for a
    // distribution registry, a provider's own token for a cloud registry).
    if !args.quiet {
        spec = spec.with_events(Arc::new(|e: &BuildEvent| match e {
            BuildEvent::Command { command } => eprintln!("+ {command}"),
            BuildEvent::Log { line, .. } => eprintln!("{line}"),
        }));
    }
    let builder: Box<dyn Builder> = match args.builder {
        BuilderKind::Buildah => {
            Box::new(mirror_core::Buildah::new().ephemeral_storage(args.ephemeral_storage))
        }
        BuilderKind::Buildx => Box::new(mirror_core::Buildx::new()),
    };
    let mirror = Mirror::builder(registry, &args.registry.cluster)
        .strategy(Arc::new(ServiceStrategy {
            keep_previous: args.keep_previous,
        }))
        .eviction_grace(args.eviction_grace.into())
        .referrers(args.referrers.options());
    let (mirror, in_use) = build_mirror(mirror, &args.kubernetes, &args.in_use).await?;
    let d = mirror
        .build_with(&args.service, &spec, builder.as_ref(), &in_use)
        .await?;
    if print_json_or_warnings(args.registry.json, &d, &d.warnings)? {
        println!(
            "{:?} {} -> {} ({} mounted, {} uploaded; {} referrers; {} evicted)",
            d.action,
            d.tag,
            d.pull_reference,
            d.blobs_mounted,
            d.blobs_uploaded,
            d.referrers.copied_total(),
            d.evicted.len()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MIRROR_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Copy(args) => copy_cmd(args).await,
        Command::Deploy(args) => deploy_cmd(args).await,
        Command::Sweep(args) => sweep_cmd(args).await,
        Command::Ls(args) => ls_cmd(args).await,
        Command::Build(args) => build_cmd(args).await,
        Command::Serve(args) => serve_cmd(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
