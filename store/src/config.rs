//! The store's configuration: etcd's flags, parsed and checked before anything starts.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Whether this member starts a new cluster or joins an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// All members of `--initial-cluster` start together.
    New,
    /// This member was added with MemberAdd and joins a running cluster.
    Existing,
}

/// One member named in `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    /// Its name.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
}

/// Everything `skiff store` needs to run.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// This member's name (`--name`).
    pub name: String,
    /// Where the member keeps its data (`--data-dir`).
    pub data_dir: PathBuf,
    /// Addresses to serve clients on (`--listen-client-urls`).
    pub listen_client: Vec<SocketAddr>,
    /// Client URLs told to others (`--advertise-client-urls`).
    pub advertise_client_urls: Vec<String>,
    /// Addresses to serve peers on (`--listen-peer-urls`).
    pub listen_peer: Vec<SocketAddr>,
    /// Peer URLs told to others (`--initial-advertise-peer-urls`).
    pub advertise_peer_urls: Vec<String>,
    /// The members a new cluster starts with (`--initial-cluster`).
    pub initial_cluster: Vec<InitialMember>,
    /// `--initial-cluster-state`.
    pub initial_cluster_state: ClusterState,
    /// `--initial-cluster-token`: keeps two clusters with the same members apart.
    pub initial_cluster_token: String,
    /// `--heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// `--snapshot-count`: applied entries between Raft log compactions.
    pub snapshot_count: u64,
    /// `--quota-backend-bytes`: past it, writes are refused (NOSPACE alarm).
    pub quota_backend_bytes: u64,
    /// `--max-request-bytes`: the largest request accepted.
    pub max_request_bytes: usize,
}

/// etcd's default backend quota, 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's default request limit, 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

impl StoreConfig {
    /// A configuration for a single member on the given ports, for tests and examples.
    pub fn single(name: &str, data_dir: PathBuf, client: SocketAddr, peer: SocketAddr) -> Self {
        let peer_url = format!("http://{peer}");
        StoreConfig {
            name: name.to_string(),
            data_dir,
            listen_client: vec![client],
            advertise_client_urls: vec![format!("http://{client}")],
            listen_peer: vec![peer],
            advertise_peer_urls: vec![peer_url.clone()],
            initial_cluster: vec![InitialMember {
                name: name.to_string(),
                peer_urls: vec![peer_url],
            }],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "skiff-cluster".into(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_count: 100_000,
            quota_backend_bytes: DEFAULT_QUOTA_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }

    /// Checks what flags alone can tell: names, URLs, timings, limits.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::Config("--name must not be empty".into()));
        }
        if self.listen_client.is_empty() {
            return Err(Error::Config("--listen-client-urls is empty".into()));
        }
        if self.listen_peer.is_empty() {
            return Err(Error::Config("--listen-peer-urls is empty".into()));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(Error::Config("--heartbeat-interval must be above 0".into()));
        }
        if self.election_timeout < self.heartbeat_interval * 5 {
            return Err(Error::Config(format!(
                "--election-timeout ({} ms) must be at least 5 times --heartbeat-interval ({} ms)",
                self.election_timeout.as_millis(),
                self.heartbeat_interval.as_millis()
            )));
        }
        if self.snapshot_count == 0 {
            return Err(Error::Config("--snapshot-count must be above 0".into()));
        }
        if self.quota_backend_bytes == 0 {
            return Err(Error::Config(
                "--quota-backend-bytes must be above 0".into(),
            ));
        }
        let me = self
            .initial_cluster
            .iter()
            .find(|m| m.name == self.name)
            .ok_or_else(|| {
                Error::Config(format!(
                    "--initial-cluster has no member named '{}' (--name); add {}={}",
                    self.name,
                    self.name,
                    self.advertise_peer_urls.join(",")
                ))
            })?;
        let mine: BTreeSet<&String> = me.peer_urls.iter().collect();
        let advertised: BTreeSet<&String> = self.advertise_peer_urls.iter().collect();
        if mine != advertised {
            return Err(Error::Config(format!(
                "--initial-cluster gives '{}' the peer URLs {} but --initial-advertise-peer-urls is {}; they must match",
                self.name,
                me.peer_urls.join(","),
                self.advertise_peer_urls.join(",")
            )));
        }
        Ok(())
    }

    /// The ID of the cluster `--initial-cluster` and the token describe.
    pub fn cluster_id(&self) -> u64 {
        cluster_id_of(&self.initial_cluster, &self.initial_cluster_token)
    }
}

/// The ID of a cluster started with these members and token.
pub fn cluster_id_of(members: &[InitialMember], token: &str) -> u64 {
    let mut urls: Vec<&str> = members
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(String::as_str))
        .collect();
    urls.sort_unstable();
    hash_id(&[&urls.join(","), token])
}

