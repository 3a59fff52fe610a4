//! The kubelet's streaming API, which the apiserver proxies `pods/log`, `pods/exec`,
//! `pods/attach` and `pods/portforward` (see [`crate::portforward`]) to:
//! `/containerLogs/{namespace}/{pod}/{container}` answers with the container's log as
//! plain text (chunked while following), `/exec/{namespace}/{pod}/{container}` runs a
//! command and `/attach/{namespace}/{pod}/{container}` streams the running container's
//! stdout and stderr (from the log pump, see [`crate::logs::Attachments`]), both over a
//! WebSocket speaking Kubernetes' channel protocol (`v5.channel.k8s.io`, or
//! `v4.channel.k8s.io`).
//!
//! Every binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the
//! final status (a `metav1.Status` in JSON), 4 terminal resize (`{"Width":…,"Height":…}`).
//! v5 adds the close signal `[255, channel]`, with which the client ends stdin.
//!
//! The command runs as a containerd exec process of the container's task; its stdio are
//! FIFOs under `<root-dir>/exec/<exec id>/`, removed when the session ends.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use containerd_client::services::v1::{
    CloseIoRequest, Container, DeleteProcessRequest, ExecProcessRequest, KillRequest,
    ResizePtyRequest, StartRequest, WaitRequest,
};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::logs::{self, ByteLimit, LogLine, LogOptions};
use crate::runtime::{labels, Runtime};
use crate::{Error, Result};
use k8s_openapi::api::core::v1::Pod;
use skiff_client::Store;

/// The subprotocols this server speaks, best first.
pub const CHANNEL_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Channel numbers of the remote command protocol.
pub mod channel {
    /// The command's stdin (client to server).
    pub const STDIN: u8 = 0;
    /// The command's stdout.
    pub const STDOUT: u8 = 1;
    /// The command's stderr.
    pub const STDERR: u8 = 2;
    /// The final status of the command.
    pub const ERROR: u8 = 3;
    /// Terminal size changes (client to server).
    pub const RESIZE: u8 = 4;
    /// v5's close signal: the next byte names the channel the client closed.
    pub const CLOSE: u8 = 255;
}

/// How long output may still arrive after the command exited (a background child that
/// holds stdout open would otherwise keep the session open forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// What the streaming server needs of the kubelet.
#[derive(Clone)]
pub struct Streaming {
    /// The containerd connection.
    pub runtime: Runtime,
    /// `--root-dir`; exec FIFOs go below it.
    pub root_dir: PathBuf,
    /// `--pod-logs-dir`, where container logs are read.
    pub pod_logs_dir: PathBuf,
    /// The pods bound to this node (their uids and container statuses).
    pub pods: Store<Pod>,
    /// The running containers' live output, for attach.
    pub attachments: logs::Attachments,
}

/// The streaming routes, to be merged into the kubelet's server.
pub fn router(streaming: Streaming) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            axum::routing::get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route(
            "/portForward/{namespace}/{pod}",
            any(crate::portforward::port_forward),
        )
        .with_state(Arc::new(streaming))
}

/// Serves the streaming routes until `stop` turns true.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    streaming: Streaming,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router(streaming))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "kubelet API server failed");
    }
}

/// The options of an exec request, from its query (Kubernetes' PodExecOptions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Whether stdin is attached.
    pub stdin: bool,
    /// Whether stdout is attached.
    pub stdout: bool,
    /// Whether stderr is attached (never with a terminal, which merges it into stdout).
    pub stderr: bool,
    /// Whether the command runs in a terminal.
    pub tty: bool,
}

impl ExecOptions {
    /// Parses `command=…&command=…&stdin=true…`; booleans accept what Go's
    /// strconv.ParseBool accepts.
    pub fn parse(query: &str) -> std::result::Result<ExecOptions, String> {
        let o = ExecOptions::parse_streams(query)?;
        if o.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        Ok(o)
    }

