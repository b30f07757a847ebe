//! `bench_fixture`: writes the OCI image layouts `bench/run.sh` pushes to its source registry.
//!
//! ```text
//! cargo run --release -p mirror-cli --example bench_fixture -- OUT_DIR [single|multi|big]...
//! ```
//!
//! Writes `OUT_DIR/NAME` (an OCI image layout tagged `v1`) for each fixture named (all three
//! by default), skipping those already there. Layers hold pseudo-random, incompressible bytes
//! derived from fixed seeds, so digests are the same on every machine and every run.
//!
//! - `single`: one `linux/amd64` image, 5 layers of 80, 60, 30, 20 and 10 MB (200 MB).
//! - `multi`: an index over `linux/amd64` and `linux/arm64`, 5 layers each of 40, 30, 15, 10
//!   and 5 MB (200 MB in all).
//! - `big`: one image with a single 1 GiB layer, gzip'd with stored blocks (level 0).
//!
//! A layout is written to `NAME.tmp` and renamed into place when complete, so an interrupted
//! run never leaves a half-written fixture that a later run would take as done.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use mirror_core::testing::{LayerCompression, TestImage, TestIndex};

/// The tag every fixture carries in its layout.
const TAG: &str = "v1";
const MB: u64 = 1_000_000;
const GIB: u64 = 1 << 30;

fn write(name: &str, dir: &Path) -> anyhow::Result<()> {
    match name {
        "single" => {
            TestImage::builder()
                .seed(0xbe7c_0001)
                .layers([80 * MB, 60 * MB, 30 * MB, 20 * MB, 10 * MB])
                .compression(LayerCompression::Fast)
                .platform("linux/amd64")
                .write_layout(dir, TAG)?;
        }
        "multi" => {
            // Held in memory while built (~200 MB), then written out.
            let template = TestImage::builder()
                .seed(0xbe7c_0100)
                .layers([40 * MB, 30 * MB, 15 * MB, 10 * MB, 5 * MB])
                .compression(LayerCompression::Fast);
            TestIndex::for_platforms(&template, &["linux/amd64", "linux/arm64"])
                .write_layout(dir, TAG)?;
        }
        "big" => {
            // Stored deflate blocks: as fast as a copy, and random bytes do not compress.
            TestImage::builder()
                .seed(0xbe7c_1000)
                .layers([GIB])
                .compression(LayerCompression::Stored)
                .platform("linux/amd64")
                .write_layout(dir, TAG)?;
        }
        other => bail!("unknown fixture {other:?} (expected single, multi or big)"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out: PathBuf = args
        .next()
        .context("usage: bench_fixture OUT_DIR [single|multi|big]...")?
        .into();
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = vec!["single".into(), "multi".into(), "big".into()];
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for name in &names {
        let dir = out.join(name);
        if dir.join("index.json").is_file() {
            eprintln!("fixture {name}: {} exists, kept", dir.display());
            continue;
        }
        let tmp = out.join(format!("{name}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        let started = Instant::now();
        write(name, &tmp).with_context(|| format!("writing fixture {name}"))?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
        eprintln!(
            "fixture {name}: written to {} in {:.1}s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
