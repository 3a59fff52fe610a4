//! Container logs as Kubernetes writes them: one file per container run at
//! `<pod-logs-dir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`, each line
//! in the CRI log format `<RFC3339Nano time> stdout|stderr F|P <content>`, rotated by
//! size. `kubectl logs` (through the kubelet) and log forwarders (Fluent Bit's `cri`
//! parser) read these files.
//!
//! The pure parts (paths, the line format both ways, splitting a byte stream into
//! lines, rotation names) come first and are unit-tested; [`LogFile`] and [`pump`]
//! do the I/O: they copy a container's stdout and stderr FIFOs into its log file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Longest content of one log line; longer output is split into partial (`P`) lines,
/// as containerd's CRI plugin does (16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Kubernetes' default `containerLogMaxSize` (10 MiB).
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;

/// Kubernetes' default `containerLogMaxFiles`: the live file plus rotated ones.
pub const DEFAULT_MAX_FILES: usize = 5;

/// The directory of a pod's logs: `<root>/<namespace>_<pod>_<uid>`.
pub fn pod_log_dir(root: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    root.join(format!("{namespace}_{pod}_{uid}"))
}

/// The log file of one run of a container: `<pod dir>/<container>/<restartCount>.log`.
pub fn container_log_path(pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
    pod_dir.join(container).join(format!("{restart_count}.log"))
}

/// Which output a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The word in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed line of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When the runtime read the output.
    pub time: jiff::Timestamp,
    /// stdout or stderr.
    pub stream: Stream,
    /// `P`: the content continues on the next line of the same stream; `F`: it ends
    /// here (a newline followed it in the output).
    pub partial: bool,
    /// The output, without the newline.
    pub content: Vec<u8>,
}

impl LogLine {
    /// The bytes the container wrote: the content, plus the newline for a full line.
    pub fn output(&self) -> Vec<u8> {
        let mut out = self.content.clone();
        if !self.partial {
            out.push(b'\n');
        }
        out
    }
}

/// A time as Go's RFC3339Nano writes it in UTC: the fraction without trailing zeros,
/// none at all on a whole second.
pub fn format_time(t: jiff::Timestamp) -> String {
    let base = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.subsec_nanosecond();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// One line of the log file, newline included.
pub fn format_line(
    time: jiff::Timestamp,
    stream: Stream,
    partial: bool,
    content: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(format_time(time).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Parses one line of a CRI log file (with or without its newline).
pub fn parse_line(line: &[u8]) -> Result<LogLine> {
    let bad = |message: &str| Error::LogFormat {
        line: String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned(),
        message: message.to_string(),
    };
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = fields.next().ok_or_else(|| bad("empty line"))?;
    let time = std::str::from_utf8(time)
        .ok()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .ok_or_else(|| bad("the time is not RFC 3339"))?;
    let stream = match fields.next() {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        _ => return Err(bad("the stream is neither stdout nor stderr")),
    };
    // The tag field may carry more tags after ':'; the first says partial or full.
    let tags = fields.next().ok_or_else(|| bad("no tag"))?;
    let partial = match tags.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(bad("the tag is neither P nor F")),
    };
    Ok(LogLine {
        time,
        stream,
        partial,
        content: fields.next().unwrap_or_default().to_vec(),
    })
}

/// Splits a stream of output chunks into log lines: whole lines as full, and content
/// longer than `max` without a newline as partial lines of `max` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter cutting partial lines at `max` bytes.
    pub fn new(max: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max: max.max(1),
        }
    }

    /// Adds a chunk of output; returns the lines it completes as `(partial, content)`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(bool, Vec<u8>)> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            match rest.iter().take(self.max + 1).position(|b| *b == b'\n') {
                Some(i) => {
                    out.push((false, rest[..i].to_vec()));
                    start += i + 1;
                }
                None if rest.len() > self.max => {
                    out.push((true, rest[..self.max].to_vec()));
                    start += self.max;
                }
                None => break,
            }
        }
        self.buf.drain(..start);
        // A burst of output must not keep its whole size allocated for a quiet stream.
        if self.buf.capacity() > 4 * 1024 && self.buf.len() <= 1024 {
            self.buf.shrink_to(1024);
        }
        out
    }

    /// The output left at the end of the stream, as a full line (containerd does the
    /// same with output that does not end in a newline).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

