//! skiff apiserver: Kubernetes REST over an etcd v3 store.
pub mod openapi;
