//! The `mirror` example CLI with `--registry ecr://…` against the ECR emulator: `deploy` (Service
//! and Cluster mode), `ls` and `sweep`, with the AWS SDK's default credential chain fed by
//! environment variables only (a temporary `HOME`, no `~/.aws`).
//!
//! The test builds the example itself (`cargo build -p mirror-cli --example mirror`, a no-op
//! when it is fresh) and runs the binary.

use provider_aws::testing as support;

use mirror_core::testing::TestImage;
use support::{EcrEmulator, ACCOUNT, REGION};
use tests::cli::{build_cli, Cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_ls_and_sweep_with_provider_aws() {
    let bin = tokio::task::spawn_blocking(build_cli)
        .await
        .expect("build task");
    let emu = EcrEmulator::start().await;
    let endpoint = emu.endpoint();
    let registry = format!("ecr://{}", emu.registry_host());
    let account = format!("account={ACCOUNT}");
    let cli = Cli::new(
        bin,
        &[
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            ),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ACCESS_KEY_ID", "AKIDMIRRORTEST"),
            ("AWS_SECRET_ACCESS_KEY", "not-a-secret"),
            ("AWS_REGION", REGION),
            ("MIRROR_ECR_ENDPOINT", &endpoint),
        ],
        &[
            "--registry",
            &registry,
            "--registry-option",
            &account,
            "--cluster",
            "prod",
        ],
    );
    let img = TestImage::builder().seed(77).layers([4000, 9000]).build();
    let source = cli.layout_source(&img, "app", "1.0");

    let run = |args: Vec<String>| cli.json_async(args);
    let d = run(vec![
        "deploy".into(),
        "--service".into(),
        "api".into(),
        "--json".into(),
        source.clone(),
    ])
    .await;
    assert_eq!(d["action"], "copied", "{d}");
    assert_eq!(d["repository"], "prod/services/api");
    assert_eq!(
        d["pull_reference"],
        format!("{}/prod/services/api@{}", emu.registry_host(), img.digest())
    );
    let again = run(vec![
        "deploy".into(),
        "--service".into(),
        "api".into(),
        "--json".into(),
        source.clone(),
    ])
    .await;
    assert_eq!(again["action"], "skipped", "{again}");

    let c = run(vec![
        "deploy".into(),
        "--service".into(),
        "api".into(),
        "--mode".into(),
        "cluster".into(),
        "--retention".into(),
        "36h".into(),
        "--json".into(),
        source.clone(),
    ])
    .await;
    assert_eq!(c["repository"], "prod/mirror", "{c}");
    assert_eq!(c["blobs_mounted"], img.blobs().len(), "{c}");
    let (_, policy) = emu
        .moto(
            "GetLifecyclePolicy",
            serde_json::json!({"repositoryName": "prod/mirror"}),
        )
        .await;
    let text = policy["lifecyclePolicyText"].as_str().unwrap_or("");
    assert!(text.contains(r#""countNumber":2"#), "{policy}");

    let ls = run(vec!["ls".into(), "--json".into()]).await;
    let repos: Vec<&str> = ls["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("{ls}"))
        .iter()
        .filter_map(|r| r["repository"].as_str())
        .collect();
    assert_eq!(repos, vec!["prod/mirror", "prod/services/api"], "{ls}");
    assert!(ls["registry"]
        .as_str()
        .unwrap_or("")
        .contains(&emu.registry_host()));

    let sweep = run(vec![
        "sweep".into(),
        "--retention".into(),
        "1h".into(),
        "--dry-run".into(),
        "--json".into(),
    ])
    .await;
    assert_eq!(sweep["dry_run"], true, "{sweep}");
    assert_eq!(sweep["plans"][0]["repository"], "prod/mirror", "{sweep}");
    assert_eq!(
        sweep["plans"][0]["delete"].as_array().map(Vec::len),
        Some(0)
    );

    // Human output names the pinned reference.
    let out = cli.run(&["deploy", "--service", "api", &source]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&img.digest().to_string()), "{text}");
    // Without a region (and no AWS configuration at all) the CLI says what to set.
    let out = cli
        .command()
        .args(["ls", "--registry", "ecr://", "--cluster", "prod"])
        .env("AWS_CONFIG_FILE", cli.home.path().join("absent"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            cli.home.path().join("absent"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("region"), "{err}");
}