/// The name a rotated log file gets: `<file>.<YYYYMMDD-HHMMSS>` as the kubelet's log
/// manager names them, with `.<n>` after it for rotations within one second.
pub fn rotated_name(file: &Path, at: jiff::Timestamp, existing: &[PathBuf]) -> PathBuf {
    let stamp = at.strftime("%Y%m%d-%H%M%S").to_string();
    let base = format!("{}.{stamp}", file.display());
    let taken: Vec<u64> = existing
        .iter()
        .filter_map(|p| {
            let p = p.to_str()?;
            let rest = p.strip_prefix(&base)?;
            if rest.is_empty() {
                Some(0)
            } else {
                rest.strip_prefix('.')?.parse().ok()
            }
        })
        .collect();
    match taken.iter().max() {
        None => PathBuf::from(base),
        Some(n) => PathBuf::from(format!("{base}.{}", n + 1)),
    }
}

/// The order of rotated files, oldest first: by stamp, then by counter.
fn rotation_key(p: &Path) -> (String, u64) {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    // `<n>.log.<stamp>[.<counter>]`
    let mut parts = name.splitn(4, '.');
    let (_, _, stamp, counter) = (parts.next(), parts.next(), parts.next(), parts.next());
    (
        stamp.unwrap_or_default().to_string(),
        counter.and_then(|c| c.parse().ok()).unwrap_or(0),
    )
}

/// Which rotated files to remove so that, with the live file, at most `max_files`
/// remain: the oldest.
pub fn rotated_to_remove(mut rotated: Vec<PathBuf>, max_files: usize) -> Vec<PathBuf> {
    rotated.sort_by_key(|p| rotation_key(p));
    let keep = max_files.saturating_sub(1);
    let n = rotated.len().saturating_sub(keep);
    rotated.truncate(n);
    rotated
}

/// Size limits of a container's log.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    /// The live file is rotated once it reaches this size.
    pub max_size: u64,
    /// Files kept, the live one included (at least 2).
    pub max_files: usize,
}

impl Rotation {
    /// From the flags' values: a quantity (`10Mi`) and a count (at least 2).
    pub fn parse(max_size: &str, max_files: usize) -> Result<Rotation> {
        let size = skiff_api::validation::quantity::parse_value(max_size)
            .map_err(|e| Error::Config(format!("--container-log-max-size {max_size:?}: {e}")))?;
        if size < 1024 {
            return Err(Error::Config(format!(
                "--container-log-max-size {max_size:?}: at least 1Ki"
            )));
        }
        if max_files < 2 {
            return Err(Error::Config(format!(
                "--container-log-max-files {max_files}: at least 2"
            )));
        }
        Ok(Rotation {
            max_size: u64::try_from(size).unwrap_or(u64::MAX),
            max_files,
        })
    }
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// The live log file of a container, rotated by size as lines are written.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    rotation: Rotation,
}

impl LogFile {
    /// Opens (appending) or creates the file.
    pub fn open(path: &Path, rotation: Rotation) -> Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("opening", path, e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    /// Writes one line, rotating first when the file is full.
    pub fn write_line(&mut self, stream: Stream, partial: bool, content: &[u8]) -> Result<()> {
        let line = format_line(jiff::Timestamp::now(), stream, partial, content);
        if self.size > 0 && self.size + line.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        self.file
            .write_all(&line)
            .map_err(|e| Error::io("writing", &self.path, e))?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let rotated = rotated_files(&self.path);
        let target = rotated_name(&self.path, jiff::Timestamp::now(), &rotated);
        std::fs::rename(&self.path, &target).map_err(|e| Error::io("rotating", &self.path, e))?;
        let mut all = rotated;
        all.push(target);
        for old in rotated_to_remove(all, self.rotation.max_files.max(2)) {
            let _ = std::fs::remove_file(old);
        }
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("opening", &self.path, e))?;
        self.size = 0;
        Ok(())
    }
}