    /// Parses the stream flags of an attach request (no command).
    pub fn parse_streams(query: &str) -> std::result::Result<ExecOptions, String> {
        let mut o = ExecOptions::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let flag = || match v.as_ref() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                other => Err(format!("{k}={other:?} is not a boolean")),
            };
            match k.as_ref() {
                "command" => o.command.push(v.into_owned()),
                "stdin" | "input" => o.stdin = flag()?,
                "stdout" | "output" => o.stdout = flag()?,
                "stderr" | "error" => o.stderr = flag()?,
                "tty" => o.tty = flag()?,
                _ => {}
            }
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err("you must specify at least one of stdin, stdout, stderr".into());
        }
        if o.tty && o.stderr {
            // A terminal has one output stream; Kubernetes refuses the combination.
            return Err(
                "stdout and stderr cannot both be attached with tty; stderr is merged into stdout"
                    .into(),
            );
        }
        Ok(o)
    }
}

/// A Status answer with Kubernetes' shape, for errors before the upgrade.
pub(crate) fn status_response(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn attach(
    State(s): State<Arc<Streaming>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let options = match ExecOptions::parse_streams(query.as_deref().unwrap_or("")) {
        Ok(o) => o,
        Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let not_running = || {
        status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("container {container} of pod {namespace}/{pod} is not running on this node"),
        )
    };
    let running = match running_container(&s.runtime, &namespace, &pod, &container).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_running(),
        Err(e) => {
            return status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        }
    };
    let Some(output) = s.attachments.subscribe(&running.id) else {
        return not_running();
    };
    // As with containerd, input for a container without stdin (or whose stdinOnce
    // stdin has closed) is dropped, and a terminal is what the container has.
    let interactive = s.attachments.interactive(&running.id);
    // After the checks above: kubectl retries over SPDY after any refusal of its
    // WebSocket, so a real error must also be the answer to SPDY.
    let Ok(upgrade) = upgrade else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "attach needs a WebSocket upgrade with subprotocol v5.channel.k8s.io or v4.channel.k8s.io; skiff's kubelet does not speak SPDY".into(),
        );
    };
    let upgrade = upgrade.protocols(CHANNEL_PROTOCOLS);
    if upgrade.selected_protocol().is_none() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "none of the offered WebSocket subprotocols is served; this kubelet speaks {}",
                CHANNEL_PROTOCOLS.join(", ")
            ),
        );
    }
    let v5 = upgrade
        .selected_protocol()
        .is_some_and(|p| p == CHANNEL_PROTOCOLS[0]);
    tracing::info!(pod = %format!("{namespace}/{pod}"), %container, stdin = options.stdin, tty = options.tty, "attach");
    let wants_input = options.stdin || options.tty;
    let session = AttachSession {
        options,
        interactive: interactive.filter(|_| wants_input),
        rt: s.runtime.clone(),
        container_id: running.id,
        v5,
    };
    upgrade.on_upgrade(move |socket| session.run(socket, output))
}

/// One `kubectl attach`: the container's output out, and with `-i` and `-t` its stdin
/// and terminal size in.
struct AttachSession {
    options: ExecOptions,
    interactive: Option<Arc<logs::Interactive>>,
    rt: Runtime,
    container_id: String,
    v5: bool,
}

