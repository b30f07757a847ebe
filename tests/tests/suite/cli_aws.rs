//! The `mirror` example CLI with `--registry ecr://…` against the ECR emulator: the CLI
//! scenario of `tests::cli_suite`, with the AWS SDK's default credential chain fed by
//! environment variables only (a temporary `HOME`, no `~/.aws`).

use provider_aws::testing as support;

use std::path::PathBuf;
use std::process::Output;

use mirror_core::testing::TestImage;
use serde_json::Value;
use support::{EcrEmulator, ACCOUNT, REGION};
use tests::cli::Cli;
use tests::cli_suite::{deploy_ls_and_sweep, CliHarness};

struct Aws(EcrEmulator);

impl CliHarness for Aws {
    fn cli(&self, bin: PathBuf) -> Cli {
        let endpoint = self.0.endpoint();
        let registry = format!("ecr://{}", self.0.registry_host());
        let account = format!("account={ACCOUNT}");
        let env = [
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
        ];
        let args = ["--registry", &registry, "--registry-option", &account];
        Cli::new(bin, &env, &[&args[..], &["--cluster", "prod"]].concat())
    }

    fn host(&self) -> String {
        self.0.registry_host()
    }

    fn check_registry(&self, shown: &Value) {
        assert!(shown.as_str().unwrap_or("").contains(&self.host()));
    }

    fn check_service(&self, repository: &str, _: &Value) {
        assert_eq!(repository, "prod/services/api");
    }

    async fn check_cluster(&self, c: &Value) -> String {
        assert_eq!(c["repository"], "prod/mirror", "{c}");
        let blobs = TestImage::builder().seed(77).layers([4000, 9000]).build();
        assert_eq!(c["blobs_mounted"], blobs.blobs().len(), "{c}");
        let asked = serde_json::json!({"repositoryName": "prod/mirror"});
        let (_, policy) = self.0.moto("GetLifecyclePolicy", asked).await;
        let text = policy["lifecyclePolicyText"].as_str().unwrap_or("");
        assert!(text.contains(r#""countNumber":2"#), "{policy}");
        "prod/mirror".into()
    }

    async fn sweep(&self, cli: &Cli, _: &str, _: &TestImage) {
        let args = ["sweep", "--retention", "1h", "--dry-run", "--json"];
        let sweep = cli
            .json_async(args.iter().map(|a| a.to_string()).collect())
            .await;
        assert_eq!(sweep["dry_run"], true, "{sweep}");
        assert_eq!(sweep["plans"][0]["repository"], "prod/mirror", "{sweep}");
        assert_eq!(
            sweep["plans"][0]["delete"].as_array().map(Vec::len),
            Some(0)
        );
    }

    /// Without a region (and no AWS configuration at all) the CLI says what to set.
    fn missing_setting(&self, cli: &Cli) -> (Output, &'static str) {
        let absent = cli.home.path().join("absent");
        let out = cli
            .command()
            .args(["ls", "--registry", "ecr://", "--cluster", "prod"])
            .env("AWS_CONFIG_FILE", &absent)
            .env("AWS_SHARED_CREDENTIALS_FILE", &absent)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        (out, "region")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_ls_and_sweep_with_provider_aws() {
    deploy_ls_and_sweep(&Aws(EcrEmulator::start().await)).await;
}