/// The rotated files of a live log file `path` (`<path>.<stamp>`).
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a run's log file and its rotated files.
pub fn remove_run(path: &Path) {
    for f in rotated_files(path) {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_file(path);
}

/// The FIFOs of a container's stdout and stderr in the pod directory.
pub fn fifo_paths(pod_dir: &Path, container_id: &str) -> (PathBuf, PathBuf) {
    let io = pod_dir.join("io");
    (
        io.join(format!("{container_id}-stdout")),
        io.join(format!("{container_id}-stderr")),
    )
}

/// The stdin FIFO of container `container_id` (made only for `stdin: true`).
pub fn stdin_path(pod_dir: &Path, container_id: &str) -> PathBuf {
    pod_dir.join("io").join(format!("{container_id}-stdin"))
}

/// Opens a stdin FIFO's writing end without waiting for its reader: read-write, which a
/// FIFO allows on Linux, so the open never blocks. (The shim holds a writer too; the
/// end of input is containerd's CloseIO.)
pub fn open_stdin(path: &Path) -> Result<tokio::net::unix::pipe::Sender> {
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(|e| Error::io("opening", path, e))
}

/// A running container's stdin and terminal, as its pod spec asks (`stdin`,
/// `stdinOnce`, `tty`); attach sessions write into it.
#[derive(Debug)]
pub struct Interactive {
    stdin: tokio::sync::Mutex<Option<tokio::net::unix::pipe::Sender>>,
    /// The first attach session to end closes stdin (`stdinOnce`).
    pub stdin_once: bool,
    /// The container runs on a terminal.
    pub tty: bool,
}

impl Interactive {
    /// The stdin writer (if the container has stdin) and the spec's flags.
    pub fn new(
        stdin: Option<tokio::net::unix::pipe::Sender>,
        stdin_once: bool,
        tty: bool,
    ) -> Interactive {
        Interactive {
            stdin: tokio::sync::Mutex::new(stdin),
            stdin_once,
            tty,
        }
    }

    /// Writes to the container's stdin; false once it is closed or the reader is gone.
    pub async fn write(&self, data: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        let mut stdin = self.stdin.lock().await;
        match stdin.as_mut() {
            Some(w) => w.write_all(data).await.is_ok(),
            None => false,
        }
    }

    /// Lets go of stdin; no attach writes into it again (the caller ends the
    /// container's input with CloseIO).
    pub async fn close(&self) {
        self.stdin.lock().await.take();
    }
}

/// Makes a FIFO (an existing one is kept).
pub fn make_fifo(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    }
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(Error::io("making the FIFO", path, e.into())),
    }
}

/// Opens a FIFO for reading once its writer (containerd's shim) opens it: a reader
/// that opened before the writer would see the end of the stream at once.
pub async fn open_when_written(path: PathBuf) -> Result<tokio::net::unix::pipe::Receiver> {
    let p = path.clone();
    let file = tokio::task::spawn_blocking(move || std::fs::File::open(&p))
        .await
        .map_err(|e| Error::io("opening", &path, std::io::Error::other(e)))?
        .map_err(|e| Error::io("opening", &path, e))?;
    tokio::net::unix::pipe::Receiver::from_file(file).map_err(|e| Error::io("opening", &path, e))
}

/// Opens a FIFO for reading now (a running container's, whose writer is open).
pub fn open_now(path: &Path) -> Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|e| Error::io("opening", path, e))
}

/// Lets a reader waiting in [`open_when_written`] go when no writer will come (the
/// task was not created): it then reads the end of the stream.
pub fn release(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
}

/// A chunk of a running container's output, as attach sessions receive it.
pub type OutputChunk = (Stream, std::sync::Arc<[u8]>);

/// The live output of the running containers, keyed by container id: the log pump of
/// each container publishes what it reads, and attach sessions subscribe.
#[derive(Clone, Debug, Default)]
pub struct Attachments {
    live: std::sync::Arc<
        std::sync::Mutex<
            std::collections::HashMap<String, tokio::sync::broadcast::Sender<OutputChunk>>,
        >,
    >,
    /// The stdin and terminal of the running containers that have them.
    interactive: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Interactive>>>,
    >,
}

/// Chunks buffered per attach session; a slower client misses output (it stays in the log).
/// Every running container holds a channel of this many slots, attached or not.
const ATTACH_BUFFER: usize = 16;

