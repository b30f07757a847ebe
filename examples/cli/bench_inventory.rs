//! Inventory and sweep benchmark helper (run by hand through `bench/inventory.sh`, not a
//! test):
//!
//! ```text
//! bench_inventory populate HOST CLUSTER REPOSITORIES PER_REPOSITORY SIGN_EVERY
//! bench_inventory populate-cluster HOST CLUSTER IMAGES EXPIRED
//! bench_inventory serve HOST CLUSTER ACCESS_LOG CHANGED
//! ```
//!
//! `populate` pushes tiny images (a config and a 512-byte layer) straight into Service-mode
//! repositories of a distribution registry, as a deploy leaves them: a tag and the push-time
//! bookkeeping tag, every SIGN_EVERY-th image with a classic cosign signature
//! (`sha256-<hex>.sig`). `populate-cluster` fills the cluster's Cluster-mode repository,
//! EXPIRED images pushed 40 days ago and the others a day ago.
//!
//! `serve` takes the inventory three times with one `mirror serve` server (the CLI's
//! `Server::refresh_once`, one `Mirror`): cold, again with nothing changed, and after
//! CHANGED new images were pushed (one per repository). For each it prints a line
//! `RESULT <phase> <requests> <seconds> <peak RSS KiB> <images>`: the requests the
//! registry's ACCESS_LOG gained, and this process's peak RSS during the phase.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use mirror_core::kit::image::pushed_tag;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::{HttpStore, RegistryClient};
use mirror_core::registry::{default_repository_name, RepositoryScope};
use mirror_core::{Digest, GenericRegistry, ImageStore, Mirror, RawManifest};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Images pushed at once.
const AT_ONCE: usize = 16;

fn client(host: &str) -> anyhow::Result<RegistryClient> {
    Ok(RegistryClient::new(host, Credentials::Anonymous)?)
}

async fn put_blob(store: &HttpStore, bytes: Bytes) -> anyhow::Result<(Digest, u64)> {
    let digest = Digest::sha256_of(&bytes);
    let size = bytes.len() as u64;
    let stream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
    store.put_blob(&digest, size, stream).await?;
    Ok((digest, size))
}

fn manifest(config: (&Digest, u64), layer: (&Digest, u64, &str)) -> RawManifest {
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0.to_string(), "size": config.1},
        "layers": [{"mediaType": layer.2, "digest": layer.0.to_string(), "size": layer.1}],
    });
    RawManifest::new(body.to_string(), OCI_MANIFEST)
}

/// The layer every image shares (512 bytes), pushed to `store`.
async fn shared_layer(store: &HttpStore) -> anyhow::Result<(Digest, u64)> {
    let bytes: Vec<u8> = (0..512u32).map(|i| (i * 7 % 251) as u8).collect();
    put_blob(store, Bytes::from(bytes)).await
}

/// Pushes image `n` of `store` (its layer already there) tagged `tag`, with its push-time
/// bookkeeping tag at `pushed` and, with `sign`, a cosign signature. The image's digest.
async fn push_image(
    store: &HttpStore,
    layer: &(Digest, u64),
    label: &str,
    tag: &str,
    pushed: SystemTime,
    sign: bool,
) -> anyhow::Result<Digest> {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.0.to_string()]},
        "config": {"Labels": {"bench.image": label}},
    });
    let config = put_blob(store, Bytes::from(config.to_string())).await?;
    let m = manifest((&config.0, config.1), (&layer.0, layer.1, OCI_LAYER));
    store
        .put_manifest(&pushed_tag(pushed, &m.digest), &m)
        .await?;
    store.put_manifest(tag, &m).await?;
    if sign {
        let payload = serde_json::json!({
            "critical": {"image": {"docker-manifest-digest": m.digest.to_string()},
                         "type": "cosign container image signature"},
        });
        let payload = put_blob(store, Bytes::from(payload.to_string())).await?;
        let empty = put_blob(store, Bytes::from_static(b"{}")).await?;
        let sig = manifest((&empty.0, empty.1), (&payload.0, payload.1, SIMPLESIGNING));
        store
            .put_manifest(&format!("sha256-{}.sig", m.digest.hex()), &sig)
            .await?;
    }
    Ok(m.digest)
}

fn service_repository(cluster: &str, n: usize) -> anyhow::Result<String> {
    Ok(default_repository_name(
        None,
        &RepositoryScope::Service {
            cluster: cluster.into(),
            service: format!("svc-{n:04}"),
        },
    )?)
}