impl AttachSession {
    /// Forwards the container's output until it ends (the container exited: Success on
    /// the status channel, as Kubernetes reports a finished attach) or the client leaves.
    async fn run(
        self,
        socket: WebSocket,
        mut output: tokio::sync::broadcast::Receiver<logs::OutputChunk>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        let (mut ws_tx, mut ws_rx) = socket.split();
        let options = &self.options;
        loop {
            tokio::select! {
                chunk = output.recv() => match chunk {
                    Ok((stream, data)) => {
                        let chan = match stream {
                            logs::Stream::Stdout if options.stdout || options.tty => channel::STDOUT,
                            logs::Stream::Stderr if options.stderr => channel::STDERR,
                            _ => continue,
                        };
                        let mut msg = Vec::with_capacity(data.len() + 1);
                        msg.push(chan);
                        msg.extend_from_slice(&data);
                        if ws_tx.send(Message::Binary(msg.into())).await.is_err() {
                            self.detach().await;
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(chunks = n, "an attach client is too slow; output skipped (it is in the log)");
                    }
                    Err(RecvError::Closed) => break,
                },
                msg = ws_rx.next() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                        self.detach().await;
                        return;
                    }
                    Some(Ok(Message::Binary(b))) => self.input(&b).await,
                    Some(Ok(_)) => {}
                },
            }
        }
        let mut msg = vec![channel::ERROR];
        msg.extend_from_slice(
            json!({"metadata": {}, "status": "Success"})
                .to_string()
                .as_bytes(),
        );
        let _ = ws_tx.send(Message::Binary(msg.into())).await;
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    }

    /// What the client sends: stdin, the terminal's size, and (v5) the end of stdin.
    async fn input(&self, message: &[u8]) {
        let Some(interactive) = &self.interactive else {
            return;
        };
        match message.first().copied() {
            Some(channel::STDIN) if self.options.stdin => {
                interactive.write(&message[1..]).await;
            }
            Some(channel::RESIZE) if interactive.tty => {
                resize_terminal(&self.rt, &self.container_id, "", &message[1..]).await;
            }
            Some(channel::CLOSE)
                if self.v5 && message.get(1) == Some(&channel::STDIN) && interactive.stdin_once =>
            {
                self.close_stdin(interactive).await;
            }
            _ => {}
        }
    }

    /// The client left: with `stdinOnce`, the container's stdin ends with the first
    /// attach that used it.
    async fn detach(&self) {
        if let Some(i) = &self.interactive {
            if self.options.stdin && i.stdin_once {
                self.close_stdin(i).await;
            }
        }
    }

    /// Ends the container's input: the shim holds the FIFO open itself, so the end
    /// comes from CloseIO, after the kubelet lets go of its writer.
    async fn close_stdin(&self, interactive: &logs::Interactive) {
        interactive.close().await;
        let _ = self
            .rt
            .tasks()
            .close_io(self.rt.req(CloseIoRequest {
                container_id: self.container_id.clone(),
                exec_id: String::new(),
                stdin: true,
            }))
            .await;
    }
}

async fn exec(
    State(s): State<Arc<Streaming>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let options = match ExecOptions::parse(query.as_deref().unwrap_or("")) {
        Ok(o) => o,
        Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let target = match running_container(&s.runtime, &namespace, &pod, &container).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "container {container} of pod {namespace}/{pod} is not running on this node"
                ),
            )
        }
        Err(e) => {
            return status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        }
    };
    // After the container check: kubectl retries over SPDY after any refusal of its
    // WebSocket, so a real error must also be the answer to SPDY.
    let Ok(upgrade) = upgrade else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "exec needs a WebSocket upgrade with subprotocol v5.channel.k8s.io or v4.channel.k8s.io; skiff's kubelet does not speak SPDY".into(),
        );
    };
    let upgrade = upgrade.protocols(CHANNEL_PROTOCOLS);
    let Some(protocol) = upgrade
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .map(str::to_string)
    else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "none of the offered WebSocket subprotocols is served; this kubelet speaks {}",
                CHANNEL_PROTOCOLS.join(", ")
            ),
        );
    };
    let v5 = protocol == CHANNEL_PROTOCOLS[0];
    tracing::info!(pod = %format!("{namespace}/{pod}"), %container, command = ?options.command, tty = options.tty, %protocol, "exec");
    upgrade.on_upgrade(move |socket| async move {
        let session = ExecSession {
            rt: s.runtime.clone(),
            container: target,
            exec_id: format!("exec-{:016x}", rand::random::<u64>()),
            options,
            v5,
            dir: s.root_dir.join("exec"),
        };
        session.run(socket).await;
    })
}

/// The newest container of the pod with that name whose task runs.
async fn running_container(
    rt: &Runtime,
    namespace: &str,
    pod: &str,
    name: &str,
) -> Result<Option<Container>> {
    let filter = format!(
        "labels.\"{}\"=={namespace},labels.\"{}\"=={pod},labels.\"{}\"=={name}",
        labels::POD_NAMESPACE,
        labels::POD_NAME,
        labels::CONTAINER_NAME
    );
    let mut candidates = rt.list_containers(Some(filter)).await?;
    let restarts = |c: &Container| -> u64 {
        c.labels
            .get(labels::RESTART_COUNT)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    };
    candidates.sort_by_key(|c| std::cmp::Reverse(restarts(c)));
    for c in candidates {
        if let Some((true, _)) = rt.task_state(&c.id).await? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The process spec of an exec: the container's own (user, environment, working
/// directory, capabilities) with the command and terminal replaced, as containerd's CRI
/// plugin builds it.
pub fn exec_process_spec(container_spec: &Value, options: &ExecOptions) -> Value {
    let mut process = container_spec["process"].clone();
    if !process.is_object() {
        process = json!({"cwd": "/", "user": {"uid": 0, "gid": 0}});
    }
    process["args"] = json!(options.command);
    process["terminal"] = json!(options.tty);
    if options.tty {
        let env = process["env"].as_array().cloned().unwrap_or_default();
        if !env
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("TERM=")))
        {
            let mut env = env;
            env.push(json!("TERM=xterm"));
            process["env"] = Value::Array(env);
        }
    }
    if let Some(p) = process.as_object_mut() {
        p.remove("consoleSize");
    }
    process
}

