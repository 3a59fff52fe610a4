//! The concurrent client workload of the fault tests: clients issue gets, puts, deletes and
//! compare-and-swap transactions on a few keys through the etcd v3 API and record every
//! operation in a [`History`] for the linearizability checker.
//!
//! Each client runs one operation at a time over its own connection. Clients are spread
//! over the endpoints, and one whose operations keep failing moves on to the next
//! endpoint, so the run keeps going when a member dies. Every written value is unique (run
//! nonce, client id, counter), which is what lets the checker tell a stale read from a
//! fresh one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, Error, Txn, TxnOp, TxnOpResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::history::{ClientId, History, Input, Outcome, Output, Recorder, Value};

/// Shape of a workload run.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients share.
    pub keys: usize,
    /// Stop after this many operations in total, if set.
    pub total_ops: Option<u64>,
    /// Stop after this long, if set; a run needs this or `total_ops`.
    pub duration: Option<Duration>,
    /// Time after which an operation's outcome is recorded as unknown.
    pub op_timeout: Duration,
    /// Seeds the operation mix.
    pub seed: u64,
    /// Prefix of the keys used; everything under it is deleted before the run.
    pub key_prefix: String,
    /// Give each client all endpoints through etcd-client's balancer, instead of one
    /// endpoint at a time. The balancer keeps sending to a dead member (a third of the
    /// operations failed with one of two endpoints dead), so this is off by default.
    pub balanced: bool,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 8,
            keys: 5,
            total_ops: Some(1000),
            duration: None,
            op_timeout: Duration::from_secs(2),
            seed: 0,
            key_prefix: "/skiff-workload/".into(),
            balanced: false,
        }
    }
}

/// A revision lower than one the same client had already seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionRegression {
    /// The client.
    pub client: ClientId,
    /// The highest revision it had seen before.
    pub previous: i64,
    /// The lower revision it then saw.
    pub seen: i64,
}

/// What a run recorded.
#[derive(Debug)]
pub struct WorkloadResult {
    /// Every operation, for the checker.
    pub history: History,
    /// Operations the server answered.
    pub ok: u64,
    /// Operations with an unknown outcome (timeout, connection error).
    pub unknown: u64,
    /// Operations that certainly did not take effect.
    pub failed: u64,
    /// Answers that did not have the shape the request asks for (recorded as unknown).
    pub malformed: u64,
    /// Highest response-header revision each client saw (0 if none), by client id.
    pub max_revision: Vec<i64>,
    /// Every time a client saw the revision go backwards; should be empty.
    pub revision_regressions: Vec<RevisionRegression>,
    /// Wall time of the run, from the first operation to the last.
    pub elapsed: Duration,
}

impl WorkloadResult {
    /// Completed operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.history.ops.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the workload against `endpoints` (e.g. `http://127.0.0.1:2379`) and returns its
/// history.
pub async fn run_workload(
    endpoints: Vec<String>,
    cfg: WorkloadConfig,
) -> anyhow::Result<WorkloadResult> {
    if endpoints.is_empty() || cfg.clients == 0 || cfg.keys == 0 {
        bail!("a workload needs endpoints, clients and keys");
    }
    if cfg.total_ops.is_none() && cfg.duration.is_none() {
        bail!("a workload needs total_ops or duration to stop");
    }
    clear_prefix(&endpoints, &cfg).await?;

    let recorder = Arc::new(Recorder::new());
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = cfg.duration.map(|d| started + d);
    let nonce = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64 & 0xffff_ffff);
    let mut tasks = Vec::new();
    for id in 0..cfg.clients {
        let mut eps = endpoints.clone();
        // Rotate so that clients start on different members.
        eps.rotate_left(id % endpoints.len());
        if cfg.balanced {
            // One entry holding all of them: the balancer spreads the requests.
            eps = vec![eps.join(",")];
        }
        let worker = Worker {
            id: id as ClientId,
            endpoints: eps,
            cfg: cfg.clone(),
            recorder: recorder.clone(),
            issued: issued.clone(),
            deadline,
            nonce,
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    let mut stats = Vec::new();
    for t in tasks {
        stats.push(t.await.context("workload client panicked")?);
    }
    let elapsed = started.elapsed();
    let recorder = Arc::try_unwrap(recorder)
        .map_err(|_| anyhow::anyhow!("recorder still shared after all clients finished"))?;
    Ok(WorkloadResult {
        history: recorder.into_history(),
        ok: stats.iter().map(|s| s.ok).sum(),
        unknown: stats.iter().map(|s| s.unknown).sum(),
        failed: stats.iter().map(|s| s.failed).sum(),
        malformed: stats.iter().map(|s| s.malformed).sum(),
        max_revision: stats.iter().map(|s| s.max_revision).collect(),
        revision_regressions: stats
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.regressions))
            .collect(),
        elapsed,
    })
}

