//! `exec`: a command in a container through the apiserver's `pods/exec` subresource, over
//! a WebSocket speaking Kubernetes' channel protocol (`v5.channel.k8s.io`, else v4):
//! channel byte 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal resize, and
//! v5's `[255, 0]` that ends stdin. The command's exit code becomes skiffctl's, with
//! kubectl's `command terminated with exit code N`.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Result};
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{encode, item_path, Ctx};
use crate::ws;

/// The channel subprotocols skiffctl speaks, best first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// `exec` flags.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    tty: bool,
    /// The container (default: the pod's default-container annotation, else its first).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Only print output from the remote session.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The pod (NAME or pod/NAME).
    pod: String,
    /// `--` and the command with its arguments (flags before `--` are skiffctl's).
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

/// The command ended with a non-zero exit code: skiffctl exits with it.
#[derive(Debug, thiserror::Error)]
#[error("command terminated with exit code {0}")]
pub struct CommandExit(pub i32);

/// The pod's name from `NAME` or `pod/NAME`.
pub fn pod_name(word: &str) -> Result<String> {
    match word.split_once('/') {
        Some(("pod" | "pods" | "po", n)) if !n.is_empty() => Ok(n.to_string()),
        Some((t, _)) => bail!("skiffctl reaches pods only here, not {t:?}"),
        None => Ok(word.to_string()),
    }
}

/// The pod and the command from `exec`'s positional words.
pub fn split_args(args: &[String]) -> Result<(String, Vec<String>)> {
    let Some((pod, rest)) = args.split_first() else {
        bail!("expected 'exec POD_NAME COMMAND [ARG1] [ARG2] ... [ARGN]'.\nPOD_NAME and COMMAND are required arguments for the exec command");
    };
    let command: Vec<String> = match rest.first().map(String::as_str) {
        Some("--") => rest[1..].to_vec(),
        _ => rest.to_vec(),
    };
    if command.is_empty() {
        bail!("you must specify at least one command for the container");
    }
    Ok((pod_name(pod)?, command))
}

/// The container a verb uses: `-c`, else the default-container annotation, else the
/// first; with the notice kubectl prints when it chose among several.
pub fn choose_container(pod: &Value, asked: Option<&str>, quiet: bool) -> Result<String> {
    if let Some(c) = asked {
        return Ok(c.to_string());
    }
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    if let Some(a) =
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
    {
        if names.contains(&a) {
            return Ok(a.to_string());
        }
        if !quiet {
            eprintln!(
                "Warning: default container name {a:?} not found in pod {}",
                crate::cluster::name_of(pod)
            );
        }
    }
    let Some(first) = names.first() else {
        bail!("pod {} has no containers", crate::cluster::name_of(pod));
    };
    if names.len() > 1 && !quiet {
        eprintln!("Defaulted container {first:?} out of: {}", names.join(", "));
    }
    Ok(first.to_string())
}

/// The `pods/exec` query.
pub fn exec_query(command: &[String], container: &str, stdin: bool, tty: bool) -> String {
    let mut q: Vec<String> = command
        .iter()
        .map(|c| format!("command={}", encode(c)))
        .collect();
    q.push(format!("container={}", encode(container)));
    q.push(format!("stdin={stdin}"));
    q.push("stdout=true".into());
    q.push(format!("stderr={}", !tty));
    q.push(format!("tty={tty}"));
    q.join("&")
}

/// Reads the pod and refuses as kubectl does when it cannot run commands.
pub async fn running_pod(
    ctx: &Ctx,
    namespace: Option<&str>,
    name: &str,
) -> Result<(String, Value)> {
    let pods = ctx.discovery().await?.resolve("pods")?;
    let path = item_path(pods, ctx.ns_for(pods, namespace), name);
    let pod = ctx.get_json(&path).await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        bail!("cannot exec into a container in a completed pod; current phase is {phase}");
    }
    Ok((path, pod))
}

/// What the command reads.
pub enum Input {
    /// Nothing (stdin not attached).
    None,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// skiffctl's own stdin.
    Stdin,
}

/// The exit code in a final Status: 0 for Success, the ExitCode cause for
/// NonZeroExitCode; any other failure is an error with the Status's message.
pub fn exit_code(status: &Value) -> Result<i32> {
    if status["status"] == "Success" {
        return Ok(0);
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    let message = status["message"].as_str().unwrap_or("the command failed");
    bail!("Internal error occurred: {message}")
}

/// Restores the terminal's mode when dropped (also on errors and panics).
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enter() -> Result<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}

/// A resize message for the terminal's current size.
fn resize_message() -> Option<Vec<u8>> {
    let (rows, cols) = console::Term::stdout().size_checked()?;
    let mut msg = vec![4u8];
    msg.extend_from_slice(format!("{{\"Width\":{cols},\"Height\":{rows}}}").as_bytes());
    Some(msg)
}

