//! Admission latency benchmark (run by hand, not a test; `bench/admission.sh` builds and
//! runs it):
//!
//! ```text
//! cargo build --release -p mirror-cli --example mirror-webhook --example bench_admission
//! target/release/examples/bench_admission [ADMISSIONS [CONCURRENCY]]
//! ```
//!
//! Starts two real distribution registries on 127.0.0.1 (mirror and source), pushes an image
//! (3 layers, 1.5 MB) to the source, writes a CA and a server certificate, and starts the
//! `mirror-webhook` binary found next to this one (its own process, so that its memory is
//! its own). One admission copies the image; then ADMISSIONS reviews of a pod naming it are
//! posted one after the other over one HTTPS connection (as the API server keeps its
//! connections), each timed from the request to the whole answer, and again CONCURRENCY at a
//! time. Every answer must be the rewrite to the pinned mirror reference. Prints the
//! latencies (p50, p90, p99, max) and the webhook's peak and current RSS (`VmHWM`, `VmRSS`).
//! Defaults: 1000 16.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use futures::StreamExt;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

fn status_kib(pid: u32, field: &str) -> u64 {
    mirror_cli::proc_status_kib(&pid.to_string(), field)
}

/// A CA and a certificate for localhost it signed, written to `dir`; the CA's PEM.
fn certificates(dir: &std::path::Path) -> anyhow::Result<String> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?
        .signed_by(&key, &ca, &ca_key)?;
    std::fs::write(dir.join("tls.crt"), cert.pem())?;
    std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
    Ok(ca.pem())
}

/// The AdmissionReview the API server sends for a pod creation running `image`.
fn review(n: usize, image: &str) -> Vec<u8> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-5d8f7c9b6-", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}],
                 "serviceAccountName": "default", "restartPolicy": "Always"}
    });
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("bench-{n}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Posts one review; the image the answer pins it to.
async fn admit(client: &reqwest::Client, url: &str, body: Vec<u8>) -> anyhow::Result<String> {
    let v: Value = client.post(url).body(body).send().await?.json().await?;
    let patch = v["response"]["patch"]
        .as_str()
        .context("no patch in the answer")?;
    let ops: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(patch)?)?;
    Ok(ops[0]["value"].as_str().unwrap_or_default().to_string())
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{:.2} | {:.2} | {:.2} | {:.2}",
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(at(1.0))
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let admissions: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let webhook_bin = std::env::current_exe()?
        .parent()
        .context("the executable's directory")?
        .join("mirror-webhook");
    if !webhook_bin.exists() {
        bail!(
            "{} is missing: cargo build --release -p mirror-cli --example mirror-webhook",
            webhook_bin.display()
        );
    }

    let (dst, src) = (TestRegistry::start(), TestRegistry::start());
    let image = TestImage::builder()
        .seed(99)
        .layers([1_000_000, 400_000, 100_000])
        .build();
    let store = RegistryClient::new(&src.host(), Credentials::Anonymous)?.repository("team/web")?;
    image.push(&store, "1.0").await?;
    let source = format!("{}/team/web:1.0", src.host());
    let pinned = format!("{}/bench/mirror@{}", dst.host(), image.digest());

    let dir = tempfile::tempdir()?;
    let ca = certificates(dir.path())?;
    let mut child = tokio::process::Command::new(&webhook_bin)
        .args([
            "--registry",
            &dst.host(),
            "--cluster",
            "bench",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .args(["--own-namespace", "mirror-system", "--loopback-sources"])
        .env("MIRROR_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("the webhook's pid")?;
    let stdout = child.stdout.take().context("the webhook's stdout")?;
    let first = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .unwrap_or_default();
    let port = first
        .rsplit(':')
        .next()
        .with_context(|| format!("unexpected first line {first:?}"))?;
    let url = format!("https://localhost:{port}/mutate?timeout=10s");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
        .build()?;
    let idle_rss = status_kib(pid, "VmRSS:");

    let started = Instant::now();
    let first = admit(&client, &url, review(0, &source)).await?;
    anyhow::ensure!(first == pinned, "the copy answered {first}, not {pinned}");
    let copy = started.elapsed();

    let mut sequential = Vec::with_capacity(admissions);
    for n in 0..admissions {
        let t = Instant::now();
        let got = admit(&client, &url, review(n + 1, &source)).await?;
        sequential.push(t.elapsed());
        anyhow::ensure!(got == pinned, "admission {n} answered {got}");
    }
    let client = Arc::new(client);
    let url = Arc::new(url);
    let wall = Instant::now();
    let concurrent: Vec<Duration> = futures::stream::iter(0..admissions)
        .map(|n| {
            let (client, url, source, pinned) =
                (client.clone(), url.clone(), source.clone(), pinned.clone());
            async move {
                let t = Instant::now();
                let got = admit(&client, &url, review(admissions + n + 1, &source)).await?;
                anyhow::ensure!(got == pinned, "admission {n} answered {got}");
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<anyhow::Result<Duration>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let wall = wall.elapsed();

    println!("admissions of an image already mirrored: the skip path (HEAD on the mirror, HEAD on the source)");
    println!(
        "first admission (copy of {} bytes): {:.0} ms",
        image.blobs().iter().map(|b| b.size()).sum::<u64>(),
        copy.as_secs_f64() * 1000.0
    );
    println!();
    println!("| run | admissions | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| sequential, one connection | {admissions} | {} |",
        percentiles(sequential)
    );
    println!(
        "| {concurrency} at a time | {admissions} | {} |",
        percentiles(concurrent)
    );
    println!();
    println!(
        "{concurrency} at a time: {:.0} admissions/s",
        admissions as f64 / wall.as_secs_f64()
    );
    println!(
        "webhook process: RSS idle {:.1} MiB, after the runs {:.1} MiB, peak {:.1} MiB",
        idle_rss as f64 / 1024.0,
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    child.kill().await?;
    Ok(())
}
