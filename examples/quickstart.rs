//! Quickstart: the whole mirroring story offline, with no server.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! A sample image is written into a source OCI layout; the "mirror registry" is a directory of
//! OCI layouts ([`LayoutRegistry`]). The same calls work against any registry
//! ([`mirror_core::GenericRegistry`]) or a cloud provider's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mirror_core::kit::image::referrers::{cosign_tag, ReferrerKind};
use mirror_core::kit::store::layout::LayoutStore;
use mirror_core::testing::{TestArtifact, TestImage};
use mirror_core::{ClusterStrategy, Deployment, LayoutRegistry, Mirror, ServiceStrategy, Source};

fn show(step: &str, d: &Deployment) {
    println!(
        "  {step:<28} {:<9} {}  (uploaded {} blobs / {} bytes, {} referrers, evicted {})",
        format!("{:?}", d.action),
        d.pull_reference.rsplit('/').next().unwrap_or(""),
        d.blobs_uploaded,
        d.bytes_uploaded,
        d.referrers.copied_total(),
        d.evicted.len()
    );
    for w in &d.warnings {
        println!("  {:<28} warning: {w}", "");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let work = tempfile_dir()?;
    let src = work.join("source");
    let registry = Arc::new(LayoutRegistry::new(work.join("mirror")));
    println!("source layout:   {}", src.display());
    println!("mirror registry: {}", registry.root().display());

    // Three versions of an application in a source layout; v3 is signed (a cosign signature
    // under its `sha256-<hex>.sig` tag) and has an SBOM (an OCI 1.1 artifact whose `subject`
    // is v3): both travel with it.
    let mut v3 = None;
    for (seed, tag) in [(1, "v1"), (2, "v2"), (3, "v3")] {
        let image = TestImage::builder()
            .seed(seed)
            .layers([64 * 1024, 16 * 1024])
            .build();
        image.write_layout(&src, tag)?;
        v3 = Some(image);
    }
    if let Some(v3) = &v3 {
        let layout = LayoutStore::open(&src)?;
        let signature = TestArtifact::cosign_signature(v3.manifest(), 3);
        signature
            .push(&layout, Some(&cosign_tag(v3.digest(), "sig")))
            .await?;
        let sbom = TestArtifact::builder("application/spdx+json")
            .subject(v3.manifest())
            .build();
        sbom.push(&layout, None).await?;
    }
    let source = |tag: &str| Source::parse(&format!("oci:{}:{tag}", src.display()));

    println!("\n1. Service mode: a repository per service, old images evicted (keep 1 previous)");
    let service = Mirror::builder(registry.clone(), "prod-eu")
        .strategy(Arc::new(ServiceStrategy { keep_previous: 1 }))
        .eviction_grace(Duration::ZERO) // one deployer: no need to protect fresh pushes
        .build()?;
    show(
        "api v1 first deploy",
        &service.mirror("api", &source("v1")?).await?,
    );
    show(
        "api v1 again",
        &service.mirror("api", &source("v1")?).await?,
    );
    show("api v2", &service.mirror("api", &source("v2")?).await?);
    show(
        "api v3 (evicts v1)",
        &service.mirror("api", &source("v3")?).await?,
    );

    println!("\n2. Cluster mode: one repository for the cluster, shared by services");
    let cluster = Mirror::builder(registry.clone(), "prod-eu")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(
            7 * 24 * 3600,
        ))))
        .build()?;
    let web = cluster.mirror("web", &source("v1")?).await?;
    show("web v1", &web);
    show(
        "worker v1 (same image)",
        &cluster.mirror("worker", &source("v1")?).await?,
    );
    show(
        "worker v2",
        &cluster.mirror("worker", &source("v2")?).await?,
    );

    println!("\n3. A mutable tag: v1 is re-pushed at the source with new content");
    TestImage::builder()
        .seed(42)
        .layers([32 * 1024])
        .build()
        .write_layout(&src, "v1")?;
    let web = cluster.mirror("web", &source("v1")?).await?;
    show("web v1 after the re-push", &web);
    println!("  web now deploys {}", web.pull_reference);

    println!("\n4. Sweep (Cluster mode, retention 7 days), seen from 8 days in the future;");
    println!("   web's new image is in use and must survive");
    let later = SystemTime::now() + Duration::from_secs(8 * 24 * 3600);
    let in_use: HashSet<_> = [web.digest.clone()].into();
    let plan = cluster.sweep(later, &in_use, true).await?;
    for p in &plan.plans {
        println!(
            "  dry run: {} would go, {} stay ({:?})",
            p.delete.len(),
            p.keep.len(),
            p.keep.iter().map(|(_, why)| *why).collect::<Vec<_>>()
        );
    }
    let done = cluster.sweep(later, &in_use, false).await?;
    println!("  swept: {} image(s) deleted", done.deleted.len());

    println!("\n5. Inventory of cluster prod-eu");
    for repo in cluster.inventory().await?.repositories {
        println!("  {}", repo.repository);
        for img in repo.images {
            let (signatures, sboms) = (
                img.count(ReferrerKind::Signature),
                img.count(ReferrerKind::Sbom),
            );
            println!(
                "    {}  {:>7} bytes  tags {:?}{}",
                img.digest.short(),
                img.size.unwrap_or(0),
                img.tags,
                if signatures + sboms > 0 {
                    format!("  signed ({signatures}), SBOM ({sboms})")
                } else {
                    String::new()
                }
            );
        }
    }
    if std::env::var_os("QUICKSTART_KEEP").is_none() {
        std::fs::remove_dir_all(&work)?;
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mirror-quickstart-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
