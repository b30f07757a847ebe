//! The `mirror` example CLI with `--registry gar://…` against the Artifact Registry emulator:
//! `deploy` (Service and Cluster mode), `ls` and `sweep`, configured through `MIRROR_GAR_*`
//! variables and `-o KEY=VALUE` options, with a temporary `HOME` and no other environment.
//!
//! The test builds the example itself (`cargo build -p mirror-cli --example mirror`, a no-op
//! when it is fresh) and runs the binary.

use provider_gcp::testing as support;

use std::time::{Duration, SystemTime};

use mirror_core::testing::TestImage;
use support::{FakeGar, LOCATION, PROJECT};
use tests::cli::{build_cli, Cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_ls_and_sweep_with_provider_gcp() {
    let bin = tokio::task::spawn_blocking(build_cli)
        .await
        .expect("build task");
    let fake = FakeGar::start().await;
    let endpoint = fake.endpoint();
    let registry = format!("gar://{}", fake.docker_host());
    let location = format!("location={LOCATION}");
    let key = format!("credentials_file={}", fake.key_file().display());
    let cli = Cli::new(
        bin,
        &[
            ("MIRROR_GAR_ENDPOINT", &endpoint),
            ("MIRROR_GAR_PROJECT", PROJECT),
        ],
        &[
            "--registry",
            &registry,
            "-o",
            &location,
            "-o",
            &key,
            "--cluster",
            "prod",
        ],
    );
    let img = TestImage::builder().seed(77).layers([4000, 9000]).build();
    let source = cli.layout_source(&img, "app", "1.0");
    let run = |args: Vec<&str>| cli.json_async(args.iter().map(|a| a.to_string()).collect());

    let d = run(vec!["deploy", "--service", "api", "--json", &source]).await;
    assert_eq!(d["action"], "copied", "{d}");
    let repo = d["repository"].as_str().unwrap_or_default().to_string();
    assert!(
        repo.starts_with(&format!("{PROJECT}/mirror-prod-svc-api-")),
        "{d}"
    );
    assert!(repo.ends_with("/image"), "{d}");
    assert_eq!(
        d["pull_reference"],
        format!("{}/{repo}@{}", fake.docker_host(), img.digest())
    );
    let again = run(vec!["deploy", "--service", "api", "--json", &source]).await;
    assert_eq!(again["action"], "skipped", "{again}");

    let c = run(vec![
        "deploy",
        "--service",
        "api",
        "--mode",
        "cluster",
        "--retention",
        "36h",
        "--json",
        &source,
    ])
    .await;
    let cluster_repo = c["repository"].as_str().unwrap_or_default().to_string();
    assert!(
        cluster_repo.starts_with(&format!("{PROJECT}/mirror-prod-mirror-")),
        "{c}"
    );
    let id = cluster_repo
        .split('/')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        fake.repository(&id).unwrap()["cleanupPolicies"]["mirror-core-retention"]["condition"]
            ["olderThan"],
        "129600s"
    );

    let ls = run(vec!["ls", "--json"]).await;
    let mut repos: Vec<&str> = ls["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("{ls}"))
        .iter()
        .filter_map(|r| r["repository"].as_str())
        .collect();
    repos.sort();
    let mut expected = vec![cluster_repo.as_str(), repo.as_str()];
    expected.sort();
    assert_eq!(repos, expected, "{ls}");
    assert_eq!(ls["registry"], fake.docker_host());

    // The cluster image is two days old: a sweep with one day of retention deletes it.
    fake.set_upload_time(
        &id,
        "image",
        &img.digest().to_string(),
        SystemTime::now() - Duration::from_secs(2 * 86_400),
    );
    let dry = run(vec!["sweep", "--retention", "1d", "--dry-run", "--json"]).await;
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(
        dry["plans"][0]["delete"].as_array().map(Vec::len),
        Some(1),
        "{dry}"
    );
    assert!(fake.deleted_versions().is_empty());
    let sweep = run(vec!["sweep", "--retention", "1d", "--json"]).await;
    assert_eq!(
        sweep["deleted"].as_array().map(Vec::len),
        Some(1),
        "{sweep}"
    );
    assert_eq!(
        fake.deleted_versions(),
        vec![format!("{id}/image@{}", img.digest())]
    );
    assert!(fake.package_deletes().is_empty());

    // Human output names the pinned reference.
    let out = cli.run(&["deploy", "--service", "api", &source]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&img.digest().to_string()), "{text}");

    // Without a location the CLI says what to set, before looking for credentials.
    let out = cli
        .command()
        .args(["ls", "--registry", "gar://", "--cluster", "prod"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MIRROR_GAR_LOCATION"), "{err}");
    // --registry-creds is refused: the data plane takes OAuth tokens.
    let out = cli.run(&["ls", "--registry-creds", "a:b"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("oauth2accesstoken"));
}
