//! Recording a history of concurrent key-value operations for the linearizability checker.
//!
//! Clients call [`Recorder::invoke`] just before sending a request and
//! [`Recorder::complete`] once they know its outcome; both read one shared monotonic clock,
//! so the recorded interval always contains the real one. A [`History`] can be written to
//! and read back from JSON lines, so a failing run can be kept and re-checked.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Identifies a workload client (one connection, one operation at a time).
pub type ClientId = u32;

/// The bytes stored under a key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub Vec<u8>);

impl Value {
    /// The value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value(s.into_bytes())
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value(b)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "0x{}", hex(&self.0)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Workload values are text; storing them as JSON strings keeps a dumped history readable,
// while arbitrary bytes still round-trip as an array of numbers.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ValueRepr {
    Text(String),
    Bytes(Vec<u8>),
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => self.0.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match ValueRepr::deserialize(d)? {
            ValueRepr::Text(s) => Value(s.into_bytes()),
            ValueRepr::Bytes(b) => Value(b),
        })
    }
}

/// What a client asked for, on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// A linearizable Range of one key.
    Get,
    /// A Put.
    Put {
        /// The value written.
        value: Value,
    },
    /// A DeleteRange of one key.
    Delete,
    /// A Txn: `if value(key) == expected then put(key, new) else get(key)`;
    /// `expected: None` means "the key is absent" (version == 0).
    Cas {
        /// The value the key must hold for the put to happen.
        expected: Option<Value>,
        /// The value written when the comparison holds.
        new: Value,
    },
}

/// What the server answered to an operation that completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// The value read (`None`: the key was absent).
    Get {
        /// The value read.
        value: Option<Value>,
    },
    /// The put was applied.
    Put,
    /// The number of keys deleted (0 or 1).
    Delete {
        /// How many keys were deleted.
        deleted: u64,
    },
    /// Whether the comparison held; when it did not, the value the else-branch read.
    Cas {
        /// Whether the then-branch ran.
        succeeded: bool,
        /// The value read by the else-branch; ignored when `succeeded`.
        current: Option<Value>,
    },
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The server answered.
    Ok {
        /// The answer.
        output: Output,
        /// The revision in the response header, when there was one.
        revision: Option<i64>,
    },
    /// Timed out or lost the connection: the operation may have taken effect at any time
    /// after it was invoked, or never.
    Unknown {
        /// Why the outcome is unknown.
        error: String,
    },
    /// The operation certainly did not take effect (e.g. rejected by validation).
    Failed {
        /// The error returned.
        error: String,
    },
}

impl Outcome {
    /// An answered operation with no revision recorded.
    pub fn ok(output: Output) -> Self {
        Outcome::Ok {
            output,
            revision: None,
        }
    }

    /// Whether the outcome is [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The client that issued it.
    pub client: ClientId,
    /// The key it touched.
    pub key: String,
    /// The request.
    pub input: Input,
    /// Invocation time, nanoseconds since the recorder's origin.
    pub call: u64,
    /// Time the outcome was known (for [`Outcome::Unknown`], when the client gave up; the
    /// checker treats it as infinity).
    pub ret: u64,
    /// The result.
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c{} [{}..{}] {} ",
            self.client,
            millis(self.call),
            millis(self.ret),
            self.key
        )?;
        match &self.input {
            Input::Get => write!(f, "get")?,
            Input::Put { value } => write!(f, "put {value}")?,
            Input::Delete => write!(f, "delete")?,
            Input::Cas { expected, new } => {
                write!(f, "cas {} -> {new}", opt_value(expected.as_ref()))?
            }
        }
        match &self.outcome {
            Outcome::Ok { output, revision } => {
                match output {
                    Output::Get { value } => write!(f, " = {}", opt_value(value.as_ref()))?,
                    Output::Put => write!(f, " = ok")?,
                    Output::Delete { deleted } => write!(f, " = deleted {deleted}")?,
                    Output::Cas {
                        succeeded: true, ..
                    } => write!(f, " = succeeded")?,
                    Output::Cas {
                        succeeded: false,
                        current,
                    } => write!(f, " = failed, read {}", opt_value(current.as_ref()))?,
                }
                if let Some(rev) = revision {
                    write!(f, " @{rev}")?;
                }
                Ok(())
            }
            Outcome::Unknown { error } => write!(f, " = unknown ({error})"),
            Outcome::Failed { error } => write!(f, " = failed ({error})"),
        }
    }
}

fn millis(nanos: u64) -> String {
    format!("{:.3}ms", nanos as f64 / 1e6)
}