/// The final status of a command as the protocol reports it: Success, or Failure with
/// the exit code as kubectl reads it (reason NonZeroExitCode, cause ExitCode).
pub fn exit_status(command: &[String], code: u32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// Resizes the terminal of a container's process (`exec_id` empty: its main one) as a
/// resize message asks; a message that does not parse is ignored, as the kubelet does.
async fn resize_terminal(rt: &Runtime, container_id: &str, exec_id: &str, message: &[u8]) {
    if let Some((width, height)) = parse_resize(message) {
        let _ = rt
            .tasks()
            .resize_pty(rt.req(ResizePtyRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
                width,
                height,
            }))
            .await;
    }
}

/// A terminal resize message (`{"Width":80,"Height":24}`).
pub fn parse_resize(payload: &[u8]) -> Option<(u32, u32)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let dim = |k: &str| v[k].as_u64().and_then(|n| u32::try_from(n).ok());
    Some((dim("Width")?, dim("Height")?))
}

enum Output {
    Data(u8, Vec<u8>),
    Eof,
}

/// Reads a FIFO in a thread of its own: opening the read end blocks until containerd's
/// shim opens the write end, and end of file then means the command's output is done.
fn spawn_reader(path: PathBuf, chan: u8, tx: mpsc::Sender<Output>, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        if let Ok(mut f) = std::fs::File::open(&path) {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(Output::Data(chan, buf[..n].to_vec()))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        }
        done.store(true, Ordering::SeqCst);
        let _ = tx.blocking_send(Output::Eof);
    });
}

