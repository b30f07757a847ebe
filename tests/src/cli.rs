//! The `mirror` CLI (the `mirror` example of `mirror-cli`) run the way a person runs it: built
//! by the test (`cargo build -p mirror-cli --example mirror`, a no-op when it is fresh), with
//! a temporary `HOME` and no environment but what the test gives it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Builds the CLI and returns the path of its executable.
pub fn build_cli() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    mirror_core::testing::build_example(root, "mirror-cli", "mirror")
}

/// One CLI configuration: the binary, a temporary `HOME`, the environment every call gets,
/// and the registry arguments put after the subcommand.
pub struct Cli {
    /// The executable.
    pub bin: PathBuf,
    /// The temporary `HOME` (and `DOCKER_CONFIG` below it).
    pub home: tempfile::TempDir,
    env: Vec<(String, String)>,
    registry_args: Vec<String>,
}

impl Cli {
    /// A CLI calling `bin` with `env` and `registry_args` (`--registry …`, `-o …`).
    pub fn new(bin: PathBuf, env: &[(&str, &str)], registry_args: &[&str]) -> Self {
        Cli {
            bin,
            home: tempfile::tempdir().expect("a temporary HOME"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            registry_args: registry_args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The bare command: no environment but `PATH`, `HOME` and `DOCKER_CONFIG`.
    pub fn command(&self) -> Command {
        let home = self.home.path();
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("DOCKER_CONFIG", home.join("docker"));
        cmd
    }

    /// `mirror <args[0]> <registry args> <args[1..]>` with the configured environment.
    pub fn run(&self, args: &[&str]) -> Output {
        self.with_args(args).output().expect("run the mirror CLI")
    }

    /// The command of [`run`](Self::run) and [`spawn`](Self::spawn): the configured
    /// environment, `args[0]`, the registry arguments, the rest of `args`.
    fn with_args(&self, args: &[&str]) -> Command {
        let mut cmd = self.command();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg(args[0])
            .args(&self.registry_args)
            .args(&args[1..]);
        cmd
    }

    /// `mirror <args[0]> <registry args> <args[1..]>` started in the background with stdout
    /// piped (a server: `serve`); killed when the returned child is dropped.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        let mut cmd = tokio::process::Command::from(self.with_args(args));
        cmd.stdout(std::process::Stdio::piped()).kill_on_drop(true);
        cmd.spawn().expect("start the mirror CLI")
    }

    /// [`json`](Self::json) from a task of a multi-thread runtime (the call blocks in place).
    pub async fn json_async<S: AsRef<str>>(&self, args: Vec<S>) -> Value {
        let refs: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        tokio::task::block_in_place(|| self.json(&refs))
    }

    /// Writes `image` as an OCI layout named `name` in the temporary `HOME` and returns it as
    /// a source (`oci:PATH:tag`).
    pub fn layout_source(
        &self,
        image: &mirror_core::testing::TestImage,
        name: &str,
        tag: &str,
    ) -> String {
        let layout = self.home.path().join(name);
        image
            .write_layout(&layout, tag)
            .unwrap_or_else(|e| panic!("write layout {}: {e}", layout.display()));
        format!("oci:{}:{tag}", layout.display())
    }

    /// [`run`](Self::run), which must succeed and print one JSON object.
    pub fn json(&self, args: &[&str]) -> Value {
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
