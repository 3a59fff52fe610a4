//! The cluster harness checked against real etcd 3.4, so that a skiff test failing
//! under it points at skiff, not at the harness.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use etcd_client::GetOptions;
use skiff_tests::cluster::{Cluster, ClusterSpec, Flavor};

const WAIT: Duration = Duration::from_secs(20);

/// Unwraps a test body's result while its cluster is still alive, so that the panic
/// makes the cluster's drop print the members' logs.
fn ok(result: Result<()>) {
    if let Err(e) = result {
        panic!("{e:?}");
    }
}

fn spec(cut_links: bool) -> ClusterSpec {
    ClusterSpec {
        cut_links,
        ..ClusterSpec::new(Flavor::Etcd, 3)
    }
}

async fn value_at(cluster: &Cluster, i: usize, key: &str) -> Result<Option<Vec<u8>>> {
    let mut client = cluster.member_client(i).await?;
    let resp = client
        .get(key, Some(GetOptions::new().with_serializable()))
        .await?;
    Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
}

/// Puts through a client of the given members only, so a cut or dead one is never asked.
async fn put_via(cluster: &Cluster, members: &[usize], key: &str, value: &str) -> Result<()> {
    let endpoints: Vec<String> = members.iter().map(|&i| cluster.endpoint(i)).collect();
    let mut client = etcd_client::Client::connect(&endpoints, None).await?;
    // An election may be under way: retry for a while, as a client would.
    let deadline = Instant::now() + WAIT;
    loop {
        match client.put(key, value, None).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("put {key} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context(format!("put {key}")),
        }
    }
}

async fn raft_index(cluster: &Cluster, i: usize) -> Result<u64> {
    Ok(cluster.status(i).await?.raft_index())
}

async fn wait_caught_up(cluster: &Cluster, i: usize, leader: usize) -> Result<()> {
    let target = raft_index(cluster, leader).await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let index = raft_index(cluster, i).await.unwrap_or(0);
        if index >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} stuck at raft index {index}, leader at {target}",
                cluster.name(i)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn new_leader_other_than(cluster: &Cluster, old: usize) -> Result<usize> {
    let deadline = Instant::now() + WAIT;
    loop {
        match cluster.leader().await {
            Some(i) if i != old => return Ok(i),
            _ if Instant::now() >= deadline => bail!("no new leader replaced {old}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_kill_leader_and_restart() {
    let cluster = Cluster::start(spec(false)).await.unwrap();
    ok(put_get_kill_leader_and_restart_on(&cluster).await);
}

async fn put_get_kill_leader_and_restart_on(cluster: &Cluster) -> Result<()> {
    assert_eq!(cluster.client_endpoints().len(), 3);

    let mut client = cluster.client().await?;
    client.put("greeting", "hello", None).await?;
    let got = client.get("greeting", None).await?;
    assert_eq!(got.kvs()[0].value(), b"hello");

    let old = cluster.wait_for_leader(WAIT).await?;
    let pid = cluster.member_pid(old).context("leader has a pid")?;
    cluster.kill(old)?;
    assert_eq!(cluster.member_pid(old), None);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    let new = new_leader_other_than(cluster, old).await?;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    put_via(cluster, &survivors, "after-kill", "yes").await?;

    cluster.restart(old)?;
    cluster.wait_ready(old, WAIT).await?;
    assert_ne!(cluster.member_pid(old), Some(pid));
    wait_caught_up(cluster, old, new).await?;
    assert_eq!(
        value_at(cluster, old, "after-kill").await?.as_deref(),
        Some(&b"yes"[..])
    );
    let log = std::fs::read_to_string(cluster.log_path(old))?;
    assert_eq!(log.matches("--- harness: starting").count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_follower_then_heal() {
    let cluster = Cluster::start(spec(true)).await.unwrap();
    ok(cut_follower_then_heal_on(&cluster).await);
}

async fn cut_follower_then_heal_on(cluster: &Cluster) -> Result<()> {
    let leader = cluster.wait_for_leader(WAIT).await?;
    let cut = (leader + 1) % 3;
    let majority: Vec<usize> = (0..3).filter(|&i| i != cut).collect();

    cluster.cut(cut)?;
    let before = raft_index(cluster, cut).await?;
    for n in 0..20 {
        put_via(cluster, &majority, &format!("k{n}"), "v").await?;
    }
    let leader = cluster.wait_for_leader(WAIT).await?;
    ensure!(leader != cut, "the cut member cannot lead a majority");
    let leader_index = raft_index(cluster, leader).await?;
    let cut_index = raft_index(cluster, cut).await?;
    ensure!(
        cut_index < leader_index && cut_index <= before + 1,
        "cut member moved from {before} to {cut_index}, leader at {leader_index}: the cut leaks"
    );
    ensure!(value_at(cluster, cut, "k19").await?.is_none());

    cluster.heal(cut)?;
    wait_caught_up(cluster, cut, leader).await?;
    assert_eq!(
        value_at(cluster, cut, "k19").await?.as_deref(),
        Some(&b"v"[..])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_is_replaced() {
    let cluster = Cluster::start(spec(true)).await.unwrap();
    ok(isolated_leader_is_replaced_on(&cluster).await);
}

async fn isolated_leader_is_replaced_on(cluster: &Cluster) -> Result<()> {
    cluster.wait_for_leader(WAIT).await?;
    let old = cluster.isolate_leader().await?;
    new_leader_other_than(cluster, old).await?;
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    put_via(cluster, &majority, "during-isolation", "1").await?;

    cluster.heal_all()?;
    let leader = cluster.wait_for_leader(WAIT).await?;
    put_via(cluster, &[leader], "after-heal", "2").await?;
    wait_caught_up(cluster, old, leader).await?;
    assert_eq!(
        value_at(cluster, old, "during-isolation").await?.as_deref(),
        Some(&b"1"[..])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_minority_and_freeze() {
    let cluster = Cluster::start(spec(true)).await.unwrap();
    ok(partition_minority_and_freeze_on(&cluster).await);
}

async fn partition_minority_and_freeze_on(cluster: &Cluster) -> Result<()> {
    let leader = cluster.wait_for_leader(WAIT).await?;
    let follower = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|&i| i != follower).collect();

    // SIGSTOP: the majority goes on without the frozen member.
    cluster.stop(follower)?;
    put_via(cluster, &others, "while-frozen", "1").await?;
    cluster.cont(follower)?;
    wait_caught_up(cluster, follower, leader).await?;

    // A partition of one member from the rest is the same as cutting it.
    cluster.partition(&[follower])?;
    put_via(cluster, &others, "while-partitioned", "1").await?;
    ensure!(value_at(cluster, follower, "while-partitioned")
        .await?
        .is_none());
    cluster.heal_all()?;
    let leader = cluster.wait_for_leader(WAIT).await?;
    wait_caught_up(cluster, follower, leader).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_kills_members_and_removes_files() -> Result<()> {
    let cluster = Cluster::start(spec(false)).await?;
    let pids: Vec<u32> = (0..3).filter_map(|i| cluster.member_pid(i)).collect();
    let dir = cluster.dir().to_path_buf();
    assert!(dir.join("n1.log").is_file());
    drop(cluster);
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    assert!(!dir.exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_start_is_reported_with_its_log() -> Result<()> {
    let mut spec = spec(false);
    spec.members = 1;
    spec.election_ms = 1; // etcd refuses an election timeout under 5 heartbeats
    spec.start_timeout = Duration::from_secs(10);
    let err = match Cluster::start(spec).await {
        Ok(_) => bail!("etcd accepted an invalid election timeout"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("election"), "{err}");
    Ok(())
}
