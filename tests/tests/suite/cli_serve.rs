//! `mirror serve` against the real registry (basic auth) holding two services' images and a
//! Cluster-mode repository, with Kubernetes discovery from the in-process API server: the
//! page loaded in headless Chromium shows every image's short digest, size, in-use marker and
//! expiry; `/api/inventory`, `/metrics` (parsed as the Prometheus text format) and `/healthz`
//! agree; the filter and the sorting work; no credential is ever rendered. The screenshot is
//! kept in `target/test-artifacts/mirror-serve.png` (the one in README comes from here).

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use mirror_core::testing::{TestImage, TestRegistry};
use tests::chromium::{artifact, headless};
use tests::cli::{build_cli, Cli};
use tests::kube_api::{self, FakeKubernetes};

const USER: &str = "ops";
const PASSWORD: &str = "serve-pa55word-not-on-the-page";

/// The `<tr class="image" …>` row of `digest` in `dom`, up to its `</tr>`.
fn row<'a>(dom: &'a str, digest: &str) -> &'a str {
    let start = dom
        .find(&format!("data-digest=\"{digest}\""))
        .unwrap_or_else(|| panic!("no row for {digest} in the page:\n{dom}"));
    let end = dom[start..]
        .find("</tr>")
        .map(|e| start + e)
        .unwrap_or(dom.len());
    &dom[start..end]
}

