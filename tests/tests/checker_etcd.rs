//! The workload and the linearizability checker against a real etcd: a correct store must
//! pass, which is what makes a failure against skiff's store mean something.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use skiff_tests::history::{Input, Operation, Outcome, Output};
use skiff_tests::linearizability::{check, CheckOptions};
use skiff_tests::workload::{run_workload, WorkloadConfig};

const ETCD: &str = "/usr/bin/etcd";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A single-member etcd in a temporary directory, killed on drop.
struct Etcd {
    child: Child,
    client_url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> anyhow::Result<Self> {
        if !std::path::Path::new(ETCD).exists() {
            bail!("{ETCD} is missing: install Debian's etcd-server package");
        }
        let dir = tempfile::tempdir()?;
        let client_url = format!("http://127.0.0.1:{}", free_port()?);
        let peer_url = format!("http://127.0.0.1:{}", free_port()?);
        let child = Command::new(ETCD)
            .arg("--name=checker")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=checker={peer_url}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                dir.path().join("etcd.log"),
            )?))
            .spawn()
            .with_context(|| format!("starting {ETCD}"))?;
        Ok(Etcd {
            child,
            client_url,
            _dir: dir,
        })
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("etcd exited early: {status}");
            }
            let attempt = async {
                let mut c = etcd_client::Client::connect([&self.client_url], None).await?;
                c.get("/ready-probe", None).await?;
                Ok::<_, etcd_client::Error>(())
            };
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
                return Ok(());
            }
            if Instant::now() >= give_up {
                bail!("etcd at {} not ready after 20 s", self.client_url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_history_is_linearizable() -> anyhow::Result<()> {
    let mut etcd = Etcd::start()?;
    etcd.wait_ready().await?;

    let cfg = WorkloadConfig {
        clients: 8,
        keys: 5,
        total_ops: Some(3000),
        duration: Some(Duration::from_secs(20)),
        op_timeout: Duration::from_secs(2),
        seed: 1,
        key_prefix: "/checker/".into(),
        balanced: false,
    };
    let run = run_workload(vec![etcd.client_url.clone()], cfg).await?;
    println!(
        "workload: {} ops in {:.2}s ({:.0} ops/s): {} ok, {} unknown, {} failed",
        run.history.ops.len(),
        run.elapsed.as_secs_f64(),
        run.ops_per_sec(),
        run.ok,
        run.unknown,
        run.failed
    );
    let cas = |succeeded: bool| {
        let is = |o: &&Operation| matches!(&o.outcome, Outcome::Ok { output: Output::Cas { succeeded: s, .. }, .. } if *s == succeeded);
        run.history.ops.iter().filter(is).count()
    };
    let (cas_ok, cas_failed) = (cas(true), cas(false));
    println!("compare-and-swap: {cas_ok} succeeded, {cas_failed} failed");
    // Both branches of the transaction must be exercised for the run to test them.
    assert!(cas_ok > 0 && cas_failed > 0);
    assert!(run.history.ops.len() >= 1000, "too few ops to mean much");
    assert_eq!(run.malformed, 0);
    assert!(
        run.revision_regressions.is_empty(),
        "{:?}",
        run.revision_regressions
    );
    assert!(
        run.max_revision.iter().all(|&r| r > 0),
        "{:?}",
        run.max_revision
    );

    let started = Instant::now();
    let report = check(&run.history.ops, &CheckOptions::default());
    println!(
        "check: {} in {:.3}s",
        report.result,
        started.elapsed().as_secs_f64()
    );
    if !report.result.is_ok() {
        let path = std::env::temp_dir().join("checker_etcd.history.jsonl");
        run.history.dump(&path)?;
        panic!("{}\nhistory written to {}", report.result, path.display());
    }

    // The same real history with one read made stale must fail: the pipeline can fail.
    let mut ops = run.history.ops.clone();
    assert!(make_one_read_stale(&mut ops), "no read could be made stale");
    let report = check(&ops, &CheckOptions::default());
    assert!(report.result.is_violation(), "{}", report.result);
    Ok(())
}

/// Makes a read return the value of a put that another completed put overwrote before
/// the read began.
fn make_one_read_stale(ops: &mut [Operation]) -> bool {
    let acked_put = |o: &Operation| match (&o.input, &o.outcome) {
        (Input::Put { value }, Outcome::Ok { .. }) => Some(value.clone()),
        _ => None,
    };
    for r in 0..ops.len() {
        let read = &ops[r];
        if read.input != Input::Get || !read.outcome.is_ok() {
            continue;
        }
        let before: Vec<&Operation> = ops
            .iter()
            .filter(|w| w.key == read.key && w.ret < read.call && acked_put(w).is_some())
            .collect();
        let Some(w2) = before.iter().max_by_key(|w| w.call) else {
            continue;
        };
        let Some(w1) = before.iter().find(|w| w.ret < w2.call) else {
            continue;
        };
        let stale = acked_put(w1);
        ops[r].outcome = Outcome::ok(Output::Get { value: stale });
        return true;
    }
    false
}

/// Clients given a dead endpoint besides a live one still get their work done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_survives_a_dead_endpoint() -> anyhow::Result<()> {
    let mut etcd = Etcd::start()?;
    etcd.wait_ready().await?;
    let dead = format!("http://127.0.0.1:{}", free_port()?);

    // Pinned clients move off the dead member after two failures; the balancer keeps
    // sending some requests to it, so it gets a lower bar.
    for (balanced, min_ok) in [(false, 280), (true, 150)] {
        let cfg = WorkloadConfig {
            clients: 4,
            keys: 2,
            total_ops: Some(300),
            duration: Some(Duration::from_secs(15)),
            op_timeout: Duration::from_secs(1),
            seed: 2,
            key_prefix: format!("/dead-endpoint-{balanced}/"),
            balanced,
        };
        let run = run_workload(vec![dead.clone(), etcd.client_url.clone()], cfg).await?;
        println!(
            "with a dead endpoint (balanced: {balanced}): {} ops, {} ok, {} unknown",
            run.history.ops.len(),
            run.ok,
            run.unknown
        );
        assert!(run.ok >= min_ok, "only {} of 300 ops succeeded", run.ok);
        let report = check(&run.history.ops, &CheckOptions::default());
        assert!(report.result.is_ok(), "{}", report.result);
    }
    Ok(())
}
