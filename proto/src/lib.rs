//! skiff's gRPC API.
//!
//! - [`etcdserverpb`] and [`mvccpb`]: the subset of etcd's v3 API the store serves, wire
//!   compatible with etcd so that `etcdctl` and the `etcd-client` crate work unchanged.
//! - [`peer`]: the store members' own RPC (Raft messages, joining, lease forwarding) and
//!   the records written to the Raft log.
#![allow(clippy::all, missing_docs)]

/// etcd's MVCC types: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's v3 services and messages.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The store's peer RPC and Raft log records.
pub mod peer {
    tonic::include_proto!("skiffpeer");
}
