//! The `mirror` example CLI with `--registry scaleway://…` against the fake Scaleway API and a
//! real registry: `deploy` (Service and Cluster mode), `ls` and `sweep`, configured by the
//! `SCW_*` variables only (a cleared environment and a temporary `HOME`).
//!
//! The test builds the example itself (`cargo build -p mirror-cli --example mirror`, a no-op
//! when it is fresh) and runs the binary.

use provider_scaleway::testing as support;

use mirror_core::testing::TestImage;
use support::{FakeScaleway, PROJECT, REGION, SECRET};
use tests::cli::{build_cli, Cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_ls_and_sweep_with_provider_scaleway() {
    let bin = tokio::task::spawn_blocking(build_cli)
        .await
        .expect("build task");
    let fake = FakeScaleway::start().await;
    let namespace = fake.scaleway().namespace_name("prod").unwrap();
    let api_url = fake.api_url();
    let registry = format!("scaleway://{}", fake.registry_host());
    let cli = Cli::new(
        bin,
        &[
            ("SCW_SECRET_KEY", SECRET),
            ("SCW_DEFAULT_PROJECT_ID", PROJECT),
            ("SCW_DEFAULT_REGION", REGION),
            ("SCW_API_URL", &api_url),
        ],
        &["--registry", &registry, "--cluster", "prod"],
    );
    let img = TestImage::builder().seed(77).layers([4000, 9000]).build();
    let source = cli.layout_source(&img, "app", "1.0");
    let run = |args: Vec<&str>| cli.json_async(args.iter().map(|a| a.to_string()).collect());

    let d = run(vec!["deploy", "--service", "api", "--json", &source]).await;
    assert_eq!(d["action"], "copied", "{d}");
    assert_eq!(d["repository"], format!("{namespace}/svc-api"));
    assert_eq!(
        d["pull_reference"],
        format!(
            "{}/{namespace}/svc-api@{}",
            fake.registry_host(),
            img.digest()
        )
    );
    assert_eq!(fake.namespace(&namespace).unwrap()["is_public"], false);
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
    assert_eq!(c["repository"], format!("{namespace}/mirror"), "{c}");

    let ls = run(vec!["ls", "--json"]).await;
    let repos: Vec<&str> = ls["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("{ls}"))
        .iter()
        .filter_map(|r| r["repository"].as_str())
        .collect();
    assert_eq!(
        repos,
        vec![
            format!("{namespace}/mirror"),
            format!("{namespace}/svc-api")
        ],
        "{ls}"
    );
    assert_eq!(ls["registry"], fake.registry_host());

    let sweep = run(vec!["sweep", "--retention", "1h", "--dry-run", "--json"]).await;
    assert_eq!(sweep["dry_run"], true, "{sweep}");
    assert_eq!(
        sweep["plans"][0]["repository"],
        format!("{namespace}/mirror")
    );
    assert_eq!(
        sweep["plans"][0]["delete"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(sweep["plans"][0]["keep"].as_array().map(Vec::len), Some(1));
    let sweep = run(vec!["sweep", "--retention", "1h", "--json"]).await;
    assert_eq!(
        sweep["deleted"].as_array().map(Vec::len),
        Some(0),
        "{sweep}"
    );

    // Human output names the pinned reference.
    let out = cli.run(&["deploy", "--service", "api", &source]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&img.digest().to_string()));

    // Without a secret key the CLI says which variable to set.
    let out = cli
        .command()
        .env("SCW_DEFAULT_PROJECT_ID", PROJECT)
        .args(["ls", "--registry", "scaleway://", "--cluster", "prod"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SCW_SECRET_KEY"), "{err}");
    // Data-plane credentials come from the secret key, never from --registry-creds.
    let out = cli.run(&["ls", "--registry-creds", "nologin:x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SCW_SECRET_KEY"));
}
