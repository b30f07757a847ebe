//! The `mirror` example CLI with `--provider aws` against the ECR emulator: `deploy` (Service
//! and Cluster mode), `ls` and `sweep`, with the AWS SDK's default credential chain fed by
//! environment variables only (a temporary `HOME`, no `~/.aws`).
//!
//! The test builds the example itself (`cargo build -p mirror-cli --example mirror`, a no-op
//! when it is fresh) and runs the binary.

use provider_aws::testing as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mirror_core::testing::TestImage;
use serde_json::Value;
use support::{EcrEmulator, ACCOUNT, REGION};

/// Builds the example and returns the path of its executable.
fn build_cli() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    mirror_core::testing::build_example(root, "mirror-cli", "mirror")
}

struct Cli {
    bin: PathBuf,
    home: tempfile::TempDir,
    endpoint: String,
    registry: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("DOCKER_CONFIG", home.join("docker"))
            .env("AWS_CONFIG_FILE", home.join("aws-config-absent"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                home.join("aws-credentials-absent"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "AKIDMIRRORTEST")
            .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
            .env("AWS_REGION", REGION)
            .env("MIRROR_ECR_ENDPOINT", &self.endpoint)
            .arg(args[0])
            .args([
                "--registry",
                &format!("ecr://{}", self.registry),
                "--registry-option",
                &format!("account={ACCOUNT}"),
                "--cluster",
                "prod",
            ])
            .args(&args[1..]);
        cmd.output().expect("run the mirror CLI")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mirror {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "mirror {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_ls_and_sweep_with_provider_aws() {
    let bin = tokio::task::spawn_blocking(build_cli)
        .await
        .expect("build task");
    let emu = EcrEmulator::start().await;
    let cli = Cli {
        bin,
        home: tempfile::tempdir().unwrap(),
        endpoint: emu.endpoint(),
        registry: emu.registry_host(),
    };
    let img = TestImage::builder().seed(77).layers([4000, 9000]).build();
    let layout = cli.home.path().join("app");
    img.write_layout(&layout, "1.0").unwrap();
    let source = format!("oci:{}:1.0", layout.display());

    let run = |args: Vec<String>| {
        let cli = &cli;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            tokio::task::block_in_place(|| cli.json(&refs))
        }
    };
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
    let out = Command::new(&cli.bin)
        .env_clear()
        .env("HOME", cli.home.path())
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
