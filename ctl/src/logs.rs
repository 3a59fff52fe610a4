//! `logs`: a pod container's log through the apiserver's `pods/log` subresource, a plain
//! streamed GET as kubectl does it (`follow`, `container`, `previous`, `tailLines`,
//! `timestamps`, `sinceSeconds`).

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use futures::StreamExt;

use crate::cluster::{encode, item_path, Ctx};
use crate::manifest::parse_duration;

/// `logs` flags.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (NAME or pod/NAME).
    pod: String,
    /// The container (default: the pod's default-container annotation, else its first).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep streaming new lines.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The previous, terminated instance of the container.
    #[arg(short = 'p', long)]
    previous: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    tail: i64,
    /// Prefix each line with its RFC3339 timestamp.
    #[arg(long)]
    timestamps: bool,
    /// Only lines newer than this (e.g. 5s, 2m, 3h).
    #[arg(long)]
    since: Option<String>,
}

/// The `pods/log` query for these flags and container.
fn query(a: &LogsArgs, container: &str) -> Result<String> {
    let mut q = vec![format!("container={}", encode(container))];
    if a.follow {
        q.push("follow=true".into());
    }
    if a.previous {
        q.push("previous=true".into());
    }
    if a.tail >= 0 {
        q.push(format!("tailLines={}", a.tail));
    }
    if a.timestamps {
        q.push("timestamps=true".into());
    }
    if let Some(s) = &a.since {
        q.push(format!(
            "sinceSeconds={}",
            parse_duration(s)?.as_secs().max(1)
        ));
    }
    Ok(q.join("&"))
}

/// Runs `logs`.
pub async fn run(ctx: &Ctx, a: LogsArgs) -> Result<()> {
    let name = match a.pod.split_once('/') {
        Some(("pod" | "pods" | "po", n)) => n.to_string(),
        Some((t, _)) => bail!("skiffctl logs reads pods only, not {t}"),
        None => a.pod.clone(),
    };
    let pods = ctx.discovery().await?.resolve("pods")?;
    let path = item_path(pods, ctx.ns_for(pods, None), &name);
    let pod = ctx.get_json(&path).await?;
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let container = match &a.container {
        Some(c) => c.clone(),
        None => {
            let default = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
                .as_str()
                .map(str::to_string)
                .or_else(|| names.first().cloned());
            let Some(c) = default else {
                bail!("pod {name:?} has no containers");
            };
            if names.len() > 1 {
                eprintln!("Defaulted container {c:?} out of: {}", names.join(", "));
            }
            c
        }
    };
    let url = format!("{path}/log?{}", query(&a, &container)?);
    let mut body = ctx.client.request_stream(&url).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: LogsArgs,
    }

    #[test]
    fn flags_become_the_log_query() {
        let t = T::parse_from([
            "x",
            "web",
            "-f",
            "--tail=10",
            "--timestamps",
            "--since=2m",
            "-p",
        ]);
        assert_eq!(
            query(&t.a, "app").unwrap(),
            "container=app&follow=true&previous=true&tailLines=10&timestamps=true&sinceSeconds=120"
        );
        let t = T::parse_from(["x", "web"]);
        assert_eq!(query(&t.a, "c 1").unwrap(), "container=c%201");
    }
}