/// The member ID for a member with these peer URLs in a cluster started with `token`.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    hash_id(&[&urls.join(","), token])
}

fn hash_id(parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    // Zero means "no member" in etcd's API.
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")).max(1)
}

/// Parses a comma-separated list of `http://host:port` URLs (`flag` names it in errors).
pub fn parse_urls(flag: &str, value: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        parse_url(flag, part)?;
        out.push(part.trim_end_matches('/').to_string());
    }
    if out.is_empty() {
        return Err(Error::Config(format!(
            "{flag} is empty; give at least one http://HOST:PORT"
        )));
    }
    Ok(out)
}

/// Parses one URL into the socket address to listen on or dial.
pub fn parse_url(flag: &str, value: &str) -> Result<SocketAddr> {
    let url = url::Url::parse(value).map_err(|e| {
        Error::Config(format!(
            "{flag}: '{value}' is not a URL ({e}); use http://HOST:PORT"
        ))
    })?;
    match url.scheme() {
        "http" => {}
        "https" | "unixs" => {
            return Err(Error::Config(format!(
                "{flag}: '{value}': TLS is not supported by skiff's store yet; use http://"
            )))
        }
        s => {
            return Err(Error::Config(format!(
                "{flag}: '{value}': unsupported scheme '{s}'; use http://HOST:PORT"
            )))
        }
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::Config(format!("{flag}: '{value}' has no host")))?;
    let port = url
        .port()
        .ok_or_else(|| Error::Config(format!("{flag}: '{value}' has no port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = if host == "localhost" {
        SocketAddr::from(([127, 0, 0, 1], port))
    } else {
        let ip: std::net::IpAddr = host.parse().map_err(|_| {
            Error::Config(format!(
                "{flag}: '{value}': the host must be an IP address (or localhost)"
            ))
        })?;
        SocketAddr::new(ip, port)
    };
    Ok(addr)
}

/// Parses `--initial-cluster name=URL,name=URL,…`.
pub fn parse_initial_cluster(value: &str) -> Result<Vec<InitialMember>> {
    let mut members: Vec<InitialMember> = Vec::new();
    let mut urls_seen = BTreeSet::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| {
            Error::Config(format!(
                "--initial-cluster: '{part}' is not NAME=URL (e.g. n1=http://10.0.0.1:2380)"
            ))
        })?;
        if name.is_empty() {
            return Err(Error::Config(format!(
                "--initial-cluster: '{part}' has an empty name"
            )));
        }
        parse_url("--initial-cluster", url)?;
        let url = url.trim_end_matches('/').to_string();
        if !urls_seen.insert(url.clone()) {
            return Err(Error::Config(format!(
                "--initial-cluster: the peer URL {url} is given twice; each member needs its own"
            )));
        }
        if members.iter().any(|m| m.name == name) {
            return Err(Error::Config(format!(
                "--initial-cluster: the member name '{name}' is given twice; names must be unique"
            )));
        }
        members.push(InitialMember {
            name: name.to_string(),
            peer_urls: vec![url],
        });
    }
    if members.is_empty() {
        return Err(Error::Config("--initial-cluster is empty".into()));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_rejects_bad_input() {
        let m = parse_initial_cluster("a=http://127.0.0.1:2380,b=http://127.0.0.1:2381").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].name, "b");
        for bad in [
            "a",
            "=http://127.0.0.1:1",
            "a=http://127.0.0.1:1,a=http://127.0.0.1:2",
            "a=http://127.0.0.1:1,b=http://127.0.0.1:1",
            "a=127.0.0.1:1",
            "a=https://127.0.0.1:1",
            "a=http://127.0.0.1",
            "",
        ] {
            let err = parse_initial_cluster(bad).unwrap_err().to_string();
            assert!(err.contains("--initial-cluster"), "{bad}: {err}");
        }
    }

    #[test]
    fn own_entry_must_match_advertised_urls() {
        let mut c = StoreConfig::single(
            "a",
            "/tmp/x".into(),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        c.validate().unwrap();
        c.advertise_peer_urls = vec!["http://127.0.0.1:3".into()];
        assert!(c.validate().unwrap_err().to_string().contains("must match"));
        c.name = "zz".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("no member named"));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = member_id(&["http://127.0.0.1:2380".into()], "t");
        let b = member_id(&["http://127.0.0.1:2381".into()], "t");
        assert_ne!(a, b);
        assert_eq!(a, member_id(&["http://127.0.0.1:2380".into()], "t"));
        assert_ne!(a, member_id(&["http://127.0.0.1:2380".into()], "u"));
    }

    #[test]
    fn election_timeout_must_cover_heartbeats() {
        let mut c = StoreConfig::single(
            "a",
            "/tmp/x".into(),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        c.election_timeout = Duration::from_millis(200);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--election-timeout"));
    }
}
