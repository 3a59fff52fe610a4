//! docs/tour.md, run: every `sh` block of the tour against a fresh lab of its own, in
//! order, each checked against what the tour says you will see (the directives after the
//! block, see `skiff_tests::tour`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_tests::cluster::skiff_binary;
use skiff_tests::tour::{parse, Block};

use crate::lab::TestLab;

/// Where the tour keeps its files (the tour's own commands name it too).
const TOUR_DIR: &str = "/tmp/skiff-tour";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

#[test]
fn every_step_of_the_tour_shows_what_it_says_on_a_fresh_lab() -> Result<()> {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("docs/tour.md"))?;
    let blocks = parse(&text).map_err(|e| anyhow::anyhow!("docs/tour.md: {e}"))?;
    assert!(blocks.len() > 20, "the tour has {} blocks", blocks.len());

    let _ = std::fs::remove_dir_all(TOUR_DIR);
    let lab = TestLab::up()?;
    let _cleanup = TourFiles;
    let bin_dir = skiff_binary()?
        .parent()
        .context("the skiff binary's folder")?
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for block in &blocks {
        if block.skip.is_some() {
            continue;
        }
        let started = Instant::now();
        run(&root, &lab, &path, block).with_context(|| {
            format!(
                "docs/tour.md line {} (step {:?}):\n{}\n{}",
                block.line,
                block.step,
                block.script,
                lab.logs_of("w1")
            )
        })?;
        // Shown with --no-capture, and with a failure: how far the tour got, how fast.
        eprintln!(
            "tour: line {} ({}) shown in {:.1}s",
            block.line,
            block.step,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Runs a block until it shows what it should (once, for a `once` block).
fn run(root: &Path, lab: &TestLab, path: &str, block: &Block) -> Result<()> {
    let deadline = Instant::now() + block.within;
    loop {
        let out = Command::new("timeout")
            .arg(block.within.as_secs().max(30).to_string())
            .args(["bash", "-c"])
            .arg(format!("set -euo pipefail\nexec 2>&1\n{}", block.script))
            .current_dir(root)
            .env("PATH", path)
            .env("KUBECONFIG", &lab.kubeconfig)
            .env("SKIFF_LAB", &lab.name)
            .env("SKIFF_LAB_DIR", &lab.dir)
            .env_remove("SKIFF_STORE_ENDPOINTS")
            .env_remove("ETCDCTL_ENDPOINTS")
            .output()
            .context("running bash")?;
        let output = String::from_utf8_lossy(&out.stdout).into_owned();
        match block.check(out.status.success(), &output) {
            Ok(()) => return Ok(()),
            Err(why) if block.once || Instant::now() > deadline => {
                bail!("{why} ({}); its output:\n{output}", out.status)
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Removes the tour's files when the test ends, passed or not.
struct TourFiles;

impl Drop for TourFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(TOUR_DIR);
    }
}
