//! skiff's store: an etcd v3 wire-compatible key-value store, replicated with Raft.
//!
//! Layout:
//! - [`mvcc`]: revisions, key history, Range/Put/DeleteRange/Txn/Compact semantics (pure).
//! - [`lease`]: which leases exist (replicated) and when they expire (leader's clock).
//! - [`state`]: the state machine every member builds by applying the log, on sled.
//! - `raftlog`: raft-rs's `Storage` on sled: entries, HardState, compaction point.
//! - `node`: the Raft thread: tick, step, persist-then-send, apply, advance.
//! - `transport`: peer gRPC between members.
//! - `server`: the etcd gRPC services, `/metrics` and `/healthz`.
//! - `watchdog`: stops the member when a write to its disk never returns.
//! - [`snapshot`]: backup files and restoring a new cluster from one.
//! - [`config`]: flags and the checks on them.

pub mod config;
mod error;
pub mod lease;
pub mod mvcc;
pub mod state;

pub use config::StoreConfig;
pub use error::{Error, Result};

mod metrics;
mod node;
mod raftlog;
mod raftlogger;
mod server;
pub mod snapshot;
mod transport;
mod watch;
mod watchdog;

pub use server::VERSION;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::routing::get;
use skiff_proto::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer, Member,
};
use skiff_proto::peer::peer_server::PeerServer;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{member_id, ClusterState};
use crate::node::{NodeOptions, Shared};
use crate::raftlog::{Identity, RaftLog};
use crate::server::{Ctx, LeaseOps};
use crate::state::StateMachine;