fn human_size(bytes: u64) -> String {
    mirror_cli::serve::page::human_size(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_image_with_size_use_and_expiry_and_no_credentials() {
    let bin = tokio::task::spawn_blocking(build_cli).await.unwrap();
    let dst = TestRegistry::with_basic_auth(USER, PASSWORD);
    let host = dst.host();
    let creds = format!("{USER}:{PASSWORD}");
    let cli = Cli::new(
        bin,
        &[],
        &[
            "--registry",
            &host,
            "--cluster",
            "prod",
            "--registry-creds",
            &creds,
        ],
    );
    let kubeconfig = cli.home.path().join("kubeconfig");
    let kubeconfig_arg = kubeconfig.display().to_string();
    let k8s = FakeKubernetes::start().await;
    k8s.write_kubeconfig(&kubeconfig);

    // Two services (api twice: two images kept), and two Cluster-mode images.
    let deploy = |service: &str, mode: &str, seed: u64, layer: u64| {
        let src = cli.layout_source(
            &TestImage::builder()
                .seed(seed)
                .layers([layer, 2 * layer])
                .build(),
            &format!("src-{seed}"),
            &format!("v{seed}"),
        );
        let args: Vec<String> = [
            "deploy",
            "--service",
            service,
            "--mode",
            mode,
            "--keep-previous",
            "2",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([src])
        .collect();
        cli.json_async(args)
    };
    let api1 = deploy("api", "service", 1, 3_000).await;
    let api2 = deploy("api", "service", 2, 5_000).await;
    // web: a signed two-platform index with an SBOM and attestations, from a registry.
    let src = TestRegistry::start();
    let signed = tests::referrers::Signed::new(3);
    signed
        .push(
            &tests::referrers::store(&src.host(), "signed/web"),
            "v3",
            true,
        )
        .await;
    let web_src = format!("{}/signed/web:v3", src.host());
    let web = cli
        .json_async(vec![
            "deploy",
            "--service",
            "web",
            "--mode",
            "service",
            "--json",
            &web_src,
        ])
        .await;
    let batch = deploy("batch", "cluster", 4, 7_000).await;
    let report = deploy("report", "cluster", 5, 9_000).await;
    let pull = |d: &Value| d["pull_reference"].as_str().unwrap().to_string();
    k8s.put(&kube_api::deployment("shop", "api", &pull(&api2), &[]));
    k8s.put(&kube_api::cron_job("ops", "nightly-batch", &pull(&batch)));
    let all = [&api1, &api2, &web, &batch, &report];

    let mut server = cli.spawn(&[
        "serve",
        "--retention",
        "7d",
        "--kubeconfig",
        &kubeconfig_arg,
        "--listen",
        "127.0.0.1:0",
        "--refresh",
        "2s",
    ]);
    let stdout = server.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("serve says where within 30 s")
        .expect("read stdout")
        .expect("a first line");
    let base = first
        .strip_prefix("serving ")
        .unwrap_or_else(|| panic!("not the serving line: {first}"))
        .to_string();
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "bound to loopback: {base}"
    );

    // /healthz: 503 until the first inventory, then 200.
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = http.get(format!("{base}/healthz")).send().await;
        if matches!(&r, Ok(r) if r.status() == 200) {
            break;
        }
        if let Ok(r) = r {
            assert_eq!(r.status(), 503, "only 200 or 503");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no inventory within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // /api/inventory: what `ls --json` says, with the refresh time.
    let api: Value = http
        .get(format!("{base}/api/inventory"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(api["refreshed_at"].as_u64().unwrap() > 0, "{api}");
    let images: Vec<&Value> = api["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["images"].as_array().unwrap())
        .collect();
    assert_eq!(images.len(), 5, "{api}");
    let image = |d: &Value| {
        *images
            .iter()
            .find(|i| i["digest"] == d["digest"])
            .unwrap_or_else(|| panic!("{} not in the inventory: {api}", d["digest"]))
    };

    // The page as Chromium sees it.
    let dom = headless(&format!("{base}/"), &["--dump-dom"]).await;
    assert!(
        dom.contains(&format!("<code id=\"registry\">{host}</code>")),
        "{dom}"
    );
    for d in all {
        let digest = d["digest"].as_str().unwrap();
        let r = row(&dom, digest);
        let short = &digest[..19];
        assert!(
            r.contains(&format!(">{short}<")),
            "short digest {short} in {r}"
        );
        let size = image(d)["size"].as_u64().unwrap();
        assert!(r.contains(&format!("data-size=\"{size}\"")), "{r}");
        assert!(r.contains(&human_size(size)), "{} in {r}", human_size(size));
    }
    for used in [&api2, &batch] {
        let r = row(&dom, used["digest"].as_str().unwrap());
        assert!(
            r.contains("data-in-use=\"true\"") && r.contains("● in use"),
            "{r}"
        );
    }
    assert!(row(&dom, api2["digest"].as_str().unwrap()).contains("deployment shop/api"));
    assert!(row(&dom, batch["digest"].as_str().unwrap()).contains("cron_job ops/nightly-batch"));
    // Referrers travel with the image and are counted on its row.
    let web_row = row(&dom, web["digest"].as_str().unwrap());
    // The cosign and OCI signatures, the SBOM's own signature; the SBOM; one attestation per
    // platform.
    assert!(
        web_row.contains("<td class=\"referrers\">3 signature, 1 sbom, 2 attestation</td>"),
        "{web_row}"
    );
    for d in [&api1, &api2, &batch, &report] {
        let r = row(&dom, d["digest"].as_str().unwrap());
        assert!(
            r.contains("<td class=\"referrers\"><span class=\"none\">none</span>"),
            "{r}"
        );
    }
    for unused in [&api1, &web, &report] {
        let r = row(&dom, unused["digest"].as_str().unwrap());
        assert!(
            r.contains("data-in-use=\"false\"") && r.contains("not in use"),
            "{r}"
        );
    }
    // Expiry: Cluster-mode images only, push time + 7 days.
    for d in [&batch, &report] {
        let expires = image(d)["expires_at"].as_u64().expect("an expiry");
        let pushed = image(d)["pushed_at"].as_u64().expect("a push time");
        assert_eq!(expires - pushed, 7 * 24 * 3600);
        let at =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(expires))
                .to_string();
        let r = row(&dom, d["digest"].as_str().unwrap());
        assert!(r.contains(&format!("data-expires=\"{at}\"")), "{at} in {r}");
    }
    assert!(row(&dom, batch["digest"].as_str().unwrap()).contains("kept while in use"));
    for d in [&api1, &api2, &web] {
        let r = row(&dom, d["digest"].as_str().unwrap());
        assert!(
            !r.contains("data-expires"),
            "Service mode never expires: {r}"
        );
    }
    // Totals: five images, two in use, three repositories.
    assert!(dom.contains("data-total=\"images\">5<"), "{dom}");
    assert!(dom.contains("data-total=\"in-use\">2<"), "{dom}");
    assert!(dom.contains("data-total=\"repositories\">3<"), "{dom}");

    // The screenshot, kept for people.
    let png = artifact("mirror-serve.png");
    let _ = std::fs::remove_file(&png);
    headless(
        &format!("{base}/"),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,860",
        ],
    )
    .await;
    let bytes = std::fs::read(&png).expect("the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "a real PNG"
    );

    // The filter and the sorting.
    let page = |q: &str| {
        let url = format!("{base}/{q}");
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let filtered = page("?q=WEB").await;
    assert!(filtered.contains(web["digest"].as_str().unwrap()));
    assert!(
        !filtered.contains(api1["digest"].as_str().unwrap()),
        "{filtered}"
    );
    let by_workload = page("?q=nightly").await;
    assert!(by_workload.contains(batch["digest"].as_str().unwrap()));
    assert!(!by_workload.contains(report["digest"].as_str().unwrap()));
    let nothing = page("?q=%3Cscript%3E").await;
    assert!(
        nothing.contains("No image matches") && !nothing.contains("<script>"),
        "{nothing}"
    );
    let by_size = page("?sort=size&order=asc").await;
    let (small, large) = (
        by_size.find(&format!(
            "data-digest=\"{}\"",
            api1["digest"].as_str().unwrap()
        )),
        by_size.find(&format!(
            "data-digest=\"{}\"",
            api2["digest"].as_str().unwrap()
        )),
    );
    assert!(
        small < large,
        "ascending size puts api's smaller image first"
    );
    let by_size_desc = page("?sort=size&order=desc").await;
    let (small, large) = (
        by_size_desc.find(&format!(
            "data-digest=\"{}\"",
            api1["digest"].as_str().unwrap()
        )),
        by_size_desc.find(&format!(
            "data-digest=\"{}\"",
            api2["digest"].as_str().unwrap()
        )),
    );
    assert!(large < small, "descending size puts it last");

    // /metrics: the storage totals of the last inventory, and the registry requests it made.
    let metrics = tests::prometheus::metrics(&http, &base).await;
    let scrape = tests::prometheus::scrape(&metrics);
    let gauge = |name: &str| tests::prometheus::value(&scrape, name, &[]);
    assert_eq!(gauge("mirror_inventory_images"), 5.0, "{metrics}");
    assert_eq!(gauge("mirror_inventory_images_in_use"), 2.0, "{metrics}");
    assert_eq!(gauge("mirror_inventory_repositories"), 3.0, "{metrics}");
    let stored: u64 = api["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["stored_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        gauge("mirror_inventory_stored_bytes"),
        stored as f64,
        "{metrics}"
    );
    assert!(gauge("mirror_registry_requests_total") > 0.0, "{metrics}");
    assert!(
        gauge("mirror_serve_last_refresh_timestamp_seconds") > 0.0,
        "{metrics}"
    );

    // No credential anywhere the server renders.
    let api_text = api.to_string();
    for (what, text) in [("page", &dom), ("api", &api_text), ("metrics", &metrics)] {
        assert!(!text.contains(PASSWORD), "the password is on the {what}");
        assert!(!text.contains(&creds), "the credentials are on the {what}");
    }

    // The registry goes away: /healthz says so, the page keeps the last inventory and says
    // the refresh failed.
    drop(dst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = http.get(format!("{base}/healthz")).send().await.unwrap();
        if r.status() == 503 {
            let why = r.text().await.unwrap();
            assert!(why.contains("refresh failed"), "{why}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never noticed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stale = page("").await;
    assert!(stale.contains("id=\"refresh-error\""), "{stale}");
    assert!(
        stale.contains(web["digest"].as_str().unwrap()),
        "the last inventory stays"
    );
    server.kill().await.expect("stop serve");
}