fn connect_options(cfg: &WorkloadConfig) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(cfg.op_timeout)
        .with_timeout(cfg.op_timeout)
}

/// The model assumes every key starts absent.
async fn clear_prefix(endpoints: &[String], cfg: &WorkloadConfig) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let mut client = Client::connect(endpoints, Some(connect_options(cfg))).await?;
            let opts = DeleteOptions::new().with_prefix();
            client.delete(cfg.key_prefix.as_str(), Some(opts)).await?;
            Ok::<_, Error>(())
        };
        let err = match tokio::time::timeout(cfg.op_timeout * 2, attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        if Instant::now() >= give_up {
            bail!("could not clear {} before the run: {err}", cfg.key_prefix);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Default)]
struct ClientStats {
    ok: u64,
    unknown: u64,
    failed: u64,
    malformed: u64,
    max_revision: i64,
    regressions: Vec<RevisionRegression>,
}

struct Worker {
    id: ClientId,
    endpoints: Vec<String>,
    cfg: WorkloadConfig,
    recorder: Arc<Recorder>,
    issued: Arc<AtomicU64>,
    deadline: Option<Instant>,
    nonce: u64,
}

/// Why an operation did not produce an output.
enum Failure {
    /// May or may not have taken effect.
    Unknown(String),
    /// Certainly did not take effect.
    NotApplied(String),
    /// The server answered something the request cannot produce.
    Malformed(String),
}

