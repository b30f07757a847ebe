//! `mirror`: the command-line face of the library.
//!
//! ```text
//! cargo run --release --example mirror -- copy SRC DST [--platform os/arch]... [--concurrency N] [--json]
//! ```
//!
//! SRC and DST are `host[:port]/repo[:tag|@digest]` (a registry; loopback hosts speak plain
//! HTTP, others HTTPS) or `oci:PATH[:tag]` (an OCI image layout directory). Registry
//! credentials come from `--src-creds` / `--dest-creds USER:PASS`, else from the docker
//! `config.json` (`$DOCKER_CONFIG`, `~/.docker`), else anonymous.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::RegistryClient;
use mirror_core::store::layout::{parse_oci_location, LayoutStore};
use mirror_core::{CopyEvent, CopyOptions, ImageStore, PlatformFilter, Reference};

#[derive(Parser)]
#[command(
    name = "mirror",
    about = "Mirror container images between registries and OCI layouts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one image (all platforms of an index by default) from SRC to DST.
    Copy(CopyArgs),
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
}

/// An opened endpoint: a store and the tag or digest within it.
struct Endpoint {
    store: Box<dyn ImageStore>,
    reference: Option<String>,
}

fn creds(arg: &Option<String>) -> anyhow::Result<Option<Credentials>> {
    match arg {
        None => Ok(None),
        Some(s) => {
            let (u, p) = s.split_once(':').context("credentials must be USER:PASS")?;
            Ok(Some(Credentials::basic(u, p)))
        }
    }
}

fn open(
    spec: &str,
    create: bool,
    creds: Option<Credentials>,
    insecure: bool,
) -> anyhow::Result<Endpoint> {
    if spec.starts_with("oci:") {
        let (path, tag) = parse_oci_location(spec)?;
        let store = if create {
            LayoutStore::create(&path)?
        } else {
            LayoutStore::open(&path)?
        };
        return Ok(Endpoint {
            store: Box::new(store),
            reference: tag,
        });
    }
    let explicit_tag = {
        let name = spec.split('@').next().unwrap_or(spec);
        let last = name.rsplit('/').next().unwrap_or(name);
        last.contains(':') || spec.contains('@')
    };
    let r = Reference::parse(spec)?;
    let builder = RegistryClient::builder(r.registry()).tls_verify(!insecure);
    let builder = match creds {
        Some(c) => builder.credentials(c),
        None => builder.docker_config()?,
    };
    let client = builder.build()?;
    Ok(Endpoint {
        store: Box::new(client.repository(r.repository())?),
        reference: explicit_tag.then(|| r.manifest_reference()),
    })
}

async fn copy_cmd(args: CopyArgs) -> anyhow::Result<()> {
    let src = open(&args.src, false, creds(&args.src_creds)?, args.src_insecure)?;
    let dst = open(
        &args.dst,
        true,
        creds(&args.dest_creds)?,
        args.dest_insecure,
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
        }) as mirror_core::EventSink
    });
    let options = CopyOptions {
        platforms,
        concurrency: args.concurrency.max(1),
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MIRROR_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Copy(args) => copy_cmd(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
