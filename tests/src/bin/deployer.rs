//! A minimal deployer process for the two-process concurrency test: mirrors one source for one
//! service into a registry and prints the `Deployment` as JSON.
//!
//! Usage: `deployer REGISTRY_HOST CLUSTER SERVICE SOURCE KEEP_PREVIOUS`

use std::sync::Arc;

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::{GenericRegistry, Mirror, ServiceStrategy, Source};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: deployer REGISTRY_HOST CLUSTER SERVICE SOURCE KEEP_PREVIOUS");
        return std::process::ExitCode::from(2);
    }
    let run = async {
        let keep: usize = args[5].parse().map_err(|e: std::num::ParseIntError| {
            mirror_core::Error::config("KEEP_PREVIOUS", e.to_string())
        })?;
        let client = RegistryClient::new(&args[1], Credentials::Anonymous)?;
        let mirror = Mirror::builder(Arc::new(GenericRegistry::new(client)), &args[2])
            .strategy(Arc::new(ServiceStrategy {
                keep_previous: keep,
            }))
            .build()?;
        mirror.mirror(&args[3], &Source::parse(&args[4])?).await
    };
    match run.await {
        Ok(d) => match serde_json::to_string(&d) {
            Ok(s) => {
                println!("{s}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
