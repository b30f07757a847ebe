//! `deployer CONFIG.json`: mirrors every service of the configuration and prints what to roll
//! out (see the library part of this crate).

use deployer::{deploy_all, mirror_of, Config, Decision};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: deployer CONFIG.json"))?;
    let config: Config = serde_json::from_slice(&std::fs::read(&path)?)?;
    let mirror = mirror_of(&config).await?;
    // A typo'd registry host or a refused credential stops here, at once.
    mirror.registry().check().await?;
    let mut failed = false;
    for (service, decision) in deploy_all(&mirror, &config).await {
        match decision {
            Decision::Deploy { reference, notes } => {
                println!("{service}: deploy {reference}");
                for n in notes {
                    println!("{service}:   note: {n}");
                }
            }
            Decision::Hold(why) => println!("{service}: hold ({why})"),
            Decision::RetryLater(why) => println!("{service}: retry later ({why})"),
            Decision::Fail(why) => {
                failed = true;
                println!("{service}: failed ({why})");
            }
        }
    }
    if failed {
        anyhow::bail!("some services could not be mirrored");
    }
    Ok(())
}