async fn populate(
    host: &str,
    cluster: &str,
    repos: usize,
    per: usize,
    sign_every: usize,
) -> anyhow::Result<()> {
    let client = client(host)?;
    let now = SystemTime::now();
    futures::stream::iter((0..repos).map(|r| {
        let client = client.clone();
        async move {
            let name = service_repository(cluster, r)?;
            let store = client.repository(&name)?;
            let layer = shared_layer(&store).await?;
            for i in 0..per {
                let n = r * per + i;
                let pushed = now - Duration::from_secs(3600 + (per - i) as u64 * 60);
                let sign = sign_every > 0 && n.is_multiple_of(sign_every);
                push_image(
                    &store,
                    &layer,
                    &format!("{name}/{i}"),
                    &format!("v{i}-bench"),
                    pushed,
                    sign,
                )
                .await?;
            }
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

async fn populate_cluster(
    host: &str,
    cluster: &str,
    images: usize,
    expired: usize,
) -> anyhow::Result<()> {
    let name = default_repository_name(
        None,
        &RepositoryScope::Cluster {
            cluster: cluster.into(),
        },
    )?;
    let store = client(host)?.repository(&name)?;
    let layer = shared_layer(&store).await?;
    let now = SystemTime::now();
    let (store, layer, name) = (&store, &layer, &name);
    futures::stream::iter((0..images).map(|i| async move {
        let age = if i < expired { 40 * 86_400 } else { 86_400 };
        let pushed = now - Duration::from_secs(age + i as u64);
        push_image(
            store,
            layer,
            &format!("{name}/{i}"),
            &format!("img{i}-bench"),
            pushed,
            false,
        )
        .await
        .map(|_| ())
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

fn peak_rss_kib() -> u64 {
    mirror_cli::proc_status_kib("self", "VmHWM:")
}

/// Requests in the registry's access log so far.
async fn requests(log: &str) -> anyhow::Result<usize> {
    let text = tokio::fs::read_to_string(log)
        .await
        .with_context(|| format!("reading {log}"))?;
    Ok(text.lines().filter(|l| l.contains(" HTTP/1.1\" ")).count())
}

async fn serve(host: &str, cluster: &str, log: &str, changed: usize) -> anyhow::Result<()> {
    let registry = Arc::new(GenericRegistry::new(client(host)?));
    let mirror = Mirror::builder(registry, cluster).build()?;
    // A refresh is bounded by twice the interval: an hour lets the slowest build's listing
    // of 10,000 images finish (two minutes before issue 25).
    let server = mirror_cli::serve::Server::new(mirror, Duration::from_secs(3600), None);
    for phase in ["cold", "no-change", "changed"] {
        if phase == "changed" {
            let client = client(host)?;
            let now = SystemTime::now();
            for r in 0..changed {
                let store = client.repository(&service_repository(cluster, r)?)?;
                let layer = shared_layer(&store).await?;
                push_image(&store, &layer, &format!("new/{r}"), "new-bench", now, false).await?;
            }
        }
        // The peak of this phase alone.
        let _ = tokio::fs::write("/proc/self/clear_refs", "5").await;
        let before = requests(log).await?;
        let started = Instant::now();
        server.refresh_once().await;
        let took = started.elapsed();
        let snapshot = server.snapshot();
        if let Some(e) = &snapshot.error {
            bail!("refresh {phase} failed: {e}");
        }
        let images = snapshot
            .inventory
            .as_ref()
            .map(|i| i.totals().images)
            .unwrap_or(0);
        let after = requests(log).await?;
        println!(
            "RESULT\tserve-{phase}\t{}\t{:.3}\t{}\t{images}",
            after - before,
            took.as_secs_f64(),
            peak_rss_kib()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> anyhow::Result<usize> {
        args.get(i)
            .context("missing argument (see the file's docs)")?
            .parse()
            .context("a number")
    };
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .context("missing argument (see the file's docs)")
    };
    match args.first().map(String::as_str) {
        Some("populate") => populate(arg(1)?, arg(2)?, num(3)?, num(4)?, num(5)?).await,
        Some("populate-cluster") => populate_cluster(arg(1)?, arg(2)?, num(3)?, num(4)?).await,
        Some("serve") => serve(arg(1)?, arg(2)?, arg(3)?, num(4)?).await,
        _ => {
            bail!("usage: bench_inventory populate|populate-cluster|serve … (see the file's docs)")
        }
    }
}