/// Whether an error means the request certainly was not applied. Anything that could
/// have reached the leader, including timeouts and lost connections, might have been.
fn classify(err: Error) -> Failure {
    match &err {
        Error::GRpcStatus(status) => match status.code() {
            // etcd's validation errors (request too large, duplicate key, compacted or
            // future revision, ...) are returned before anything is proposed.
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::NotFound
            | Code::AlreadyExists => Failure::NotApplied(err.to_string()),
            _ => Failure::Unknown(err.to_string()),
        },
        // Rejected on the client side, never sent.
        Error::InvalidArgs(_) | Error::InvalidUri(_) => Failure::NotApplied(err.to_string()),
        _ => Failure::Unknown(err.to_string()),
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Worker {
    fn should_stop(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Claims the right to issue one more operation.
    fn claim(&self) -> bool {
        if self.should_stop() {
            return false;
        }
        match self.cfg.total_ops {
            Some(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            None => true,
        }
    }

    /// Connects to `self.endpoints[*current]` (comma-separated: several, balanced),
    /// moving on to the next endpoint while that fails.
    async fn connect(&self, current: &mut usize) -> Option<Client> {
        loop {
            if self.should_stop() {
                return None;
            }
            let opts = connect_options(&self.cfg);
            let endpoints: Vec<&str> = self.endpoints[*current].split(',').collect();
            let attempt = Client::connect(endpoints, Some(opts));
            match tokio::time::timeout(self.cfg.op_timeout, attempt).await {
                Ok(Ok(c)) => return Some(c),
                Ok(Err(e)) => tracing::debug!(client = self.id, "connect failed: {e}"),
                Err(_) => tracing::debug!(client = self.id, "connect timed out"),
            }
            *current = (*current + 1) % self.endpoints.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn run(self) -> ClientStats {
        let mut rng = StdRng::seed_from_u64(splitmix64(self.cfg.seed ^ u64::from(self.id)));
        let mut stats = ClientStats::default();
        // What this client last learned each key holds, for its compare-and-swaps.
        let mut known: HashMap<String, Option<Value>> = HashMap::new();
        let mut counter = 0u64;
        let mut consecutive_errors = 0u32;
        let mut client: Option<Client> = None;
        let mut current = 0;
        loop {
            if client.is_none() {
                client = self.connect(&mut current).await;
            }
            let Some(conn) = client.as_mut() else { break };
            if !self.claim() {
                break;
            }
            let key = format!(
                "{}k{}",
                self.cfg.key_prefix,
                rng.gen_range(0..self.cfg.keys)
            );
            let roll = rng.gen_range(0..100);
            let mut fresh = || {
                counter += 1;
                Value::from(format!("{:x}-c{}-{counter}", self.nonce, self.id))
            };
            let input = if roll < 40 {
                Input::Get
            } else if roll < 70 {
                Input::Put { value: fresh() }
            } else if roll < 80 {
                Input::Delete
            } else {
                Input::Cas {
                    expected: known.get(&key).cloned().flatten(),
                    new: fresh(),
                }
            };

            let handle = self.recorder.invoke(self.id, &key, input.clone());
            let result = match tokio::time::timeout(
                self.cfg.op_timeout,
                execute(conn, &key, &input),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(Failure::Unknown("timed out".into())),
            };
            let outcome = match result {
                Ok((output, revision)) => {
                    stats.ok += 1;
                    consecutive_errors = 0;
                    if let Some(rev) = revision {
                        if rev < stats.max_revision {
                            stats.regressions.push(RevisionRegression {
                                client: self.id,
                                previous: stats.max_revision,
                                seen: rev,
                            });
                        }
                        stats.max_revision = stats.max_revision.max(rev);
                    }
                    match (&input, &output) {
                        (Input::Get, Output::Get { value }) => {
                            known.insert(key.clone(), value.clone());
                        }
                        (Input::Put { value }, _) => {
                            known.insert(key.clone(), Some(value.clone()));
                        }
                        (Input::Delete, _) => {
                            known.insert(key.clone(), None);
                        }
                        (Input::Cas { new, .. }, Output::Cas { succeeded, current }) => {
                            let now = if *succeeded {
                                Some(new.clone())
                            } else {
                                current.clone()
                            };
                            known.insert(key.clone(), now);
                        }
                        _ => {}
                    }
                    Outcome::Ok { output, revision }
                }
                Err(Failure::NotApplied(error)) => {
                    stats.failed += 1;
                    Outcome::Failed { error }
                }
                Err(Failure::Unknown(error)) => {
                    stats.unknown += 1;
                    consecutive_errors += 1;
                    Outcome::Unknown { error }
                }
                Err(Failure::Malformed(error)) => {
                    stats.malformed += 1;
                    stats.unknown += 1;
                    Outcome::Unknown {
                        error: format!("malformed response: {error}"),
                    }
                }
            };
            let unknown = matches!(outcome, Outcome::Unknown { .. });
            self.recorder.complete(handle, outcome);
            if unknown {
                // A member that keeps failing is probably down or cut off: try the next.
                // (A balanced client is rebuilt too, since the balancer may have dropped an
                // endpoint it failed to reach for good.)
                if consecutive_errors >= 2 {
                    client = None;
                    consecutive_errors = 0;
                    current = (current + 1) % self.endpoints.len();
                }
                // Don't spin while the cluster has no leader.
                tokio::time::sleep(Duration::from_millis(rng.gen_range(20..100))).await;
            }
        }
        stats
    }
}

/// Sends one operation; returns its output and the response header's revision.
async fn execute(
    client: &mut Client,
    key: &str,
    input: &Input,
) -> Result<(Output, Option<i64>), Failure> {
    match input {
        Input::Get => {
            let resp = client.get(key, None).await.map_err(classify)?;
            if resp.kvs().len() > 1 {
                return Err(Failure::Malformed(format!(
                    "{} kvs for one key",
                    resp.kvs().len()
                )));
            }
            let value = resp.kvs().first().map(|kv| Value(kv.value().to_vec()));
            let rev = resp.header().map(|h| h.revision());
            Ok((Output::Get { value }, rev))
        }
        Input::Put { value } => {
            let resp = client
                .put(key, value.as_bytes(), None)
                .await
                .map_err(classify)?;
            Ok((Output::Put, resp.header().map(|h| h.revision())))
        }
        Input::Delete => {
            let resp = client.delete(key, None).await.map_err(classify)?;
            let deleted = u64::try_from(resp.deleted())
                .map_err(|_| Failure::Malformed(format!("deleted {}", resp.deleted())))?;
            Ok((
                Output::Delete { deleted },
                resp.header().map(|h| h.revision()),
            ))
        }
        Input::Cas { expected, new } => {
            let compare = match expected {
                Some(v) => Compare::value(key, CompareOp::Equal, v.as_bytes()),
                // A value comparison on an absent key is always false in etcd.
                None => Compare::version(key, CompareOp::Equal, 0),
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key, new.as_bytes(), None)])
                .or_else([TxnOp::get(key, None)]);
            let resp = client.txn(txn).await.map_err(classify)?;
            let rev = resp.header().map(|h| h.revision());
            if resp.succeeded() {
                return Ok((
                    Output::Cas {
                        succeeded: true,
                        current: None,
                    },
                    rev,
                ));
            }
            let current = match resp.op_responses().first() {
                Some(TxnOpResponse::Get(get)) if get.kvs().len() <= 1 => {
                    get.kvs().first().map(|kv| Value(kv.value().to_vec()))
                }
                other => {
                    return Err(Failure::Malformed(format!(
                        "else branch answered {other:?}"
                    )))
                }
            };
            Ok((
                Output::Cas {
                    succeeded: false,
                    current,
                },
                rev,
            ))
        }
    }
}