impl Attachments {
    /// Starts publishing the output of container `id`, with its stdin and terminal when
    /// it has them; both end when the publisher drops.
    pub fn publish_interactive(&self, id: &str, interactive: Option<Interactive>) -> Publisher {
        if let Some(i) = interactive {
            self.interactive
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string(), std::sync::Arc::new(i));
        }
        self.publish(id)
    }

    /// The stdin and terminal of container `id`, if it has them and runs.
    pub fn interactive(&self, id: &str) -> Option<std::sync::Arc<Interactive>> {
        self.interactive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Starts publishing the output of container `id`; it ends when the publisher drops.
    pub fn publish(&self, id: &str) -> Publisher {
        let (tx, _) = tokio::sync::broadcast::channel(ATTACH_BUFFER);
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), tx.clone());
        Publisher {
            id: id.to_string(),
            tx,
            attachments: self.clone(),
        }
    }

    /// The output of container `id` from now on, while its pump runs.
    pub fn subscribe(&self, id: &str) -> Option<tokio::sync::broadcast::Receiver<OutputChunk>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|tx| tx.subscribe())
    }
}

/// The publishing side of one container's output; dropping it ends the subscribers'
/// streams.
#[derive(Debug)]
pub struct Publisher {
    id: String,
    tx: tokio::sync::broadcast::Sender<OutputChunk>,
    attachments: Attachments,
}

impl Publisher {
    fn send(&self, stream: Stream, chunk: &[u8]) {
        // Nothing is copied while nobody is attached.
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send((stream, chunk.into()));
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let mut live = self
            .attachments
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if live
            .get(&self.id)
            .is_some_and(|tx| tx.same_channel(&self.tx))
        {
            live.remove(&self.id);
            self.attachments
                .interactive
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

/// Copies a container's stdout and stderr (FIFO readers) into its log file until both
/// end (the runtime closes them when the process and its output are done), and to the
/// attach sessions of `publisher`.
pub async fn pump(
    stdout: Option<tokio::net::unix::pipe::Receiver>,
    stderr: Option<tokio::net::unix::pipe::Receiver>,
    mut file: LogFile,
    publisher: Publisher,
) {
    let mut streams = [
        (Stream::Stdout, stdout, LineSplitter::new(MAX_LINE)),
        (Stream::Stderr, stderr, LineSplitter::new(MAX_LINE)),
    ];
    let write = |file: &mut LogFile, stream: Stream, lines: Vec<(bool, Vec<u8>)>| {
        for (partial, content) in lines {
            if let Err(e) = file.write_line(stream, partial, &content) {
                tracing::warn!(error = %e, "writing a container log failed");
            }
        }
    };
    loop {
        let [(_, out, _), (_, err, _)] = &mut streams;
        // Wait for output without holding a read buffer: a node's pods are mostly
        // quiet, and a buffer kept across the wait would cost every container its size.
        let which = match (out.as_ref(), err.as_ref()) {
            (None, None) => break,
            (Some(o), None) => o.readable().await.map(|()| 0),
            (None, Some(e)) => e.readable().await.map(|()| 1),
            (Some(o), Some(e)) => tokio::select! {
                r = o.readable() => r.map(|()| 0),
                r = e.readable() => r.map(|()| 1),
            },
        };
        let (stream, reader, splitter) = match which {
            Ok(i) => &mut streams[i],
            Err(_) => {
                // Readiness itself failed: the FIFO is unusable, end both streams.
                for (stream, reader, splitter) in &mut streams {
                    *reader = None;
                    if let Some(rest) = splitter.finish() {
                        write(&mut file, *stream, vec![(false, rest)]);
                    }
                }
                break;
            }
        };
        let Some(r) = reader.as_ref() else { continue };
        let mut buf = [0u8; 32 * 1024];
        match r.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(0) | Err(_) => {
                *reader = None;
                if let Some(rest) = splitter.finish() {
                    write(&mut file, *stream, vec![(false, rest)]);
                }
            }
            Ok(n) => {
                publisher.send(*stream, &buf[..n]);
                let lines = splitter.push(&buf[..n]);
                write(&mut file, *stream, lines);
            }
        }
    }
}

/// The options of a container log request, from its query (Kubernetes' PodLogOptions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines until the container exits.
    pub follow: bool,
    /// The previous run of the container instead of the current one.
    pub previous: bool,
    /// Prefix every line with its RFC3339Nano time.
    pub timestamps: bool,
    /// Only the last this many lines (before `since` is applied, as the kubelet does).
    pub tail_lines: Option<u64>,
    /// Only lines logged at or after this time (sinceSeconds or sinceTime).
    pub since: Option<jiff::Timestamp>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Parses `follow=true&tailLines=10&…`, with the API server's validation messages;
    /// `now` turns sinceSeconds into a time.
    pub fn parse(query: &str, now: jiff::Timestamp) -> std::result::Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let mut since_seconds: Option<i64> = None;
        let mut since_time: Option<jiff::Timestamp> = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let flag = || match v.as_ref() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                other => Err(format!("{k}={other:?} is not a boolean")),
            };
            let int = || {
                v.parse::<i64>()
                    .map_err(|_| format!("{k}={v:?} is not an integer"))
            };
            match k.as_ref() {
                "follow" => o.follow = flag()?,
                "previous" => o.previous = flag()?,
                "timestamps" => o.timestamps = flag()?,
                "tailLines" => {
                    let n = int()?;
                    if n < 0 {
                        return Err(format!(
                            "tailLines: Invalid value: {n}: must be greater than or equal to 0"
                        ));
                    }
                    o.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n = int()?;
                    if n < 1 {
                        return Err(format!(
                            "limitBytes: Invalid value: {n}: must be greater than 0"
                        ));
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = int()?;
                    if n < 1 {
                        return Err(format!(
                            "sinceSeconds: Invalid value: {n}: must be greater than 0"
                        ));
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    since_time =
                        Some(v.parse::<jiff::Timestamp>().map_err(|e| {
                            format!("sinceTime={v:?} is not an RFC 3339 time: {e}")
                        })?);
                }
                _ => {}
            }
        }
        o.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into())
            }
            (Some(s), None) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(s))
                    .unwrap_or(jiff::Timestamp::MIN),
            ),
            (None, t) => t,
        };
        Ok(o)
    }
}

