//! The `mirror-webhook` process: HTTPS, /healthz, /metrics read back as Prometheus text,
//! one JSON log line per image, and a certificate rotated on disk served by the same process
//! (a TLS client that trusts only the new CA connects; one that trusts only the old one no
//! longer does).

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube::core::admission::Operation;
use mirror_core::testing::TestRegistry;
use tokio::io::AsyncBufReadExt;

use super::*;

async fn healthz(client: &reqwest::Client, base: &str) -> Result<String, reqwest::Error> {
    client
        .get(format!("{base}/healthz"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_binary_serves_metrics_logs_and_a_rotated_certificate_without_restart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let bin = tokio::task::spawn_blocking(move || {
        mirror_core::testing::build_example(&root, "mirror-cli", "mirror-webhook")
    })
    .await
    .unwrap();
    let (dst, src) = (TestRegistry::start(), TestRegistry::start());
    let image = push(&src, "team/app", "5", 71, &[30_000]).await;
    let mut certs = Certs::new();
    let logs = certs.dir.path().join("webhook.log");
    let mut child = tokio::process::Command::new(bin)
        .env_clear()
        .env("HOME", certs.dir.path())
        .env("MIRROR_LOG", "info")
        .env("MIRROR_LOG_FORMAT", "json")
        .args(["--registry", &dst.host(), "--cluster", CLUSTER])
        .args(["--tls-cert", &certs.cert_path().display().to_string()])
        .args(["--tls-key", &certs.key_path().display().to_string()])
        .args(["--tls-reload", "200ms", "--listen", "127.0.0.1:0"])
        .args(["--own-namespace", "mirror-system", "--loopback-sources"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&logs).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start mirror-webhook");
    let pid = child.id();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the webhook says where it serves")
        .unwrap()
        .unwrap_or_default();
    let addr = first
        .strip_prefix("serving https://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let port = addr.rsplit(':').next().unwrap();
    let base = format!("https://localhost:{port}");

    let old_ca = certs.ca_pem.clone();
    assert_eq!(healthz(&client(&old_ca), &base).await.unwrap(), "ok\n");

    // One admission, rewritten.
    let p = pod("shop", &[&format!("{}/team/app:5", src.host())], None);
    let response: Value = client(&old_ca)
        .post(format!("{base}/mutate?timeout=10s"))
        .body(review_as("uid-binary", &p, Operation::Create, None, false))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["response"]
        .clone();
    assert_eq!(
        images(&apply(&p, &response)),
        [pinned(&dst, image.digest())]
    );

    let text = tests::prometheus::metrics(&client(&old_ca), &base).await;
    let scrape = tests::prometheus::scrape(&text);
    let value =
        |name: &str, labels: &[(&str, &str)]| tests::prometheus::value(&scrape, name, labels);
    assert_eq!(
        value("mirror_admissions_total", &[("outcome", "rewritten")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value("mirror_admission_images_total", &[("outcome", "rewritten")]),
        1.0
    );
    assert_eq!(value("mirror_admission_lookups_started_total", &[]), 1.0);
    assert_eq!(
        value(
            "mirror_admission_lookups_finished_total",
            &[("result", "copied")]
        ),
        1.0
    );
    assert!(
        text.contains("mirror_admission_duration_seconds_count{outcome=\"rewritten\"} 1"),
        "{text}"
    );
    assert_eq!(
        value(
            "mirror_deploys_total",
            &[("action", "copied"), ("mode", "cluster")]
        ),
        1.0
    );

    // cert-manager renews the certificate, with a new CA: the same process serves it.
    certs.rotate();
    let new_ca = certs.ca_pem.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match healthz(&client(&new_ca), &base).await {
            Ok(body) => {
                assert_eq!(body, "ok\n");
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the new certificate is not served: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let refused = healthz(&client(&old_ca), &base).await;
    assert!(
        refused.is_err(),
        "the old certificate is still served: {refused:?}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process is the same"
    );
    assert_eq!(child.id(), pid);
    let text = tests::prometheus::metrics(&client(&new_ca), &base).await;
    assert!(
        text.contains("mirror_webhook_certificate_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );

    // The log: one JSON line for the image with the fields operators filter on.
    child.kill().await.unwrap();
    let log = std::fs::read_to_string(&logs).unwrap();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "admission image")
        .unwrap_or_else(|| panic!("no admission line in the log:\n{log}"));
    let fields = &line["fields"];
    assert_eq!(fields["namespace"], "shop", "{line}");
    assert_eq!(fields["pod"], "web-5d8f7c9b6-", "{line}");
    assert_eq!(fields["uid"], "uid-binary", "{line}");
    assert_eq!(fields["outcome"], "rewritten", "{line}");
    assert_eq!(fields["digest"], image.digest().to_string(), "{line}");
    assert_eq!(fields["pinned"], pinned(&dst, image.digest()), "{line}");
    assert_eq!(
        fields["image"],
        format!("{}/team/app:5", src.host()),
        "{line}"
    );
}