/// Runs a command over `path_and_query` (a `pods/exec` URL): `input` to its stdin, its
/// stdout and stderr to `out` and `err`; returns its exit code.
pub async fn stream(
    ctx: &Ctx,
    path_and_query: &str,
    input: Input,
    tty: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let (socket, protocol) = ws::connect(ctx, path_and_query, &PROTOCOLS).await?;
    let v5 = protocol == PROTOCOLS[0];
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let closes_stdin = !matches!(input, Input::None);
    match input {
        Input::None => {}
        Input::Bytes(bytes) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                for chunk in bytes.chunks(32 * 1024) {
                    let mut msg = vec![0u8];
                    msg.extend_from_slice(chunk);
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Vec::new()).await;
            });
        }
        Input::Stdin => {
            // A thread of its own: a blocking read of a terminal cannot be cancelled, and
            // the process may end while it waits.
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin();
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut msg = vec![0u8];
                            msg.extend_from_slice(&buf[..n]);
                            if tx.blocking_send(msg).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.blocking_send(Vec::new());
            });
        }
    }
    if tty {
        if let Some(msg) = resize_message() {
            let _ = tx.send(msg).await;
        }
        if let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(msg) = resize_message() {
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
    drop(tx);
    let sender = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            // An empty message marks the end of stdin: v5 says so, v4 cannot.
            let msg = if msg.is_empty() {
                if !(v5 && closes_stdin) {
                    continue;
                }
                vec![255, 0]
            } else {
                msg
            };
            if sink.send(Message::Binary(msg.into())).await.is_err() {
                return;
            }
        }
    });
    let mut code = 0;
    while let Some(msg) = source.next().await {
        let data = match msg {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                sender.abort();
                bail!("the stream to the container broke: {e}");
            }
        };
        let Some((&chan, payload)) = data.split_first() else {
            continue;
        };
        match chan {
            1 => {
                out.write_all(payload)?;
                out.flush()?;
            }
            2 => {
                err.write_all(payload)?;
                err.flush()?;
            }
            3 if !payload.is_empty() => {
                let status: Value = serde_json::from_slice(payload)?;
                match exit_code(&status) {
                    Ok(c) => code = c,
                    Err(e) => {
                        sender.abort();
                        return Err(e);
                    }
                }
            }
            _ => {}
        }
    }
    sender.abort();
    Ok(code)
}

/// Runs `exec`.
pub async fn run(ctx: &Ctx, a: ExecArgs) -> Result<()> {
    let mut words = vec![a.pod.clone()];
    words.extend(a.command.iter().cloned());
    let (name, command) = split_args(&words)?;
    let (path, pod) = running_pod(ctx, None, &name).await?;
    let container = choose_container(&pod, a.container.as_deref(), a.quiet)?;
    let mut tty = a.tty;
    if tty && !(a.stdin && std::io::stdin().is_terminal()) {
        if !a.quiet {
            eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        }
        tty = false;
    }
    let url = format!(
        "{path}/exec?{}",
        exec_query(&command, &container, a.stdin, tty)
    );
    let _raw = if tty { Some(RawMode::enter()?) } else { None };
    let input = if a.stdin { Input::Stdin } else { Input::None };
    let code = stream(
        ctx,
        &url,
        input,
        tty,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await?;
    drop(_raw);
    if code != 0 {
        return Err(CommandExit(code).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_pod_and_command_split_at_the_dashes() {
        let (pod, cmd) = split_args(&words(&["pod/web", "--", "sh", "-c", "ls"])).unwrap();
        assert_eq!(pod, "web");
        assert_eq!(cmd, ["sh", "-c", "ls"]);
        let (_, cmd) = split_args(&words(&["web", "date"])).unwrap();
        assert_eq!(cmd, ["date"]);
        assert!(split_args(&words(&["web", "--"])).is_err());
        assert!(split_args(&words(&["svc/web", "--", "ls"])).is_err());
    }

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: ExecArgs,
    }

    #[test]
    fn flags_before_the_dashes_are_ours() {
        use clap::Parser;
        let t = T::parse_from(["x", "-i", "web", "-c", "main", "--", "sh", "-c", "ls"]);
        assert_eq!(t.a.container.as_deref(), Some("main"));
        assert!(t.a.stdin);
        assert_eq!(t.a.pod, "web");
        assert_eq!(t.a.command, ["sh", "-c", "ls"]);
    }

    #[test]
    fn queries_carry_every_word_and_flag() {
        assert_eq!(
            exec_query(&words(&["sh", "-c", "echo a&b"]), "main", true, false),
            "command=sh&command=-c&command=echo%20a%26b&container=main&stdin=true&stdout=true&stderr=true&tty=false"
        );
        assert!(exec_query(&words(&["sh"]), "m", true, true).contains("stderr=false&tty=true"));
    }

    #[test]
    fn containers_default_as_kubectl_picks_them() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(choose_container(&pod, None, true).unwrap(), "a");
        assert_eq!(choose_container(&pod, Some("x"), true).unwrap(), "x");
        let mut annotated = pod.clone();
        annotated["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/default-container": "b"});
        assert_eq!(choose_container(&annotated, None, true).unwrap(), "b");
    }

    #[test]
    fn exit_codes_come_from_the_status() {
        assert_eq!(exit_code(&json!({"status": "Success"})).unwrap(), 0);
        let failed = json!({"status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}});
        assert_eq!(exit_code(&failed).unwrap(), 42);
        let broken = json!({"status": "Failure", "reason": "InternalError", "message": "boom"});
        assert!(exit_code(&broken).unwrap_err().to_string().contains("boom"));
    }
}