/// The files of one container run, oldest first: its rotated files, then the live one.
pub fn run_files(live: &Path) -> Vec<PathBuf> {
    let mut rotated = rotated_files(live);
    rotated.sort_by_key(|p| rotation_key(p));
    rotated.push(live.to_path_buf());
    rotated
}

/// What a request returns of the lines already written (oldest first): the last
/// `tailLines`, then those not older than `since`, as the kubelet applies them.
pub fn select(lines: Vec<LogLine>, options: &LogOptions) -> Vec<LogLine> {
    let skip = options
        .tail_lines
        .map_or(0, |n| lines.len().saturating_sub(n as usize));
    lines
        .into_iter()
        .skip(skip)
        .filter(|l| options.since.is_none_or(|s| l.time >= s))
        .collect()
}

/// The bytes a reader gets for one line: its output, after its time when asked.
pub fn render(line: &LogLine, timestamps: bool) -> Vec<u8> {
    if !timestamps {
        return line.output();
    }
    let mut out = format_time(line.time).into_bytes();
    out.push(b' ');
    out.extend_from_slice(&line.output());
    out
}

/// Counts the output against `limitBytes`.
#[derive(Clone, Copy, Debug)]
pub struct ByteLimit {
    left: Option<u64>,
}

impl ByteLimit {
    /// A limit of `limit` bytes (none when `None`).
    pub fn new(limit: Option<u64>) -> Self {
        ByteLimit { left: limit }
    }

    /// How much of `chunk` may still go out.
    pub fn take<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        match &mut self.left {
            None => chunk,
            Some(left) => {
                let n = chunk
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                &chunk[..n]
            }
        }
    }

    /// Whether the limit is used up.
    pub fn exhausted(&self) -> bool {
        self.left == Some(0)
    }
}

