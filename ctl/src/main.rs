//! skiffctl: skiff's bundled client. kubectl's verbs, flags and output formats where
//! kubectl has them (kubeconfig handling, get/describe/create/apply/delete and the
//! editing verbs, rollout, api-resources, explain), plus skiff's own `store` commands.
//!
//! Layout: `cluster` (connection, discovery), `config` (kubeconfig editing), `print`
//! (printers), `get`, `describe`, `manifest` (create/apply/delete), `edit` (scale,
//! label, annotate, taint, cordon, drain), `rollout`, `info` (api-resources, version,
//! explain), `vlog` (`-v N`), `progress`, `store`, `lab` (a cluster on this machine).

mod cluster;
mod config;
mod cp;
mod describe;
mod edit;
mod exec;
mod get;
mod info;
mod lab;
mod logs;
mod manifest;
mod portforward;
mod print;
mod progress;
mod rollout;
mod store;
mod top;
mod vlog;
mod ws;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use cluster::{Ctx, GlobalArgs};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Parser)]
#[command(
    name = "skiffctl",
    version,
    about = "skiff's bundled client (kubectl's verbs)"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Display one or many resources.
    Get(get::GetArgs),
    /// Show details of a resource or group of resources, with their events.
    Describe(describe::DescribeArgs),
    /// Create resources from files or stdin.
    Create(manifest::FileArgs),
    /// Apply a configuration to resources from files, directories or stdin.
    Apply(manifest::ApplyArgs),
    /// Delete resources by file names, stdin, resources and names, or by selector.
    Delete(manifest::DeleteArgs),
    /// Set a new size for a deployment, replica set, stateful set or job.
    Scale(edit::ScaleArgs),
    /// Update the labels on a resource.
    Label(edit::MetaArgs),
    /// Update the annotations on a resource.
    Annotate(edit::MetaArgs),
    /// Update the taints on one or more nodes.
    Taint(edit::TaintArgs),
    /// Mark a node as unschedulable.
    Cordon(edit::CordonArgs),
    /// Mark a node as schedulable.
    Uncordon(edit::CordonArgs),
    /// Drain a node in preparation for maintenance.
    Drain(edit::DrainArgs),
    /// Manage the rollout of a resource.
    Rollout {
        #[command(subcommand)]
        command: rollout::RolloutCommand,
    },
    /// Display resource (CPU/memory) usage, from the Metrics API.
    Top {
        #[command(subcommand)]
        command: top::TopCommand,
    },
    /// Print the supported API resources on the server.
    ApiResources(info::ApiResourcesArgs),
    /// Get documentation for a resource (from the server's OpenAPI document).
    Explain(info::ExplainArgs),
    /// Modify kubeconfig files.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Print the client and server version information.
    Version(info::VersionArgs),
    /// Output shell completion code for bash or zsh.
    Completion {
        /// `bash` or `zsh`.
        shell: String,
    },
    /// Print the logs for a container in a pod.
    Logs(logs::LogsArgs),
    /// Execute a command in a container.
    Exec(exec::ExecArgs),
    /// Copy files and directories to and from containers.
    Cp(cp::CpArgs),
    /// Forward one or more local ports to a pod.
    PortForward(portforward::PortForwardArgs),
    /// Manage skiff's store: snapshots (backup and restore) and members.
    Store(store::StoreArgs),
    /// A whole cluster on this machine: up, down, status, chaos.
    Lab(lab::LabArgs),
    /// Put image archives onto a lab's workers (`image load FILE…`), no registry needed.
    Image {
        #[command(subcommand)]
        command: lab::image::ImageCommand,
    },
}

/// Errors gathered while going on with the other objects, reported at the end as
/// kubectl does (`get a b` prints a's row, then b's NotFound).
#[derive(Default)]
pub struct ErrorList(Vec<anyhow::Error>);

/// The errors were printed already; exit 1.
#[derive(Debug, thiserror::Error)]
#[error("errors were reported")]
pub struct Reported;

