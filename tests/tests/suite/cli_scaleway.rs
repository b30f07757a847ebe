//! The `mirror` example CLI with `--registry scaleway://…` against the fake Scaleway API and a
//! real registry: the CLI scenario of `tests::cli_suite`, configured by the `SCW_*` variables
//! only (a cleared environment and a temporary `HOME`).

use provider_scaleway::testing as support;

use std::path::PathBuf;
use std::process::Output;

use mirror_core::testing::TestImage;
use serde_json::Value;
use support::{FakeScaleway, PROJECT, REGION, SECRET};
use tests::cli::Cli;
use tests::cli_suite::{deploy_ls_and_sweep, CliHarness};

struct Scaleway(FakeScaleway);

impl Scaleway {
    fn namespace(&self) -> String {
        self.0.scaleway().namespace_name("prod").unwrap()
    }
}

impl CliHarness for Scaleway {
    fn cli(&self, bin: PathBuf) -> Cli {
        let api_url = self.0.api_url();
        let registry = format!("scaleway://{}", self.0.registry_host());
        let env = [
            ("SCW_SECRET_KEY", SECRET),
            ("SCW_DEFAULT_PROJECT_ID", PROJECT),
            ("SCW_DEFAULT_REGION", REGION),
            ("SCW_API_URL", &api_url),
        ];
        Cli::new(bin, &env, &["--registry", &registry, "--cluster", "prod"])
    }

    fn host(&self) -> String {
        self.0.registry_host()
    }

    fn check_service(&self, repo: &str, _: &Value) {
        let namespace = self.namespace();
        assert_eq!(repo, format!("{namespace}/svc-api"));
        assert_eq!(self.0.namespace(&namespace).unwrap()["is_public"], false);
    }

    async fn check_cluster(&self, c: &Value) -> String {
        let cluster = format!("{}/mirror", self.namespace());
        assert_eq!(c["repository"], cluster.as_str(), "{c}");
        cluster
    }

    async fn sweep(&self, cli: &Cli, cluster: &str, _: &TestImage) {
        let run = |args: &[&str]| cli.json_async(args.iter().map(|a| a.to_string()).collect());
        let sweep = run(&["sweep", "--retention", "1h", "--dry-run", "--json"]).await;
        assert_eq!(sweep["dry_run"], true, "{sweep}");
        assert_eq!(sweep["plans"][0]["repository"], cluster);
        assert_eq!(
            sweep["plans"][0]["delete"].as_array().map(Vec::len),
            Some(0)
        );
        assert_eq!(sweep["plans"][0]["keep"].as_array().map(Vec::len), Some(1));
        let sweep = run(&["sweep", "--retention", "1h", "--json"]).await;
        assert_eq!(
            sweep["deleted"].as_array().map(Vec::len),
            Some(0),
            "{sweep}"
        );
    }

    /// Without a secret key the CLI says which variable to set.
    fn missing_setting(&self, cli: &Cli) -> (Output, &'static str) {
        let mut command = cli.command();
        command.env("SCW_DEFAULT_PROJECT_ID", PROJECT);
        let args = ["ls", "--registry", "scaleway://", "--cluster", "prod"];
        (command.args(args).output().unwrap(), "SCW_SECRET_KEY")
    }

    /// Data-plane credentials come from the secret key, never from --registry-creds.
    fn registry_creds_hint(&self) -> Option<&'static str> {
        Some("SCW_SECRET_KEY")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_ls_and_sweep_with_provider_scaleway() {
    deploy_ls_and_sweep(&Scaleway(FakeScaleway::start().await)).await;
}
