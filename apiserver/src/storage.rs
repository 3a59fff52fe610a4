//! The apiserver's only way to the store: the etcd v3 API through `etcd-client`, so the
//! same code runs on `skiff store` and on a real etcd. Objects are JSON values under
//! `/registry/…`; an object's `metadata.resourceVersion` is its key's mod_revision and is
//! never stored inside the value.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
};
use serde_json::Value;

use crate::error::{Error, Result};

/// The most objects a list reads from the store at once: it bounds the memory a list
/// holds, and keeps each store answer far below the gRPC client's 4 MiB message limit
/// (10,000 small pods are 11 MB).
pub const STORE_PAGE: i64 = 500;

/// A stored object with the revision it was last modified at.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The object, with `metadata.resourceVersion` set.
    pub object: Value,
    /// Its mod_revision.
    pub revision: i64,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    /// The objects, in key order.
    pub items: Vec<Stored>,
    /// The store revision the page was read at.
    pub revision: i64,
    /// The last key examined, when more keys follow.
    pub more_after: Option<String>,
    /// How many keys remain after this page (when `more_after` is set).
    pub remaining: i64,
}

/// A write that must happen in the same transaction as the object's own write, e.g. a
/// Service's clusterIP allocation record, or a ResourceQuota's usage.
#[derive(Debug, Clone)]
pub enum SideEffect {
    /// Create `key` with `value`; the whole write fails if `key` exists.
    Claim {
        /// The allocation key.
        key: String,
        /// What it records.
        value: String,
    },
    /// Delete `key` (an allocation being released).
    Release {
        /// The allocation key.
        key: String,
    },
    /// Replace `key` only if it is still at `revision` (optimistic concurrency on
    /// another object, e.g. a quota's usage).
    Replace {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The revision it was read at.
        revision: i64,
    },
}

/// Why a conditional write did not happen.
#[derive(Debug)]
pub enum WriteConflict {
    /// The object's key was not in the expected state (exists / changed / gone).
    Object,
    /// A side effect's condition failed; its key is given.
    SideEffect(String),
}

/// The store client.
#[derive(Clone)]
pub struct Storage {
    client: Client,
}

/// Parses a stored value and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Stored> {
    let mut object: Value = serde_json::from_slice(kv.value()).map_err(|e| {
        Error::internal(format!(
            "the value stored at {} is not JSON: {e}",
            String::from_utf8_lossy(kv.key())
        ))
    })?;
    set_resource_version(&mut object, kv.mod_revision());
    Ok(Stored {
        object,
        revision: kv.mod_revision(),
    })
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// The bytes stored for an object: JSON without the resourceVersion (the store's
/// mod_revision is the truth).
pub fn encode(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&object).unwrap_or_default()
}

fn side_effect_ops(effects: &[SideEffect]) -> (Vec<Compare>, Vec<TxnOp>) {
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    for e in effects {
        match e {
            SideEffect::Claim { key, value } => {
                compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
                ops.push(TxnOp::put(key.as_str(), value.as_str(), None));
            }
            SideEffect::Release { key } => ops.push(TxnOp::delete(key.as_str(), None)),
            SideEffect::Replace {
                key,
                value,
                revision,
            } => {
                compares.push(Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    *revision,
                ));
                ops.push(TxnOp::put(key.as_str(), value.clone(), None));
            }
        }
    }
    (compares, ops)
}