impl ErrorList {
    /// Keeps an error for later.
    pub fn push(&mut self, e: anyhow::Error) {
        self.0.push(e);
    }

    /// Whether any error was kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok when no error was kept; else prints them all and fails.
    pub fn finish(self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.into_iter().next().expect("one error")),
            _ => {
                for e in &self.0 {
                    eprintln!("{}", describe_error(e));
                }
                Err(Reported.into())
            }
        }
    }
}

/// An error as kubectl prints it: `Error from server (Reason): …` for the server's
/// refusals, `error: …` for everything else.
pub fn describe_error(e: &anyhow::Error) -> String {
    let mut context = Vec::new();
    for cause in e.chain() {
        if let Some(skiff_client::Error::Api(status)) = cause.downcast_ref::<skiff_client::Error>()
        {
            let reason = status.reason.as_deref().unwrap_or("Unknown");
            let message = status.message.as_deref().unwrap_or_default();
            context.push(message.to_string());
            return format!("Error from server ({reason}): {}", context.join(": "));
        }
        context.push(cause.to_string());
    }
    format!("error: {e:#}")
}

fn init_logging(verbosity: u8) {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    let klog = vlog::KlogLayer {
        level: verbosity,
        server: std::sync::Mutex::new(String::new()),
    };
    tracing_subscriber::registry().with(fmt).with(klog).init();
}

async fn dispatch(global: GlobalArgs, command: Command) -> Result<()> {
    let ctx = || Ctx::new(&global);
    match command {
        Command::Get(a) => get::run(&ctx()?, a).await,
        Command::Describe(a) => describe::run(&ctx()?, a).await,
        Command::Create(a) => manifest::create(&ctx()?, a).await,
        Command::Apply(a) => manifest::apply(&ctx()?, a).await,
        Command::Delete(a) => manifest::delete(&ctx()?, a).await,
        Command::Scale(a) => edit::scale(&ctx()?, a).await,
        Command::Label(a) => edit::label(&ctx()?, a, "labels").await,
        Command::Annotate(a) => edit::label(&ctx()?, a, "annotations").await,
        Command::Taint(a) => edit::taint(&ctx()?, a).await,
        Command::Cordon(a) => edit::cordon(&ctx()?, a, true).await,
        Command::Uncordon(a) => edit::cordon(&ctx()?, a, false).await,
        Command::Drain(a) => edit::drain(&ctx()?, a).await,
        Command::Rollout { command } => rollout::run(&ctx()?, command).await,
        Command::Top { command } => top::run(&ctx()?, command).await,
        Command::ApiResources(a) => info::api_resources(&ctx()?, a).await,
        Command::Explain(a) => info::explain(&ctx()?, a).await,
        Command::Config { command } => config::run(&global, command),
        Command::Version(a) => {
            let c = ctx().ok();
            info::version(c.as_ref(), a).await
        }
        Command::Completion { shell } => {
            let shell = match shell.as_str() {
                "bash" => clap_complete::Shell::Bash,
                "zsh" => clap_complete::Shell::Zsh,
                o => anyhow::bail!("Unsupported shell type {o:?}."),
            };
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "skiffctl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Logs(a) => logs::run(&ctx()?, a).await,
        Command::Exec(a) => exec::run(&ctx()?, a).await,
        Command::Cp(a) => cp::run(&ctx()?, a).await,
        Command::PortForward(a) => portforward::run(std::sync::Arc::new(ctx()?), a).await,
        Command::Store(args) => store::run(args).await,
        Command::Lab(args) => lab::run(&global, args).await,
        Command::Image { command } => lab::image::run(&ctx()?, command).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbosity);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.global, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Reported>() => ExitCode::FAILURE,
        Err(e) if e.is::<exec::CommandExit>() => {
            // As kubectl: the remote command's exit code becomes ours.
            eprintln!("{e}");
            let code = e.downcast_ref::<exec::CommandExit>().map_or(1, |c| c.0);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(e) if e.is::<ws::Refused>() => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}", describe_error(&e));
            ExitCode::FAILURE
        }
    }
}