/// How often a watcher that asked for progress notifications gets one when idle.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Runs a store member until `shutdown` completes (or the member stops on its own: it was
/// removed from the cluster, or its disk failed; then the reason is the error).
pub async fn run(config: StoreConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    config.validate()?;
    let config = Arc::new(config);
    // Bind first: a port in use is a clear, early error.
    let mut client_listeners = Vec::new();
    for addr in &config.listen_client {
        client_listeners.push(bind(*addr, "--listen-client-urls").await?);
    }
    let mut peer_listeners = Vec::new();
    for addr in &config.listen_peer {
        peer_listeners.push(bind(*addr, "--listen-peer-urls").await?);
    }

    let (db, identity, join_hints) = open_data_dir(&config).await?;
    let state_tree = db.open_tree("state")?;
    let raft_tree = db.open_tree("raft")?;
    let state =
        StateMachine::open(state_tree, config.quota_backend_bytes).map_err(|e| Error::DataDir {
            dir: config.data_dir.display().to_string(),
            reason: format!("{e}; restore the member from a snapshot or remove and re-add it"),
        })?;
    let state = Arc::new(RwLock::new(state));
    let log = RaftLog::open(raft_tree, state.clone()).map_err(|e| Error::DataDir {
        dir: config.data_dir.display().to_string(),
        reason: format!("{e}; restore the member from a snapshot or remove and re-add it"),
    })?;
    let applied = state.read().expect("state lock").applied().0;
    let (events, _) = tokio::sync::broadcast::channel(8192);
    let shared = Arc::new(Shared {
        id: identity.member_id,
        cluster_id: identity.cluster_id,
        state,
        events,
        applied: tokio::sync::watch::channel(applied).0,
        raft: Default::default(),
        lease_clock: Mutex::new(Default::default()),
        metrics: Default::default(),
        storage: Default::default(),
        fatal: Mutex::new(None),
        stop: tokio::sync::Notify::new(),
    });
    let transport = transport::Transport::new(shared.clone(), tokio::runtime::Handle::current());
    for m in join_hints {
        transport.add_hint(m.id, m.peer_ur_ls);
    }
    let opts = NodeOptions {
        tick: config.heartbeat_interval,
        election_ticks: (config.election_timeout.as_millis()
            / config.heartbeat_interval.as_millis().max(1)) as usize,
        snapshot_count: config.snapshot_count,
    };
    let (node, handle) = node::build(
        db.clone(),
        log,
        shared.clone(),
        Box::new(transport.clone()),
        opts,
    )?;
    transport.attach(handle.clone());
    watchdog::spawn(shared.clone(), config.data_dir.clone())?;
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn({
            let shared = shared.clone();
            move || {
                // A bug must not leave a member that answers but never commits.
                if let Err(panic) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.run()))
                {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    shared.stop_with(format!("the raft thread failed: {what}"));
                }
            }
        })
        .map_err(|e| Error::Io {
            context: "starting the raft thread".into(),
            source: e,
        })?;
    info!(
        name = %config.name,
        member = format!("{:x}", shared.id),
        cluster = format!("{:x}", shared.cluster_id),
        "store member started"
    );

    let ctx = Ctx {
        node: handle.clone(),
        config: config.clone(),
        transport: transport.clone(),
        db: db.clone(),
    };
    let lease_ops = Arc::new(LeaseOps { ctx: ctx.clone() });
    let max_msg = config.max_request_bytes + 512 * 1024;
    let grpc = tonic::service::Routes::new(
        KvServer::new(server::KvService(ctx.clone()))
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        WatchServer::new(watch::WatchService {
            ctx: ctx.clone(),
            progress_interval: PROGRESS_INTERVAL,
        })
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(usize::MAX),
    )
    .add_service(
        LeaseServer::new(server::LeaseService(lease_ops.clone()))
            .max_decoding_message_size(max_msg),
    )
    .add_service(
        ClusterServer::new(server::ClusterService(ctx.clone())).max_decoding_message_size(max_msg),
    )
    .add_service(
        MaintenanceServer::new(server::MaintenanceService(ctx.clone()))
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(usize::MAX),
    );
    let metrics_ctx = ctx.clone();
    let health_ctx = ctx.clone();
    let client_router = grpc
        .into_axum_router()
        .route(
            "/metrics",
            get(move || {
                let ctx = metrics_ctx.clone();
                async move { server::metrics_text(&ctx) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let ctx = health_ctx.clone();
                async move { health(&ctx) }
            }),
        );
    let health_ctx = ctx.clone();
    let client_router = client_router.route(
        "/health",
        get(move || {
            let ctx = health_ctx.clone();
            async move { health(&ctx) }
        }),
    );
    let peer_router = tonic::service::Routes::new(
        PeerServer::new(transport::PeerService {
            node: handle.clone(),
            leases: lease_ops.clone(),
        })
        .max_decoding_message_size(transport::MAX_PEER_MESSAGE)
        .max_encoding_message_size(transport::MAX_PEER_MESSAGE),
    )
    .into_axum_router();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for (listener, router) in client_listeners
        .into_iter()
        .map(|l| (l, client_router.clone()))
        .chain(peer_listeners.into_iter().map(|l| (l, peer_router.clone())))
    {
        let mut stop = stop_rx.clone();
        servers.push(tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                warn!(error = %e, "server stopped with an error");
            }
        }));
    }
    let background = [
        tokio::spawn(server::publish_self(ctx.clone())),
        tokio::spawn(server::expire_leases(ctx.clone())),
    ];

    tokio::select! {
        _ = shutdown => info!("shutting down"),
        _ = shared.stop.notified() => {}
    }
    for task in &background {
        task.abort();
    }
    let _ = stop_tx.send(true);
    for s in servers {
        // Streams (watches, keep-alives) would hold a graceful stop open forever.
        if tokio::time::timeout(Duration::from_secs(2), s)
            .await
            .is_err()
        {
            warn!("a server did not stop within 2 s; leaving it");
        }
    }
    let _ = handle.send(node::Command::Shutdown);
    let _ = tokio::task::spawn_blocking(move || raft_thread.join()).await;
    let fatal = shared.fatal.lock().expect("fatal lock").take();
    match fatal {
        Some(why) if why.contains("removed from the cluster") => {
            info!("{why}");
            let _op = shared.storage.begin(watchdog::StorageOp::Close);
            if let Err(e) = db.flush() {
                warn!(error = %e, "final flush failed");
            }
            Ok(())
        }
        Some(why) => {
            // sled flushes and syncs (unwrapping the result) when its last handle is
            // dropped; after a failed write that can block forever or panic. One handle
            // that is never dropped keeps it from trying; the process is ending anyway.
            std::mem::forget(db);
            Err(Error::DataDir {
                dir: config.data_dir.display().to_string(),
                reason: why,
            })
        }
        None => {
            let _op = shared.storage.begin(watchdog::StorageOp::Close);
            db.flush()?;
            Ok(())
        }
    }
}

fn health(ctx: &Ctx) -> (axum::http::StatusCode, &'static str) {
    if ctx.node.shared.leader().is_some() {
        (axum::http::StatusCode::OK, "{\"health\":\"true\"}\n")
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{\"health\":\"false\",\"reason\":\"no leader\"}\n",
        )
    }
}

async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| Error::Io {
        context: format!("cannot listen on {addr} ({flag})"),
        source: e,
    })
}

/// Refuses a data directory created for another cluster than the flags describe.
///
/// With `--initial-cluster-state new` the flags must be those the directory was created
/// with: the cluster ID is a hash of every peer URL and the token, so another token or
/// another member list asks for another cluster. etcd ignores the flags here and goes on
/// with the old data, which hides a reused data directory or a changed token until the
/// members fail to agree. `existing` leaves the membership to the data directory, as a
/// member that joined a running cluster is restarted.
fn check_same_cluster(config: &StoreConfig, identity: &Identity) -> Result<()> {
    if config.initial_cluster_state != ClusterState::New {
        return Ok(());
    }
    let refuse = |what: String| Error::DataDir {
        dir: config.data_dir.display().to_string(),
        reason: format!(
            "it belongs to member {:x} of cluster {:x}, but {what}; it was created for another \
             cluster or with other flags. Start the member with the --initial-cluster and \
             --initial-cluster-token it was created with (or --initial-cluster-state existing \
             if its cluster's membership changed since), or give it another --data-dir",
            identity.member_id, identity.cluster_id
        ),
    };
    let cluster_id = config.cluster_id();
    if cluster_id != identity.cluster_id {
        return Err(refuse(format!(
            "--initial-cluster and --initial-cluster-token '{}' describe cluster {cluster_id:x}",
            config.initial_cluster_token
        )));
    }
    let own_id = member_id(&config.advertise_peer_urls, &config.initial_cluster_token);
    if own_id != identity.member_id {
        return Err(refuse(format!(
            "--initial-cluster gives '{}' the peer URLs of member {own_id:x}",
            config.name
        )));
    }
    Ok(())
}

