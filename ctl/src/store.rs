//! `skiffctl store …`: snapshots and membership of skiff's store, over its etcd API.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use skiff_proto::etcdserverpb::cluster_client::ClusterClient;
use skiff_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use skiff_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberRemoveRequest, SnapshotRequest,
};
use skiff_store::config::parse_initial_cluster;
use skiff_store::snapshot::{restore, RestoreOptions};
use tonic::transport::{Channel, Endpoint};

#[derive(Args)]
pub struct StoreArgs {
    /// The store's client endpoints (HOST:PORT or http://HOST:PORT, comma-separated).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        env = "SKIFF_STORE_ENDPOINTS"
    )]
    endpoints: String,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Save and restore backups of the store.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// List, add and remove store members.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Stream a consistent backup from one member into FILE.
    Save {
        /// Where to write the backup.
        file: PathBuf,
    },
    /// Build a new member's data directory from a backup (every member of the new
    /// cluster is restored from the same file, then started with these flags).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new data directory (must not exist or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// This member's name in the new cluster.
        #[arg(long)]
        name: String,
        /// The new cluster: name=URL,name=URL,…
        #[arg(long)]
        initial_cluster: String,
        /// The new cluster's token.
        #[arg(long, default_value = "skiff-cluster")]
        initial_cluster_token: String,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// List the members.
    List,
    /// Add a member (then start it with --initial-cluster-state existing).
    Add {
        /// The new member's name.
        name: String,
        /// Its peer URLs, comma-separated.
        #[arg(long)]
        peer_urls: String,
    },
    /// Remove a member by its hex ID.
    Remove {
        /// The member's ID, in hex as `member list` prints it.
        id: String,
    },
}

pub async fn run(args: StoreArgs) -> Result<()> {
    match args.command {
        StoreCommand::Snapshot {
            command: SnapshotCommand::Save { file },
        } => save(&args.endpoints, file).await,
        StoreCommand::Snapshot {
            command:
                SnapshotCommand::Restore {
                    file,
                    data_dir,
                    name,
                    initial_cluster,
                    initial_cluster_token,
                },
        } => {
            let opts = RestoreOptions {
                name,
                initial_cluster: parse_initial_cluster(&initial_cluster)?,
                initial_cluster_token,
            };
            restore(&file, &data_dir, &opts)?;
            println!(
                "restored {} into {}; start the member with --data-dir {} (all members of the new cluster are restored from the same file)",
                file.display(),
                data_dir.display(),
                data_dir.display()
            );
            Ok(())
        }
        StoreCommand::Member { command } => {
            let channel = connect(&args.endpoints).await?;
            let mut client = ClusterClient::new(channel);
            match command {
                MemberCommand::List => {
                    let resp = client
                        .member_list(MemberListRequest {
                            linearizable: false,
                        })
                        .await
                        .map_err(status)?
                        .into_inner();
                    print_members(&resp.members);
                }
                MemberCommand::Add { name, peer_urls } => {
                    let urls: Vec<String> =
                        peer_urls.split(',').map(|s| s.trim().to_string()).collect();
                    let resp = client
                        .member_add(MemberAddRequest {
                            peer_ur_ls: urls.clone(),
                            is_learner: false,
                        })
                        .await
                        .map_err(status)?
                        .into_inner();
                    let id = resp.member.as_ref().map_or(0, |m| m.id);
                    println!("member {name} added with ID {id:x}");
                    let cluster: Vec<String> = resp
                        .members
                        .iter()
                        .flat_map(|m| {
                            let n = if m.id == id {
                                name.clone()
                            } else {
                                m.name.clone()
                            };
                            m.peer_ur_ls.iter().map(move |u| format!("{n}={u}"))
                        })
                        .collect();
                    println!("start it with:");
                    println!(
                        "  skiff store --name {name} --initial-advertise-peer-urls {} --initial-cluster {} --initial-cluster-state existing …",
                        urls.join(","),
                        cluster.join(",")
                    );
                }
                MemberCommand::Remove { id } => {
                    let parsed = u64::from_str_radix(id.trim_start_matches("0x"), 16)
                        .with_context(|| {
                            format!(
                                "'{id}' is not a hex member ID (see `skiffctl store member list`)"
                            )
                        })?;
                    client
                        .member_remove(MemberRemoveRequest { id: parsed })
                        .await
                        .map_err(status)?;
                    println!("member {parsed:x} removed");
                }
            }
            Ok(())
        }
    }
}

fn print_members(members: &[Member]) {
    println!(
        "{:<18} {:<10} {:<12} {:<40} CLIENT URLS",
        "ID", "STATUS", "NAME", "PEER URLS"
    );
    for m in members {
        let status = if m.name.is_empty() {
            "unstarted"
        } else {
            "started"
        };
        println!(
            "{:<18x} {:<10} {:<12} {:<40} {}",
            m.id,
            status,
            m.name,
            m.peer_ur_ls.join(","),
            m.client_ur_ls.join(",")
        );
    }
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow!("{} ({:?})", s.message(), s.code())
}

/// A member's id and the leader it knows of (0: none), from its Status.
pub async fn member_status(endpoint: &str) -> Result<(u64, u64)> {
    let channel = connect(endpoint).await?;
    let status = MaintenanceClient::new(channel)
        .status(skiff_proto::etcdserverpb::StatusRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let id = status.header.map_or(0, |h| h.member_id);
    Ok((id, status.leader))
}

/// Connects to the first endpoint that answers.
async fn connect(endpoints: &str) -> Result<Channel> {
    let mut errors = Vec::new();
    for ep in endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let url = if ep.contains("://") {
            ep.to_string()
        } else {
            format!("http://{ep}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("'{ep}' is not a valid endpoint"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60));
        match endpoint.connect().await {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    if errors.is_empty() {
        bail!("no endpoints given (--endpoints)");
    }
    bail!("cannot reach any store endpoint: {}", errors.join("; "))
}

async fn save(endpoints: &str, file: PathBuf) -> Result<()> {
    let channel = connect(endpoints).await?;
    let mut client = MaintenanceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let mut stream = client
        .snapshot(SnapshotRequest {})
        .await
        .map_err(status)?
        .into_inner();
    // Written to a side file and renamed, so a failed save never leaves a partial backup
    // under the requested name.
    let part = file.with_extension("part");
    let mut out = std::fs::File::create(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    let mut total = 0usize;
    while let Some(chunk) = stream.message().await.map_err(status)? {
        out.write_all(&chunk.blob)
            .with_context(|| format!("writing {}", part.display()))?;
        total += chunk.blob.len();
    }
    out.sync_all()?;
    drop(out);
    // Check what was received before calling it a backup.
    let bytes = std::fs::read(&part)?;
    if let Err(e) = skiff_store::snapshot::read_backup(&bytes) {
        let _ = std::fs::remove_file(&part);
        bail!("the snapshot received is not valid ({e})");
    }
    std::fs::rename(&part, &file)
        .with_context(|| format!("renaming {} to {}", part.display(), file.display()))?;
    println!("Snapshot saved at {} ({} bytes)", file.display(), total);
    Ok(())
}