/// Opens a FIFO for writing and closes it again until its reader thread has finished, so
/// that a reader still blocked in open (the exec never started) returns.
async fn release_reader(path: &Path, done: &AtomicBool) {
    for _ in 0..100 {
        if done.load(Ordering::SeqCst) {
            return;
        }
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct ExecSession {
    rt: Runtime,
    container: Container,
    exec_id: String,
    options: ExecOptions,
    v5: bool,
    dir: PathBuf,
}

impl ExecSession {
    async fn run(self, socket: WebSocket) {
        let fifo_dir = self.dir.join(&self.exec_id);
        let (mut ws_tx, ws_rx) = socket.split();
        let result = self.stream(&fifo_dir, &mut ws_tx, ws_rx).await;
        let status = match result {
            Ok(Some(code)) => Some(exit_status(&self.options.command, code)),
            Ok(None) => None,
            Err(e) => Some(json!({
                "metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                "message": format!("error executing command in container: {e}"),
            })),
        };
        if let Some(status) = status {
            let mut msg = vec![channel::ERROR];
            msg.extend_from_slice(status.to_string().as_bytes());
            let _ = ws_tx.send(Message::Binary(msg.into())).await;
        }
        // A normal closure (1000), so that kubectl's stream readers see end of file;
        // a close without a code reads to them as an error.
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
        let _ = self
            .rt
            .tasks()
            .delete_process(self.rt.req(DeleteProcessRequest {
                container_id: self.container.id.clone(),
                exec_id: self.exec_id.clone(),
            }))
            .await;
        let _ = std::fs::remove_dir_all(&fifo_dir);
    }

    /// Runs the command with its streams attached; `Ok(None)` when the client left
    /// before it ended (the command is then killed).
    async fn stream(
        &self,
        fifo_dir: &Path,
        ws_tx: &mut futures::stream::SplitSink<WebSocket, Message>,
        mut ws_rx: futures::stream::SplitStream<WebSocket>,
    ) -> Result<Option<u32>> {
        std::fs::create_dir_all(fifo_dir).map_err(|e| Error::io("creating", fifo_dir, e))?;
        let fifo = |name: &str, wanted: bool| -> Result<Option<PathBuf>> {
            if !wanted {
                return Ok(None);
            }
            let path = fifo_dir.join(name);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::io("creating the FIFO", &path, e.into()))?;
            Ok(Some(path))
        };
        let o = &self.options;
        let stdin_path = fifo("stdin", o.stdin)?;
        let stdout_path = fifo("stdout", o.stdout || o.tty)?;
        let stderr_path = fifo("stderr", o.stderr && !o.tty)?;

        // Opened read-write so the open never blocks and the shim's reader never sees an
        // early end of file; the end of stdin is signalled with CloseIO.
        let stdin_writer = match &stdin_path {
            Some(p) => Some(
                tokio::net::unix::pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(p)
                    .map_err(|e| Error::io("opening", p, e))?,
            ),
            None => None,
        };
        let (out_tx, mut out_rx) = mpsc::channel::<Output>(16);
        let mut readers = Vec::new();
        for (path, chan) in [
            (&stdout_path, channel::STDOUT),
            (&stderr_path, channel::STDERR),
        ] {
            if let Some(p) = path {
                let done = Arc::new(AtomicBool::new(false));
                spawn_reader(p.clone(), chan, out_tx.clone(), done.clone());
                readers.push((p.clone(), done));
            }
        }
        drop(out_tx);

        let spec = self
            .container
            .spec
            .as_ref()
            .and_then(|any| serde_json::from_slice::<Value>(&any.value).ok())
            .unwrap_or(Value::Null);
        let process = exec_process_spec(&spec, o);
        let path_str = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let started = async {
            self.rt
                .tasks()
                .exec(self.rt.req(ExecProcessRequest {
                    container_id: self.container.id.clone(),
                    stdin: path_str(&stdin_path),
                    stdout: path_str(&stdout_path),
                    stderr: path_str(&stderr_path),
                    terminal: o.tty,
                    spec: Some(prost_types::Any {
                        type_url:
                            "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                        value:
                            serde_json::to_vec(&process).map_err(|e| Error::Spec(e.to_string()))?,
                    }),
                    exec_id: self.exec_id.clone(),
                }))
                .await
                .map_err(|source| Error::Containerd {
                    op: "Tasks.Exec",
                    source,
                })?;
            self.rt
                .tasks()
                .start(self.rt.req(StartRequest {
                    container_id: self.container.id.clone(),
                    exec_id: self.exec_id.clone(),
                }))
                .await
                .map_err(|source| Error::Containerd {
                    op: "Tasks.Start",
                    source,
                })?;
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = started {
            for (p, done) in &readers {
                release_reader(p, done).await;
            }
            return Err(e);
        }

        let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(16);
        let stdin_task = stdin_writer.map(|w| tokio::spawn(self.feed_stdin(w, stdin_rx)));
        let mut stdin_tx = Some(stdin_tx);

        let mut wait = {
            let (rt, id, exec_id) = (
                self.rt.clone(),
                self.container.id.clone(),
                self.exec_id.clone(),
            );
            tokio::spawn(async move {
                rt.tasks()
                    .wait(rt.req(WaitRequest {
                        container_id: id,
                        exec_id,
                    }))
                    .await
                    .map(|r| r.into_inner().exit_status)
            })
        };
        let mut open_outputs = readers.len();
        let mut exit: Option<u32> = None;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let mut client_open = true;
        loop {
            if exit.is_some() && open_outputs == 0 {
                break;
            }
            let deadline = drain_deadline;
            tokio::select! {
                msg = ws_rx.next(), if client_open => match msg {
                    Some(Ok(Message::Binary(b))) => match b.first().copied() {
                        Some(channel::STDIN) => {
                            if let Some(tx) = &stdin_tx {
                                let _ = tx.send(b[1..].to_vec()).await;
                            }
                        }
                        Some(channel::RESIZE) => {
                            resize_terminal(&self.rt, &self.container.id, &self.exec_id, &b[1..]).await;
                        }
                        Some(channel::CLOSE) if self.v5 && b.get(1) == Some(&channel::STDIN) => {
                            stdin_tx = None;
                        }
                        _ => {}
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        client_open = false;
                        if exit.is_none() {
                            tracing::info!(exec_id = %self.exec_id, "exec client left; killing the command");
                            let _ = self.rt.tasks().kill(self.rt.req(KillRequest {
                                container_id: self.container.id.clone(),
                                exec_id: self.exec_id.clone(),
                                signal: 9,
                                all: false,
                            })).await;
                        }
                    }
                    Some(Ok(_)) => {}
                },
                out = out_rx.recv(), if open_outputs > 0 => match out {
                    Some(Output::Data(chan, data)) => {
                        let mut msg = Vec::with_capacity(data.len() + 1);
                        msg.push(chan);
                        msg.extend_from_slice(&data);
                        if client_open && ws_tx.send(Message::Binary(msg.into())).await.is_err() {
                            client_open = false;
                        }
                    }
                    Some(Output::Eof) => open_outputs -= 1,
                    None => open_outputs = 0,
                },
                code = &mut wait, if exit.is_none() => {
                    let code = match code {
                        Ok(Ok(c)) => c,
                        Ok(Err(source)) => return Err(Error::Containerd { op: "Tasks.Wait", source }),
                        Err(e) => return Err(Error::Spec(format!("waiting for the exec: {e}"))),
                    };
                    exit = Some(code);
                    drain_deadline = Some(tokio::time::Instant::now() + OUTPUT_DRAIN);
                },
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    tracing::debug!(exec_id = %self.exec_id, "output still open after the command exited; ending the session");
                    break;
                }
            }
        }
        drop(stdin_tx);
        if let Some(task) = stdin_task {
            let _ = task.await;
        }
        for (p, done) in &readers {
            release_reader(p, done).await;
        }
        Ok(if client_open || exit.is_some() {
            exit
        } else {
            None
        })
    }

    fn feed_stdin(
        &self,
        mut writer: tokio::net::unix::pipe::Sender,
        mut rx: mpsc::Receiver<Vec<u8>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (rt, id, exec_id) = (
            self.rt.clone(),
            self.container.id.clone(),
            self.exec_id.clone(),
        );
        async move {
            while let Some(chunk) = rx.recv().await {
                if writer.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            drop(writer);
            let _ = rt
                .tasks()
                .close_io(rt.req(CloseIoRequest {
                    container_id: id,
                    exec_id,
                    stdin: true,
                }))
                .await;
        }
    }
}

/// Which run of a container a log request reads: its restart number (the log file's
/// name) and, when that run is still going, the container id to follow until it exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    /// The run's restart count: `<run>.log`.
    pub run: i32,
    /// The container id of a running run.
    pub running: Option<String>,
}

/// Chooses the run a log request reads from the pod's container status, with the
/// kubelet's messages when there is none (its validateContainerLogStatus).
pub fn log_target(
    pod: &Pod,
    container: &str,
    previous: bool,
) -> std::result::Result<LogTarget, String> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref().and_then(|s| {
        s.container_statuses
            .iter()
            .chain(&s.init_container_statuses)
            .flatten()
            .find(|c| c.name == container)
    });
    let Some(status) = status else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        ));
    };
    let r = status.restart_count;
    let state = status.state.clone().unwrap_or_default();
    let last = status
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .filter(|t| t.container_id.as_deref().is_some_and(|id| !id.is_empty()));
    // A waiting container's lastState is the run that just ended (number r); a running or
    // terminated one's is the run before it.
    if previous {
        if last.is_none() {
            return Err(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ));
        }
        let run = if state.waiting.is_some() { r } else { r - 1 };
        return Ok(LogTarget { run, running: None });
    }
    if state.running.is_some() {
        let id = status
            .container_id
            .as_deref()
            .map(|id| id.rsplit("://").next().unwrap_or(id).to_string());
        return Ok(LogTarget {
            run: r,
            running: id,
        });
    }
    if state.terminated.is_some() || last.is_some() {
        return Ok(LogTarget {
            run: r,
            running: None,
        });
    }
    let reason = state
        .waiting
        .and_then(|w| w.reason)
        .unwrap_or_else(|| "ContainerCreating".into());
    Err(match reason.as_str() {
        "ErrImagePull" => format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: image can't be pulled"
        ),
        "ImagePullBackOff" => format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: trying and failing to pull image"
        ),
        other => format!("container {container:?} in pod {pod_name:?} is waiting to start: {other}"),
    })
}