/// Opens this member's data directory, creating it for a new member: bootstrapped from
/// `--initial-cluster`, or (joining) with the identity the running cluster gave it.
/// Returns the peers to reach before the state machine knows them.
async fn open_data_dir(config: &StoreConfig) -> Result<(sled::Db, Identity, Vec<Member>)> {
    let dir = &config.data_dir;
    watchdog::check_free_to_start(dir)?;
    let has_db = dir.join("db").exists();
    if has_db {
        let db = node::open_db(dir)?;
        let log_tree = db.open_tree("raft")?;
        let identity = match log_tree.get(b"i")? {
            Some(_) => {
                // Read through RaftLog's decoder for one definition of the record.
                let tmp_state = Arc::new(RwLock::new(StateMachine::open(
                    db.open_tree("state")?,
                    u64::MAX,
                )?));
                RaftLog::open(log_tree, tmp_state)?.identity()?
            }
            None => None,
        };
        if let Some(identity) = identity {
            if identity.name != config.name {
                return Err(Error::DataDir {
                    dir: dir.display().to_string(),
                    reason: format!(
                        "it belongs to member '{}' (ID {:x}) of cluster {:x}, not to '{}'; \
                         pass --name {} or use another --data-dir",
                        identity.name,
                        identity.member_id,
                        identity.cluster_id,
                        config.name,
                        identity.name
                    ),
                });
            }
            check_same_cluster(config, &identity)?;
            info!(dir = %dir.display(), "restarting from existing data");
            return Ok((db, identity, Vec::new()));
        }
        // A directory without an identity was never finished: start it over.
        drop(db);
        warn!(dir = %dir.display(), "data directory was never completely set up; recreating it");
        std::fs::remove_dir_all(dir.join("db")).map_err(|e| Error::DataDir {
            dir: dir.display().to_string(),
            reason: format!("cannot remove the half-made database: {e}"),
        })?;
    }
    match config.initial_cluster_state {
        ClusterState::New => {
            let token = &config.initial_cluster_token;
            let members: Vec<Member> = config
                .initial_cluster
                .iter()
                .map(|m| Member {
                    id: member_id(&m.peer_urls, token),
                    name: m.name.clone(),
                    peer_ur_ls: m.peer_urls.clone(),
                    // Every member must bootstrap the same state; each publishes its
                    // client URLs through the log once it runs.
                    client_ur_ls: Vec::new(),
                    is_learner: false,
                })
                .collect();
            let me = members
                .iter()
                .find(|m| m.name == config.name)
                .expect("validated")
                .clone();
            let db = node::create_data_dir(dir, &me, config.cluster_id(), &members, Vec::new())?;
            Ok((
                db,
                Identity {
                    member_id: me.id,
                    cluster_id: config.cluster_id(),
                    name: me.name,
                },
                Vec::new(),
            ))
        }
        ClusterState::Existing => {
            let others: Vec<String> = config
                .initial_cluster
                .iter()
                .filter(|m| m.name != config.name)
                .flat_map(|m| m.peer_urls.clone())
                .collect();
            let resp = transport::fetch_members(&others).await.map_err(|e| {
                Error::Config(format!(
                    "--initial-cluster-state existing: cannot get the member list from any \
                     other member of --initial-cluster ({e}); is the cluster running?"
                ))
            })?;
            let mine: std::collections::BTreeSet<&String> =
                config.advertise_peer_urls.iter().collect();
            let me = resp
                .members
                .iter()
                .find(|m| {
                    m.peer_ur_ls
                        .iter()
                        .collect::<std::collections::BTreeSet<_>>()
                        == mine
                })
                .cloned()
                .ok_or_else(|| {
                    Error::Config(format!(
                        "the cluster has no member with peer URLs {}; add it first \
                         (skiffctl store member add {} --peer-urls={})",
                        config.advertise_peer_urls.join(","),
                        config.name,
                        config.advertise_peer_urls.join(",")
                    ))
                })?;
            let db = node::open_db(dir)?;
            // An empty log and state: the leader sends a snapshot first.
            let log_tree = db.open_tree("raft")?;
            let identity = Identity {
                member_id: me.id,
                cluster_id: resp.cluster_id,
                name: config.name.clone(),
            };
            let tmp_state = Arc::new(RwLock::new(StateMachine::open(
                db.open_tree("state")?,
                u64::MAX,
            )?));
            RaftLog::open(log_tree, tmp_state)?.set_identity(&identity)?;
            db.flush()?;
            Ok((db, identity, resp.members))
        }
    }
}
