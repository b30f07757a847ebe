//! The `mirror` example CLI with `--provider scaleway` against the fake Scaleway API and a
//! real registry: `deploy` (Service and Cluster mode), `ls` and `sweep`, configured by the
//! `SCW_*` variables only (a cleared environment and a temporary `HOME`).
//!
//! The test builds the example itself (`cargo build -p mirror-cli --example mirror`, a no-op
//! when it is fresh) and runs the binary.

use provider_scaleway::testing as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mirror_core::testing::TestImage;
use serde_json::Value;
use support::{FakeScaleway, PROJECT, REGION, SECRET};

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
    api_url: String,
    registry: String,
}

impl Cli {
    fn command(&self) -> Command {
        let home = self.home.path();
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("DOCKER_CONFIG", home.join("docker"));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.env("SCW_SECRET_KEY", SECRET)
            .env("SCW_DEFAULT_PROJECT_ID", PROJECT)
            .env("SCW_DEFAULT_REGION", REGION)
            .env("SCW_API_URL", &self.api_url)
            .arg(args[0])
            .args([
                "--registry",
                &format!("scaleway://{}", self.registry),
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
async fn deploy_ls_and_sweep_with_provider_scaleway() {
    let bin = tokio::task::spawn_blocking(build_cli)
        .await
        .expect("build task");
    let fake = FakeScaleway::start().await;
    let namespace = fake.scaleway().namespace_name("prod").unwrap();
    let cli = Cli {
        bin,
        home: tempfile::tempdir().unwrap(),
        api_url: fake.api_url(),
        registry: fake.registry_host(),
    };
    let img = TestImage::builder().seed(77).layers([4000, 9000]).build();
    let layout = cli.home.path().join("app");
    img.write_layout(&layout, "1.0").unwrap();
    let source = format!("oci:{}:1.0", layout.display());
    let run = |args: Vec<&str>| {
        let cli = &cli;
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            tokio::task::block_in_place(|| cli.json(&refs))
        }
    };

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