/// How often a followed log file is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

async fn container_logs(
    State(s): State<Arc<Streaming>>,
    UrlPath((namespace, pod_name, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let options = match LogOptions::parse(query.as_deref().unwrap_or(""), jiff::Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let Some(pod) = s.pods.get(Some(&namespace), &pod_name) else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pod {namespace:?}/{pod_name:?} not found"),
        );
    };
    let in_spec = pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == container)
    });
    if !in_spec {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("container {container:?} not found in pod {pod_name:?}"),
        );
    }
    let target = match log_target(&pod, &container, options.previous) {
        Ok(t) => t,
        Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let path = logs::container_log_path(
        &logs::pod_log_dir(&s.pod_logs_dir, &namespace, &pod_name, &uid),
        &container,
        target.run,
    );
    let follow = match (&target.running, options.follow) {
        (Some(id), true) => Some((s.runtime.clone(), id.clone())),
        _ => None,
    };
    tracing::debug!(pod = %format!("{namespace}/{pod_name}"), %container, run = target.run, follow = follow.is_some(), "container logs");
    let (tx, rx) = mpsc::channel::<std::io::Result<axum::body::Bytes>>(16);
    tokio::spawn(stream_log(path, options, follow, tx));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

/// Sends the log's lines to `tx`: those written so far (tail, since), then, when
/// following, new ones until the container exits or the reader leaves.
async fn stream_log(
    path: PathBuf,
    options: LogOptions,
    follow: Option<(Runtime, String)>,
    tx: mpsc::Sender<std::io::Result<axum::body::Bytes>>,
) {
    use tokio::io::AsyncReadExt;
    let mut limit = ByteLimit::new(options.limit_bytes);
    let send = |lines: Vec<LogLine>, limit: &mut ByteLimit| {
        let mut out = Vec::new();
        for l in &lines {
            out.extend_from_slice(limit.take(&logs::render(l, options.timestamps)));
            if limit.exhausted() {
                break;
            }
        }
        out
    };
    // The live file is opened first, so that a rotation while the older files are read
    // loses nothing: the opened handle still reads the rotated file to its end.
    let mut live = tokio::fs::File::open(&path).await.ok();
    let mut lines = Vec::new();
    for f in logs::run_files(&path) {
        if f == path {
            break;
        }
        if let Ok(bytes) = tokio::fs::read(&f).await {
            lines.extend(logs::parse_lines(&bytes).0);
        }
    }
    let mut pending = Vec::new();
    if let Some(file) = live.as_mut() {
        let _ = file.read_to_end(&mut pending).await;
        let (l, used) = logs::parse_lines(&pending);
        lines.extend(l);
        pending.drain(..used);
    }
    let first = send(logs::select(lines, &options), &mut limit);
    if !first.is_empty() && tx.send(Ok(first.into())).await.is_err() {
        return;
    }
    let Some((rt, id)) = follow else {
        return;
    };
    let since_filter = LogOptions {
        tail_lines: None,
        ..options.clone()
    };
    let mut last_check = tokio::time::Instant::now();
    let mut exited = false;
    loop {
        if limit.exhausted() || tx.is_closed() {
            return;
        }
        let mut chunk = Vec::new();
        if let Some(file) = live.as_mut() {
            let _ = file.read_to_end(&mut chunk).await;
        }
        if !chunk.is_empty() {
            pending.extend_from_slice(&chunk);
            let (l, used) = logs::parse_lines(&pending);
            pending.drain(..used);
            let out = send(logs::select(l, &since_filter), &mut limit);
            if !out.is_empty() && tx.send(Ok(out.into())).await.is_err() {
                return;
            }
            continue;
        }
        if exited {
            return;
        }
        // At the end of the open file: a rotation means the live file is a new one.
        if let Some(reopened) = rotated_away(&path, live.as_ref()).await {
            live = reopened;
            pending.clear();
            continue;
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = tokio::time::Instant::now();
            let running = match rt.task_state(&id).await {
                Ok(Some((running, _))) => running,
                Ok(None) => false,
                // containerd not answering is not the container's end.
                Err(e) => !e.is_not_found(),
            };
            if !running {
                // The log pump may still be writing the last output; read once more.
                tokio::time::sleep(Duration::from_millis(300)).await;
                exited = true;
                continue;
            }
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// The live file anew when the open handle is no longer it (rotated, or created since).
async fn rotated_away(
    path: &Path,
    open: Option<&tokio::fs::File>,
) -> Option<Option<tokio::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    let current = tokio::fs::metadata(path).await.ok()?;
    if let Some(f) = open {
        let meta = f.metadata().await.ok()?;
        if meta.ino() == current.ino() && meta.dev() == current.dev() {
            return None;
        }
    }
    Some(tokio::fs::File::open(path).await.ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_options_follow_pod_exec_options() {
        let o = ExecOptions::parse(
            "command=sh&command=-c&command=echo+hi&stdin=true&stdout=1&stderr=true",
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let a = ExecOptions::parse_streams("stdout=true&stderr=true").unwrap();
        assert!(a.stdout && a.stderr && !a.stdin && a.command.is_empty());
        assert!(ExecOptions::parse_streams("tty=true").is_err());
        assert!(ExecOptions::parse("stdout=true")
            .unwrap_err()
            .contains("at least one command"));
        assert!(ExecOptions::parse("command=ls")
            .unwrap_err()
            .contains("stdin, stdout, stderr"));
        assert!(ExecOptions::parse("command=ls&stdout=yes")
            .unwrap_err()
            .contains("boolean"));
        assert!(ExecOptions::parse("command=sh&tty=true&stdout=true&stderr=true").is_err());
    }

    #[test]
    fn exec_processes_keep_the_container_identity_and_replace_the_command() {
        let spec = json!({"process": {
            "args": ["httpd"], "env": ["PATH=/bin"], "cwd": "/srv", "user": {"uid": 1000, "gid": 1000},
            "consoleSize": {"height": 1, "width": 1}
        }});
        let p = exec_process_spec(
            &spec,
            &ExecOptions {
                command: vec!["sh".into()],
                tty: true,
                stdout: true,
                ..Default::default()
            },
        );
        assert_eq!(p["args"], json!(["sh"]));
        assert_eq!(p["cwd"], "/srv");
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["terminal"], true);
        assert_eq!(p["env"], json!(["PATH=/bin", "TERM=xterm"]));
        assert!(p.get("consoleSize").is_none());
    }

    #[test]
    fn exit_codes_reach_kubectl_as_it_reads_them() {
        assert_eq!(exit_status(&["true".into()], 0)["status"], "Success");
        let failed = exit_status(&["false".into()], 3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
    }

    #[test]
    fn resize_messages_parse() {
        assert_eq!(
            parse_resize(br#"{"Width":120,"Height":40}"#),
            Some((120, 40))
        );
        assert_eq!(parse_resize(b"{}"), None);
        assert_eq!(parse_resize(b"junk"), None);
    }

    fn with_status(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "main"}]},
            "status": {"containerStatuses": [status]},
        }))
        .unwrap()
    }

    #[test]
    fn log_requests_read_the_run_kubernetes_would() {
        let running = with_status(json!({
            "name": "main", "image": "x", "imageID": "", "ready": true, "restartCount": 2,
            "containerID": "containerd://abc",
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://old"}},
        }));
        assert_eq!(
            log_target(&running, "main", false),
            Ok(LogTarget {
                run: 2,
                running: Some("abc".into())
            })
        );
        assert_eq!(
            log_target(&running, "main", true),
            Ok(LogTarget {
                run: 1,
                running: None
            })
        );
        // In back-off the run that just ended is both the current and the previous one.
        let crashing = with_status(json!({
            "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://d"}},
        }));
        assert_eq!(log_target(&crashing, "main", false).unwrap().run, 3);
        assert_eq!(log_target(&crashing, "main", true).unwrap().run, 3);
        let fresh = with_status(json!({
            "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"running": {}}, "lastState": {},
        }));
        assert_eq!(
            log_target(&fresh, "main", true).unwrap_err(),
            "previous terminated container \"main\" in pod \"web\" not found"
        );
        let pulling = with_status(json!({
            "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff"}},
        }));
        assert!(log_target(&pulling, "main", false)
            .unwrap_err()
            .contains("trying and failing to pull image"));
        assert!(log_target(&pulling, "side", false)
            .unwrap_err()
            .contains("is not available"));
    }
}