/// Formats an optional value, `absent` for `None`.
pub(crate) fn opt_value(v: Option<&Value>) -> String {
    v.map_or_else(|| "absent".to_string(), Value::to_string)
}

/// A recorded run: operations in invocation order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The operations.
    pub ops: Vec<Operation>,
}

impl History {
    /// Writes one JSON object per operation per line.
    pub fn write_jsonl<W: Write>(&self, mut w: W) -> anyhow::Result<()> {
        for op in &self.ops {
            serde_json::to_writer(&mut w, op)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        Ok(())
    }

    /// Reads what [`History::write_jsonl`] wrote; blank lines are skipped.
    pub fn read_jsonl<R: BufRead>(r: R) -> anyhow::Result<Self> {
        let mut ops = Vec::new();
        for (i, line) in r.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let op = serde_json::from_str(&line).with_context(|| format!("line {}", i + 1))?;
            ops.push(op);
        }
        Ok(History { ops })
    }

    /// Writes the history to a JSON lines file.
    pub fn dump(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        let path = path.as_ref();
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        self.write_jsonl(BufWriter::new(file))
    }

    /// Reads a history from a JSON lines file.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::read_jsonl(BufReader::new(file))
    }
}

/// An invoked operation awaiting [`Recorder::complete`].
#[must_use = "an invoked operation must be completed"]
#[derive(Debug)]
pub struct OpHandle(usize);

struct Pending {
    client: ClientId,
    key: String,
    input: Input,
    call: u64,
    done: Option<(u64, Outcome)>,
}

/// Thread-safe history recorder shared by all clients of a run.
pub struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Pending>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            origin: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder was made, on the monotonic clock.
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Records that `client` is about to send `input` on `key`.
    pub fn invoke(&self, client: ClientId, key: &str, input: Input) -> OpHandle {
        // Read the clock before taking the lock: waiting on the lock then only widens the
        // recorded interval, which is safe; narrowing it never is.
        let call = self.now();
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        ops.push(Pending {
            client,
            key: key.to_string(),
            input,
            call,
            done: None,
        });
        OpHandle(ops.len() - 1)
    }

    /// Records the outcome of an invoked operation.
    pub fn complete(&self, handle: OpHandle, outcome: Outcome) {
        let ret = self.now();
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let op = &mut ops[handle.0];
        op.done = Some((ret, outcome));
    }

    /// The history so far; operations never completed are recorded as unknown.
    pub fn into_history(self) -> History {
        let end = self.now();
        let ops = self.ops.into_inner().unwrap_or_else(|e| e.into_inner());
        History {
            ops: ops
                .into_iter()
                .map(|p| {
                    let (ret, outcome) = p.done.unwrap_or_else(|| {
                        (
                            end,
                            Outcome::Unknown {
                                error: "never completed".into(),
                            },
                        )
                    });
                    Operation {
                        client: p.client,
                        key: p.key,
                        input: p.input,
                        call: p.call,
                        ret,
                        outcome,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_orders_times_and_fills_unknowns() {
        let rec = Recorder::new();
        let a = rec.invoke(1, "k", Input::Put { value: "v".into() });
        let b = rec.invoke(2, "k", Input::Get);
        rec.complete(
            a,
            Outcome::Ok {
                output: Output::Put,
                revision: Some(2),
            },
        );
        drop(b);
        let h = rec.into_history();
        assert_eq!(h.ops.len(), 2);
        assert!(h.ops[0].call <= h.ops[1].call);
        assert!(h.ops[0].call <= h.ops[0].ret);
        assert!(h.ops[0].outcome.is_ok());
        assert!(matches!(h.ops[1].outcome, Outcome::Unknown { .. }));
    }

    #[test]
    fn jsonl_round_trips() {
        let h = History {
            ops: vec![
                Operation {
                    client: 3,
                    key: "/k1".into(),
                    input: Input::Cas {
                        expected: None,
                        new: Value(vec![0xff, 0x00]),
                    },
                    call: 10,
                    ret: 20,
                    outcome: Outcome::Ok {
                        output: Output::Cas {
                            succeeded: false,
                            current: Some("c1-1".into()),
                        },
                        revision: Some(7),
                    },
                },
                Operation {
                    client: 4,
                    key: "/k1".into(),
                    input: Input::Delete,
                    call: 15,
                    ret: 99,
                    outcome: Outcome::Unknown {
                        error: "deadline".into(),
                    },
                },
            ],
        };
        let mut buf = Vec::new();
        h.write_jsonl(&mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\"c1-1\""), "{text}");
        assert_eq!(History::read_jsonl(&buf[..]).unwrap(), h);
    }
}