impl Storage {
    /// Connects to the store members (etcd-client balances across them).
    pub async fn connect(endpoints: &[String]) -> Result<Storage> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Storage { client })
    }

    /// The underlying client (for watches).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Reads one object (a linearizable read).
    pub async fn get(&self, key: &str) -> Result<Option<Stored>> {
        let resp = retry(|| {
            let mut kv = self.client.kv_client();
            async move { kv.get(key, None).await }
        })
        .await?;
        resp.kvs().first().map(decode).transpose()
    }

    /// The current store revision.
    pub async fn revision(&self) -> Result<i64> {
        let resp = retry(|| {
            let mut kv = self.client.kv_client();
            async move {
                kv.get("/registry/", Some(GetOptions::new().with_count_only()))
                    .await
            }
        })
        .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Reads up to `limit` objects (0 = all) under `prefix`, starting at key `start`
    /// (inclusive; `None` = the prefix's beginning), at `revision` (0 = latest). A read of
    /// many objects should be split into pages of [`STORE_PAGE`]: a store answer over
    /// 4 MiB fails.
    pub async fn list(
        &self,
        prefix: &str,
        start: Option<&str>,
        limit: i64,
        revision: i64,
    ) -> Result<Page> {
        let end = prefix_end(prefix);
        let from = start.unwrap_or(prefix).to_string();
        let mut limit = limit;
        let resp = loop {
            let read = retry(|| {
                let mut kv = self.client.kv_client();
                let (from, end) = (from.clone(), end.clone());
                async move {
                    let mut opts = GetOptions::new().with_range(end).with_limit(limit);
                    if revision > 0 {
                        opts = opts.with_revision(revision);
                    }
                    kv.get(from, Some(opts)).await
                }
            })
            .await;
            // A page of large objects can exceed the client's message limit; a caller
            // that pages (limit > 0) follows `more_after`, so a smaller page is fine.
            match read {
                Err(e) if limit > 1 && too_large(&e) => limit /= 2,
                read => break read.map_err(|e| compacted_to_gone(e, revision))?,
            }
        };
        // A read at a past revision answers with the store's current revision in its
        // header (as etcd does); the page's revision is the one it was read at.
        let read_at = if revision > 0 {
            revision
        } else {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        };
        let items = resp.kvs().iter().map(decode).collect::<Result<Vec<_>>>()?;
        let (more_after, remaining) = if resp.more() {
            let last = resp
                .kvs()
                .last()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned());
            (last, resp.count() - resp.kvs().len() as i64)
        } else {
            (None, 0)
        };
        Ok(Page {
            items,
            revision: read_at,
            more_after,
            remaining,
        })
    }

    /// Creates `key` if absent, with the side effects, atomically. Returns the revision.
    pub async fn create(
        &self,
        key: &str,
        object: &Value,
        effects: &[SideEffect],
    ) -> Result<std::result::Result<i64, WriteConflict>> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
        let mut ops = vec![TxnOp::put(key, encode(object), None)];
        let (c, o) = side_effect_ops(effects);
        compares.extend(c);
        ops.extend(o);
        self.conditional(key, compares, ops, effects).await
    }

    /// Replaces `key` if it is still at `revision`, with the side effects, atomically.
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        revision: i64,
        effects: &[SideEffect],
    ) -> Result<std::result::Result<i64, WriteConflict>> {
        let mut compares = vec![Compare::mod_revision(key, CompareOp::Equal, revision)];
        let mut ops = vec![TxnOp::put(key, encode(object), None)];
        let (c, o) = side_effect_ops(effects);
        compares.extend(c);
        ops.extend(o);
        self.conditional(key, compares, ops, effects).await
    }

    /// Deletes `key` if it is still at `revision`, with the side effects. Returns the
    /// revision of the deletion.
    pub async fn delete(
        &self,
        key: &str,
        revision: i64,
        effects: &[SideEffect],
    ) -> Result<std::result::Result<i64, WriteConflict>> {
        let mut compares = vec![Compare::mod_revision(key, CompareOp::Equal, revision)];
        let mut ops = vec![TxnOp::delete(key, None)];
        let (c, o) = side_effect_ops(effects);
        compares.extend(c);
        ops.extend(o);
        self.conditional(key, compares, ops, effects).await
    }

    async fn conditional(
        &self,
        key: &str,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        effects: &[SideEffect],
    ) -> Result<std::result::Result<i64, WriteConflict>> {
        // On failure, read the keys whose conditions may have failed to say which.
        let mut checks = vec![TxnOp::get(key, None)];
        let conditional_keys: Vec<&str> = effects
            .iter()
            .filter_map(|e| match e {
                SideEffect::Claim { key, .. } | SideEffect::Replace { key, .. } => {
                    Some(key.as_str())
                }
                SideEffect::Release { .. } => None,
            })
            .collect();
        checks.extend(conditional_keys.iter().map(|k| TxnOp::get(*k, None)));
        let txn = Txn::new().when(compares).and_then(ops).or_else(checks);
        // A write is not retried blindly: if the first attempt committed but its answer
        // was lost, a retry would fail its own condition and report a false conflict.
        // Only a write that never left (the member it was sent to refused the
        // connection: powered off, restarting) goes again, to another member.
        let mut attempt = 0;
        let resp = loop {
            let mut kv = self.client.kv_client();
            match kv.txn(txn.clone()).await {
                Ok(resp) => break resp,
                Err(e) if attempt < 8 && never_sent(&e) => {
                    tracing::debug!(error = %e, attempt, "store write not sent; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if resp.succeeded() {
            return Ok(Ok(resp.header().map(|h| h.revision()).unwrap_or(0)));
        }
        let responses = resp.op_responses();
        for (i, effect_key) in conditional_keys.iter().enumerate() {
            let effect = effects.iter().find(|e| match e {
                SideEffect::Claim { key, .. } | SideEffect::Replace { key, .. } => {
                    key == effect_key
                }
                SideEffect::Release { .. } => false,
            });
            if let Some(TxnOpResponse::Get(g)) = responses.get(i + 1) {
                let failed = match effect {
                    Some(SideEffect::Claim { .. }) => !g.kvs().is_empty(),
                    Some(SideEffect::Replace { revision, .. }) => {
                        g.kvs().first().map(|kv| kv.mod_revision()) != Some(*revision)
                    }
                    _ => false,
                };
                if failed {
                    return Ok(Err(WriteConflict::SideEffect(effect_key.to_string())));
                }
            }
        }
        Ok(Err(WriteConflict::Object))
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        let mut kv = self.client.kv_client();
        tokio::time::timeout(
            Duration::from_secs(2),
            kv.get(
                "/registry/health",
                Some(GetOptions::new().with_count_only()),
            ),
        )
        .await
        .map_err(|_| Error::unavailable("the store did not answer within 2s"))??;
        Ok(())
    }
}

/// The end of the key range that has `prefix` as its prefix.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether a read failed because its answer exceeded the gRPC client's message limit.
fn too_large(e: &Error) -> bool {
    matches!(e, Error::Store(etcd_client::Error::GRpcStatus(s))
        if s.code() == tonic::Code::OutOfRange && s.message().contains("message length too large"))
}

fn compacted_to_gone(e: Error, revision: i64) -> Error {
    if let Error::Store(etcd_client::Error::GRpcStatus(s)) = &e {
        if s.message().contains("compacted") {
            return Error::gone(format!(
                "The resourceVersion for the provided list is too old (revision {revision} has been compacted)"
            ));
        }
    }
    e
}

/// Retries a read (or a write that is safe to repeat) a few times when the member it
/// reached is unavailable (a member being restarted, or a leader election in progress),
/// so clients see a slow answer rather than an error.
pub(crate) async fn retry<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 8 && retryable(&e) => {
                tracing::debug!(error = %e, attempt, "store read failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a request failed before reaching any member: the connection to the member it
/// was balanced to could not be made.
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable && s.message().contains("tcp connect error")
        }
        _ => false,
    }
}

fn retryable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ) && !s.message().contains("compacted")
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn the_resource_version_is_not_stored() {
        let obj = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let bytes = encode(&obj);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(back["metadata"].get("resourceVersion").is_none());
    }
}
