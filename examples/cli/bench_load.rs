//! Load benchmark (run by hand, not a test):
//!
//! ```text
//! cargo run --release -p mirror-cli --example bench_load [-- CALLS IMAGES SERVICES LAYER_KIB]
//! ```
//!
//! Starts two real distribution registries on 127.0.0.1, pushes IMAGES distinct images (3
//! layers of LAYER_KIB KiB each) to the source, then runs CALLS concurrent `Mirror::mirror`
//! calls spread over SERVICES service repositories (Service mode), and again into one cluster
//! repository (Cluster mode). Prints wall time, throughput, peak RSS of this process and how
//! many times each blob was uploaded to the destination. Defaults: 200 20 50 512.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{LayerCompression, TestImage, TestRegistry};
use mirror_core::{
    ClusterStrategy, GenericRegistry, Mirror, MirrorStrategy, ServiceStrategy, Source,
};

fn peak_rss_kib() -> u64 {
    mirror_cli::proc_status_kib("self", "VmHWM:")
}

/// Completed blob uploads per digest (as the URL writes it), from the destination's access
/// log: each `PUT …/blobs/uploads/…?digest=…` answered 201.
fn uploads(reg: &TestRegistry) -> HashMap<String, usize> {
    let log = reg.log();
    let completed = log.lines().filter(|l| {
        ["\"PUT ", "/blobs/uploads/", "\" 201 "]
            .iter()
            .all(|part| l.contains(part))
    });
    let mut out = HashMap::new();
    for (_, rest) in completed.filter_map(|l| l.split_once("digest=")) {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '%'))
            .unwrap_or(rest.len());
        *out.entry(rest[..end].to_string()).or_insert(0) += 1;
    }
    out
}

async fn run(
    label: &str,
    strategy: Arc<dyn MirrorStrategy>,
    src: &TestRegistry,
    images: &[TestImage],
    calls: usize,
    services: usize,
) -> anyhow::Result<String> {
    let dst = TestRegistry::start();
    let registry = Arc::new(GenericRegistry::new(RegistryClient::new(
        &dst.host(),
        Credentials::Anonymous,
    )?));
    let mirror = Arc::new(
        Mirror::builder(registry, "load")
            .strategy(strategy)
            .eviction_grace(Duration::from_secs(3600))
            .build()?,
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..calls {
        let mirror = mirror.clone();
        let img = i % images.len();
        let service = format!("svc{}", i % services);
        let source = Source::parse(&format!("{}/lib/app:v{img}", src.host()))?;
        tasks.push(tokio::spawn(async move {
            (img, mirror.mirror(&service, &source).await)
        }));
    }
    let mut bytes = 0u64;
    let mut mounted = 0usize;
    for t in tasks {
        let (img, r) = t.await?;
        let d = r?;
        anyhow::ensure!(
            &d.digest == images[img].digest(),
            "wrong digest for image {img}"
        );
        bytes += d.bytes_uploaded;
        mounted += d.blobs_mounted;
    }
    let wall = started.elapsed();
    let ups = uploads(&dst);
    let distinct: usize = images.iter().map(|i| i.blobs().len()).sum();
    let max_per_blob = ups.values().copied().max().unwrap_or(0);
    Ok(format!(
        "| {label} | {calls} | {:.2} | {:.1} | {:.1} | {} | {} / {} | {} | {} |",
        wall.as_secs_f64(),
        calls as f64 / wall.as_secs_f64(),
        bytes as f64 / 1048576.0 / wall.as_secs_f64(),
        mounted,
        ups.len(),
        distinct,
        max_per_blob,
        peak_rss_kib() / 1024
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let calls = *args.first().unwrap_or(&200);
    let n_images = *args.get(1).unwrap_or(&20);
    let services = *args.get(2).unwrap_or(&50);
    let layer_kib = *args.get(3).unwrap_or(&512) as u64;
    let src = TestRegistry::start();
    let store = RegistryClient::new(&src.host(), Credentials::Anonymous)?.repository("lib/app")?;
    let mut images = Vec::new();
    for i in 0..n_images {
        let img = TestImage::builder()
            .seed(5000 + i as u64)
            .layers([layer_kib * 1024, layer_kib * 512, layer_kib * 256])
            .compression(LayerCompression::Stored)
            .build();
        img.push(&store, &format!("v{i}")).await?;
        images.push(img);
    }
    let total: u64 = images
        .iter()
        .flat_map(|i| i.blobs())
        .map(|b| b.size())
        .sum();
    println!(
        "{calls} concurrent mirror calls, {n_images} images ({:.1} MiB of blobs), {services} services, {} cores",
        total as f64 / 1048576.0,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("| mode | calls | wall (s) | calls/s | MiB/s uploaded | blobs mounted | distinct blobs uploaded / total | max uploads of one blob | peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "{}",
        run(
            "service",
            Arc::new(ServiceStrategy { keep_previous: 5 }),
            &src,
            &images,
            calls,
            services
        )
        .await?
    );
    println!(
        "{}",
        run(
            "cluster",
            Arc::new(ClusterStrategy::new(Duration::from_secs(86400))),
            &src,
            &images,
            calls,
            services
        )
        .await?
    );
    Ok(())
}
