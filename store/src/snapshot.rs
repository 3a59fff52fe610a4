//! Snapshots: the state tree as bytes, for Raft snapshots between members and for backup
//! files (`etcdctl snapshot save`, `skiffctl store snapshot save|restore`).
//!
//! A backup file is `SKIFFSNAP1\n`, the entries' length (8 bytes), the entries, zeros up
//! to a multiple of 512 bytes, then the SHA-256 of everything before it. A truncated or
//! altered file is refused on restore. The shape (512-byte blocks and a trailing SHA-256)
//! is etcd's: `etcdctl snapshot save` checks that the size is a multiple of 512 plus 32.

use std::path::Path;

use sha2::{Digest, Sha256};
use skiff_proto::etcdserverpb::Member;

use crate::config::{member_id, InitialMember};
use crate::error::{Error, Result};

/// The first bytes of a skiff backup file.
pub const MAGIC: &[u8] = b"SKIFFSNAP1\n";

/// Length-prefixed key/value pairs.
pub fn encode_entries(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size: usize = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// The inverse of [`encode_entries`]; refuses truncated input.
pub fn decode_entries(mut data: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    fn take<'a>(data: &mut &'a [u8]) -> Result<&'a [u8]> {
        if data.len() < 4 {
            return Err(Error::Snapshot("truncated entry length".into()));
        }
        let len = u32::from_be_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        if data.len() < 4 + len {
            return Err(Error::Snapshot("truncated entry".into()));
        }
        let (item, rest) = data[4..].split_at(len);
        *data = rest;
        Ok(item)
    }
    let mut out = Vec::new();
    while !data.is_empty() {
        let k = take(&mut data)?.to_vec();
        let v = take(&mut data)?.to_vec();
        out.push((k, v));
    }
    Ok(out)
}

/// A whole backup file's bytes for these state entries.
pub fn backup_bytes(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let body = encode_entries(entries);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&body);
    out.resize(out.len().div_ceil(512) * 512, 0);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Checks a backup file's magic and checksum and returns its entries.
pub fn read_backup(bytes: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if !bytes.starts_with(MAGIC) {
        return Err(Error::Snapshot(
            "not a skiff snapshot (it does not start with SKIFFSNAP1); was it saved from a skiff store?".into(),
        ));
    }
    let head = MAGIC.len() + 8;
    if bytes.len() < head + 32 {
        return Err(Error::Snapshot("the file is truncated".into()));
    }
    let (blocks, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(blocks).as_slice() != sum {
        return Err(Error::Snapshot(
            "checksum mismatch: the file is truncated or damaged".into(),
        ));
    }
    let len = u64::from_be_bytes(blocks[MAGIC.len()..head].try_into().expect("8 bytes")) as usize;
    let body = blocks
        .get(head..head.saturating_add(len))
        .ok_or_else(|| Error::Snapshot("the entries run past the end of the file".into()))?;
    decode_entries(body)
}

/// What `skiffctl store snapshot restore` needs to build a member's data directory.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The member to build the directory for.
    pub name: String,
    /// The new cluster's members.
    pub initial_cluster: Vec<InitialMember>,
    /// The new cluster's token.
    pub initial_cluster_token: String,
}

/// Builds a new data directory at `data_dir` holding the backup's keys, leases and
/// revisions, for a member of a new cluster (like `etcdutl snapshot restore`). Every
/// member of the new cluster is restored from the same file.
pub fn restore(backup: &Path, data_dir: &Path, opts: &RestoreOptions) -> Result<()> {
    let bytes = std::fs::read(backup).map_err(|e| Error::Io {
        context: format!("reading {}", backup.display()),
        source: e,
    })?;
    let entries = read_backup(&bytes)?;
    if !opts.initial_cluster.iter().any(|m| m.name == opts.name) {
        return Err(Error::Config(format!(
            "--initial-cluster has no member named '{}' (--name)",
            opts.name
        )));
    }
    if data_dir.exists()
        && std::fs::read_dir(data_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::DataDir {
            dir: data_dir.display().to_string(),
            reason: "already exists and is not empty; restore into a new directory".into(),
        });
    }
    let kept: Vec<(Vec<u8>, Vec<u8>)> = entries
        .into_iter()
        .filter(|(k, _)| crate::state::restorable(k))
        .collect();
    let members: Vec<Member> = opts
        .initial_cluster
        .iter()
        .map(|m| Member {
            id: member_id(&m.peer_urls, &opts.initial_cluster_token),
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: false,
        })
        .collect();
    let cluster_id =
        crate::config::cluster_id_of(&opts.initial_cluster, &opts.initial_cluster_token);
    let me = members
        .iter()
        .find(|m| m.name == opts.name)
        .expect("checked above")
        .clone();
    crate::node::create_data_dir(data_dir, &me, cluster_id, &members, kept)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_round_trips_and_detects_damage() {
        let entries = vec![(b"k1".to_vec(), b"v1".to_vec()), (b"k2".to_vec(), vec![])];
        let bytes = backup_bytes(&entries);
        assert_eq!(bytes.len() % 512, 32, "etcdctl's size check");
        assert_eq!(read_backup(&bytes).unwrap(), entries);
        let mut bad = bytes.clone();
        bad[MAGIC.len() + 12] ^= 1;
        assert!(read_backup(&bad)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        assert!(read_backup(&bytes[..bytes.len() - 1]).is_err());
        assert!(read_backup(b"hello")
            .unwrap_err()
            .to_string()
            .contains("not a skiff"));
    }

    #[test]
    fn truncated_entries_are_refused() {
        let data = encode_entries(&[(b"key".to_vec(), b"value".to_vec())]);
        assert!(decode_entries(&data[..data.len() - 2]).is_err());
    }
}
