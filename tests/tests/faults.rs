//! Fault tests, as etcd's robustness suite and Jepsen do them: concurrent clients record
//! every put/get/txn/delete on a handful of keys while members are killed (SIGKILL),
//! paused (SIGSTOP), cut off from their peers and restarted; then the history is checked
//! for linearizability (Wing–Gong with memoization, per key), revisions never went
//! backwards for any client, and all members agree on the KV hash once healed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_tests::cluster::{Cluster, ClusterSpec, Flavor};
use skiff_tests::linearizability::{check, CheckOptions};
use skiff_tests::workload::{run_workload, WorkloadConfig};

/// Operations each run records at least (the bar for one run).
const MIN_OPS: u64 = 10_000;

/// Waits for a leader other than `not`, returning how long it took from `since`.
async fn new_leader(cluster: &Cluster, not: Option<usize>, since: Instant) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = cluster.leader().await {
            if Some(l) != not {
                return Ok(since.elapsed());
            }
        }
        if Instant::now() > deadline {
            bail!("no new leader within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn leader(cluster: &Cluster) -> Result<usize> {
    cluster.wait_for_leader(Duration::from_secs(20)).await
}

/// One pass of every fault; returns the times it took to elect a new leader after the
/// leader was lost.
async fn fault_pass(cluster: &Cluster, members: usize) -> Result<Vec<Duration>> {
    let mut elections = Vec::new();
    let settle = Duration::from_secs(2);

    // SIGKILL the leader, then bring it back.
    let l = leader(cluster).await?;
    let t = Instant::now();
    cluster.kill(l)?;
    elections.push(new_leader(cluster, Some(l), t).await?);
    tokio::time::sleep(settle).await;
    cluster.restart(l)?;
    tokio::time::sleep(settle).await;

    // SIGKILL a follower.
    let l = leader(cluster).await?;
    let f = (l + 1) % members;
    cluster.kill(f)?;
    tokio::time::sleep(settle).await;
    cluster.restart(f)?;
    tokio::time::sleep(settle).await;

    // SIGSTOP the leader long enough for the others to elect another, then SIGCONT.
    let l = leader(cluster).await?;
    let t = Instant::now();
    cluster.stop(l)?;
    elections.push(new_leader(cluster, Some(l), t).await?);
    tokio::time::sleep(settle).await;
    cluster.cont(l)?;
    tokio::time::sleep(settle).await;

    // Cut the leader off from the rest, then heal.
    let t = Instant::now();
    let l = cluster.isolate_leader().await?;
    elections.push(new_leader(cluster, Some(l), t).await?);
    tokio::time::sleep(settle * 2).await;
    cluster.heal_all()?;
    tokio::time::sleep(settle).await;

    // SIGKILL everyone, restart everyone: nothing acknowledged may be lost.
    for i in 0..members {
        cluster.kill(i)?;
    }
    for i in 0..members {
        cluster.restart(i)?;
    }
    leader(cluster).await?;
    tokio::time::sleep(settle).await;
    Ok(elections)
}

async fn faults(members: usize, seed: u64) -> Result<()> {
    let mut spec = ClusterSpec::new(Flavor::skiff()?, members);
    spec.cut_links = true;
    let cluster = Arc::new(Cluster::start(spec).await?);
    let cfg = WorkloadConfig {
        clients: 12,
        keys: 6,
        total_ops: Some(MIN_OPS + 1_000),
        duration: Some(Duration::from_secs(240)),
        op_timeout: Duration::from_secs(1),
        seed,
        key_prefix: format!("/faults-{members}/"),
        balanced: false,
    };
    let workload = tokio::spawn(run_workload(cluster.client_endpoints(), cfg));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut elections = Vec::new();
    let mut passes = 0;
    // At least one full pass of faults; more while the clients are still busy.
    while passes == 0 || !workload.is_finished() {
        elections.extend(fault_pass(&cluster, members).await?);
        passes += 1;
    }
    let run = workload.await.context("workload task")??;

    // Heal whatever is left and let every member catch up.
    cluster.heal_all()?;
    leader(&cluster).await?;
    let mut client = cluster.client().await?;
    let marker = client.put("/faults-marker", "done", None).await?;
    let rev = marker.header().map(|h| h.revision()).unwrap_or(0);
    let mut hashes = Vec::new();
    for i in 0..members {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut c = cluster.member_client(i).await?;
        loop {
            let got = c
                .get(
                    "/faults-marker",
                    Some(etcd_client::GetOptions::new().with_serializable()),
                )
                .await;
            if got.is_ok_and(|g| g.header().map(|h| h.revision()).unwrap_or(0) >= rev) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "member {i} did not catch up to revision {rev}; its log ends:\n{}",
                    cluster.log_tail(i)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let h = c.hash_kv(rev).await?;
        hashes.push(h.hash());
    }

    let report = check(&run.history.ops, &CheckOptions::default());
    let ops = run.history.ops.len() as u64;
    let mut ms: Vec<u128> = elections.iter().map(|d| d.as_millis()).collect();
    ms.sort_unstable();
    println!(
        "faults members={members} passes={passes} ops={ops} ok={} unknown={} failed={} ops_per_s={:.0} elections_ms={ms:?} check={}",
        run.ok,
        run.unknown,
        run.failed,
        run.ops_per_sec(),
        report.result
    );
    for k in &report.keys {
        println!(
            "  key {} ops={} steps={} check_ms={}",
            k.key,
            k.ops,
            k.steps,
            k.elapsed.as_millis()
        );
    }
    if !report.result.is_ok() {
        let dump = std::env::temp_dir().join(format!("skiff-faults-{members}-history.jsonl"));
        run.history.dump(&dump)?;
        bail!(
            "history is not linearizable ({}); history written to {}",
            report.result,
            dump.display()
        );
    }
    assert!(ops >= MIN_OPS, "only {ops} operations recorded");
    assert!(
        run.ok > ops / 2,
        "most operations should succeed: {} of {ops}",
        run.ok
    );
    assert!(
        run.revision_regressions.is_empty(),
        "revisions went backwards: {:?}",
        run.revision_regressions
    );
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "members disagree on the KV hash at revision {rev}: {hashes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_kills_pauses_and_partitions() -> Result<()> {
    faults(3, 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_survive_kills_pauses_and_partitions() -> Result<()> {
    faults(5, 5).await
}