/// Parses the complete lines of `bytes` (a log file's content); returns them and how
/// many bytes they took (an incomplete last line is left for later). Lines that do
/// not parse are skipped with a warning.
pub fn parse_lines(bytes: &[u8]) -> (Vec<LogLine>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some(i) = bytes[used..].iter().position(|b| *b == b'\n') {
        let line = &bytes[used..used + i + 1];
        used += i + 1;
        match parse_line(line) {
            Ok(l) => out.push(l),
            Err(e) => tracing::warn!(error = %e, "skipping a log line that does not parse"),
        }
    }
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn paths_follow_kubernetes() {
        let dir = pod_log_dir(Path::new("/var/log/pods"), "default", "web", "u-1");
        assert_eq!(dir, Path::new("/var/log/pods/default_web_u-1"));
        assert_eq!(
            container_log_path(&dir, "main", 3),
            Path::new("/var/log/pods/default_web_u-1/main/3.log")
        );
    }

    #[test]
    fn times_are_go_rfc3339nano() {
        assert_eq!(
            format_time(ts("2024-01-02T03:04:05.120000000Z")),
            "2024-01-02T03:04:05.12Z"
        );
        assert_eq!(
            format_time(ts("2024-01-02T03:04:05Z")),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            format_time(ts("2024-01-02T03:04:05.000000001Z")),
            "2024-01-02T03:04:05.000000001Z"
        );
    }

    #[test]
    fn lines_round_trip() {
        let t = ts("2016-10-06T00:17:09.669794202Z");
        let line = format_line(t, Stream::Stderr, true, b"part of it");
        assert_eq!(
            line,
            b"2016-10-06T00:17:09.669794202Z stderr P part of it\n".to_vec()
        );
        let parsed = parse_line(&line).unwrap();
        assert_eq!(
            parsed,
            LogLine {
                time: t,
                stream: Stream::Stderr,
                partial: true,
                content: b"part of it".to_vec(),
            }
        );
        assert_eq!(parsed.output(), b"part of it");
        let full = parse_line(&format_line(t, Stream::Stdout, false, b"")).unwrap();
        assert_eq!(full.content, b"");
        assert_eq!(full.output(), b"\n");
        // Spaces in the content are kept; more tags after ':' are allowed.
        let l = parse_line(b"2016-10-06T00:17:09Z stdout F:x  two  spaces").unwrap();
        assert_eq!(l.content, b" two  spaces");
        assert!(!l.partial);
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in [
            &b""[..],
            b"yesterday stdout F x",
            b"2016-10-06T00:17:09Z stdin F x",
            b"2016-10-06T00:17:09Z stdout X x",
            b"2016-10-06T00:17:09Z stdout",
        ] {
            assert!(
                parse_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn splitter_makes_full_and_partial_lines() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push(b"ab"), vec![]);
        assert_eq!(s.push(b"c\nde"), vec![(false, b"abc".to_vec())]);
        // Exactly max bytes and then a newline is one full line.
        assert_eq!(s.push(b"fg\n"), vec![(false, b"defg".to_vec())]);
        assert_eq!(
            s.push(b"123456789"),
            vec![(true, b"1234".to_vec()), (true, b"5678".to_vec())]
        );
        assert_eq!(
            s.push(b"\n\n"),
            vec![(false, b"9".to_vec()), (false, vec![])]
        );
        assert_eq!(s.push(b"tail"), vec![]);
        assert_eq!(s.finish(), Some(b"tail".to_vec()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn rotation_names_and_pruning() {
        let live = Path::new("/l/main/0.log");
        let t = ts("2024-05-06T07:08:09Z");
        let first = rotated_name(live, t, &[]);
        assert_eq!(first, Path::new("/l/main/0.log.20240506-070809"));
        let second = rotated_name(live, t, std::slice::from_ref(&first));
        assert_eq!(second, Path::new("/l/main/0.log.20240506-070809.1"));
        // After the oldest of one second was pruned, the counter still goes up.
        let third = rotated_name(live, t, std::slice::from_ref(&second));
        assert_eq!(third, Path::new("/l/main/0.log.20240506-070809.2"));
        let same_second: Vec<PathBuf> = ["0.log.20240506-070809.10", "0.log.20240506-070809.9"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            rotated_to_remove(same_second, 2),
            vec![PathBuf::from("0.log.20240506-070809.9")]
        );
        let files: Vec<PathBuf> = [
            "0.log.20240101-000000",
            "0.log.20230101-000000",
            "0.log.20240201-000000",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            rotated_to_remove(files.clone(), 3),
            vec![PathBuf::from("0.log.20230101-000000")]
        );
        assert!(rotated_to_remove(files, 4).is_empty());
    }

    #[test]
    fn log_options_follow_pod_log_options() {
        let now = ts("2024-01-01T00:10:00Z");
        let o = LogOptions::parse(
            "follow=true&tailLines=3&timestamps=1&previous=false&sinceSeconds=60&limitBytes=9",
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.limit_bytes, Some(9));
        assert_eq!(o.since, Some(ts("2024-01-01T00:09:00Z")));
        let t = LogOptions::parse("sinceTime=2024-01-01T00:00:00Z", now).unwrap();
        assert_eq!(t.since, Some(ts("2024-01-01T00:00:00Z")));
        assert!(LogOptions::parse("tailLines=-1", now)
            .unwrap_err()
            .contains("greater than or equal to 0"));
        assert!(LogOptions::parse("limitBytes=0", now).is_err());
        assert!(LogOptions::parse("sinceSeconds=0", now).is_err());
        assert!(LogOptions::parse("follow=maybe", now).is_err());
        assert!(
            LogOptions::parse("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z", now)
                .unwrap_err()
                .contains("at most one")
        );
        assert_eq!(LogOptions::parse("", now).unwrap(), LogOptions::default());
    }

    #[test]
    fn tail_comes_before_since_and_timestamps_prefix_lines() {
        let line = |t: &str, c: &str| LogLine {
            time: ts(t),
            stream: Stream::Stdout,
            partial: false,
            content: c.as_bytes().to_vec(),
        };
        let lines = vec![
            line("2024-01-01T00:00:01Z", "a"),
            line("2024-01-01T00:00:02Z", "b"),
            line("2024-01-01T00:00:03Z", "c"),
        ];
        let o = |tail: Option<u64>, since: Option<&str>| LogOptions {
            tail_lines: tail,
            since: since.map(ts),
            ..Default::default()
        };
        let contents = |v: Vec<LogLine>| v.into_iter().map(|l| l.content).collect::<Vec<_>>();
        assert_eq!(
            contents(select(lines.clone(), &o(Some(2), None))),
            [b"b", b"c"]
        );
        assert_eq!(contents(select(lines.clone(), &o(Some(0), None))).len(), 0);
        assert_eq!(
            contents(select(
                lines.clone(),
                &o(None, Some("2024-01-01T00:00:02Z"))
            )),
            [b"b", b"c"]
        );
        assert_eq!(
            contents(select(
                lines.clone(),
                &o(Some(2), Some("2024-01-01T00:00:03Z"))
            )),
            [b"c"]
        );
        assert_eq!(render(&lines[0], false), b"a\n");
        assert_eq!(render(&lines[0], true), b"2024-01-01T00:00:01Z a\n");
    }

    #[test]
    fn byte_limits_truncate_and_lines_parse_incrementally() {
        let mut l = ByteLimit::new(Some(5));
        assert_eq!(l.take(b"abc"), b"abc");
        assert!(!l.exhausted());
        assert_eq!(l.take(b"defg"), b"de");
        assert!(l.exhausted());
        assert_eq!(l.take(b"x"), b"");
        assert_eq!(ByteLimit::new(None).take(b"xyz"), b"xyz");
        let text = b"2024-01-01T00:00:01Z stdout F one\njunk\n2024-01-01T00:00:02Z stderr P tw";
        let (lines, used) = parse_lines(text);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].content, b"one");
        assert_eq!(&text[used..], b"2024-01-01T00:00:02Z stderr P tw");
    }

    #[test]
    fn attachments_fan_out_until_the_publisher_drops() {
        use tokio::sync::broadcast::error::TryRecvError;
        let a = Attachments::default();
        assert!(a.subscribe("c").is_none());
        let p = a.publish("c");
        p.send(Stream::Stdout, b"nobody listens yet");
        let mut r1 = a.subscribe("c").unwrap();
        let mut r2 = a.subscribe("c").unwrap();
        p.send(Stream::Stderr, b"x");
        let (stream, data) = r1.try_recv().unwrap();
        assert_eq!((stream, &*data), (Stream::Stderr, &b"x"[..]));
        assert_eq!(&*r2.try_recv().unwrap().1, b"x");
        // A restarted container publishes under a new id; the old publisher's drop
        // must not remove a newer entry of the same id either.
        let newer = a.publish("c");
        drop(p);
        assert!(matches!(r1.try_recv(), Err(TryRecvError::Closed)));
        assert!(a.subscribe("c").is_some());
        drop(newer);
        assert!(a.subscribe("c").is_none());
    }
}
