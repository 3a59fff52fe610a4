//! Store features through the `etcd-client` crate (the client the apiserver will use):
//! watch streams with many watchers, history replay, filters, progress and compaction;
//! and a follower that fell behind the compacted Raft log catching up from a snapshot.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchFilterType,
    WatchOptions, WatchResponse, WatchStream,
};
use skiff_tests::cluster::{Cluster, ClusterSpec, Flavor};

async fn next(stream: &mut WatchStream) -> Result<WatchResponse> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .context("no watch response within 10 s")??
        .context("watch stream ended")
}

/// The next response that carries events or cancels (skipping `created` notices).
async fn next_events(stream: &mut WatchStream) -> Result<WatchResponse> {
    loop {
        let r = next(stream).await?;
        if !r.events().is_empty() || r.canceled() {
            return Ok(r);
        }
    }
}

fn summary(r: &WatchResponse) -> Vec<(EventType, String, String)> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event kv");
            (
                e.event_type(),
                String::from_utf8_lossy(kv.key()).to_string(),
                String::from_utf8_lossy(kv.value()).to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_behave_as_etcds() -> Result<()> {
    let cluster = Cluster::start(ClusterSpec::new(Flavor::skiff()?, 3)).await?;
    let mut client = cluster.client().await?;
    let start = client
        .put("w/a", "1", None)
        .await?
        .header()
        .map(|h| h.revision())
        .unwrap_or(0);
    client.put("w/b", "2", None).await?;
    client.delete("w/a", None).await?;

    // Replay from a past revision with prev_kv, then live events, on one stream.
    let mut stream = client
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(start)
                    .with_prev_key(),
            ),
        )
        .await?;
    let created = next(&mut stream).await?;
    assert!(created.created());
    let mut replayed = Vec::new();
    while replayed.len() < 3 {
        let r = next_events(&mut stream).await?;
        replayed.extend(r.events().iter().cloned());
    }
    let kinds: Vec<EventType> = replayed.iter().map(|e| e.event_type()).collect();
    assert_eq!(kinds, [EventType::Put, EventType::Put, EventType::Delete]);
    let prev = replayed[2].prev_kv().expect("prev_kv on the delete");
    assert_eq!(prev.value(), b"1");

    // A second watcher on the same stream, filtering out deletes.
    stream
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_filters([WatchFilterType::NoDelete]),
            ),
        )
        .await?;
    let second = next(&mut stream).await?;
    assert!(second.created());
    let second_id = second.watch_id();
    assert_ne!(second_id, created.watch_id());

    // One transaction, one revision: its events arrive together in one response.
    let txn = Txn::new()
        .when([Compare::version("w/b", CompareOp::Equal, 1)])
        .and_then([
            TxnOp::put("w/c", "3", None),
            TxnOp::put("w/d", "4", None),
            TxnOp::delete("w/b", None),
        ]);
    assert!(client.txn(txn).await?.succeeded());
    let mut by_watcher = std::collections::HashMap::new();
    while by_watcher.len() < 2 {
        let r = next_events(&mut stream).await?;
        let revs: Vec<i64> = r
            .events()
            .iter()
            .map(|e| e.kv().expect("kv").mod_revision())
            .collect();
        assert!(
            revs.windows(2).all(|w| w[0] == w[1]),
            "one revision: {revs:?}"
        );
        by_watcher.insert(r.watch_id(), summary(&r));
    }
    assert_eq!(by_watcher[&created.watch_id()].len(), 3);
    assert_eq!(
        by_watcher[&second_id],
        vec![
            (EventType::Put, "w/c".to_string(), "3".to_string()),
            (EventType::Put, "w/d".to_string(), "4".to_string()),
        ],
        "NODELETE leaves out the delete"
    );

    // Progress: the header says how far every event has been delivered.
    let current = client
        .get("w/", Some(GetOptions::new().with_prefix()))
        .await?
        .header()
        .map(|h| h.revision())
        .unwrap_or(0);
    stream.request_progress().await?;
    let progress = loop {
        let r = next(&mut stream).await?;
        if r.events().is_empty() && !r.created() && !r.canceled() {
            break r;
        }
    };
    assert_eq!(progress.header().map(|h| h.revision()), Some(current));

    // Cancel one watcher: the other still gets events.
    stream.cancel(second_id).await?;
    let cancelled = next(&mut stream).await?;
    assert!(cancelled.canceled() && cancelled.watch_id() == second_id);
    client.put("w/e", "5", None).await?;
    let r = next_events(&mut stream).await?;
    assert_eq!(r.watch_id(), created.watch_id());

    // A start revision below the compaction point is answered with compact_revision.
    let now = client
        .put("w/f", "6", None)
        .await?
        .header()
        .map(|h| h.revision())
        .unwrap_or(0);
    client.compact(now, None).await?;
    let mut old = client
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_start_revision(start)),
        )
        .await?;
    let r = next_events(&mut old).await?;
    assert!(r.canceled());
    assert_eq!(r.compact_revision(), now);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_compacted_log_catches_up_from_a_snapshot() -> Result<()> {
    let mut spec = ClusterSpec::new(Flavor::skiff()?, 3);
    spec.snapshot_count = Some(100);
    let cluster = Cluster::start(spec).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let follower = (leader + 1) % 3;
    cluster.kill(follower)?;
    let mut client = cluster.member_client(leader).await?;
    let mut last = 0;
    for i in 0..600 {
        let lease = None::<PutOptions>;
        let r = client
            .put(format!("k{i:04}"), format!("v{i}"), lease)
            .await?;
        last = r.header().map(|h| h.revision()).unwrap_or(0);
    }
    cluster.restart(follower)?;
    let mut lagging = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if lagging.is_none() {
            lagging = cluster.member_client(follower).await.ok();
        }
        if let Some(c) = lagging.as_mut() {
            let got = c
                .get("k0599", Some(GetOptions::new().with_serializable()))
                .await;
            if got.is_ok_and(|g| g.kvs().len() == 1) {
                break;
            }
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the restarted follower did not catch up; its log ends:\n{}",
                cluster.log_tail(follower)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(cluster.log_path(follower))?;
    assert!(
        log.contains("installing snapshot from leader"),
        "the follower should have needed a snapshot"
    );
    let c = lagging.as_mut().expect("connected");
    let all = c
        .get(
            "k",
            Some(GetOptions::new().with_prefix().with_serializable()),
        )
        .await?;
    assert_eq!(all.kvs().len(), 600);
    let mut hashes = Vec::new();
    for i in 0..3 {
        hashes.push(cluster.member_client(i).await?.hash_kv(last).await?.hash());
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    Ok(())
}
