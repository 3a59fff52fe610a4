//! `top pod|node`: CPU and memory use from the Metrics API (`metrics.k8s.io`), as kubectl
//! prints it. skiff serves no Metrics API of its own (there is no metrics-server role), so
//! against a skiff cluster this answers what kubectl answers without metrics-server:
//! `error: Metrics API not available`. Against a cluster that has the API it prints the
//! usage tables.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use skiff_api::validation::quantity;

use crate::cluster::{encode, name_of, namespace_of, Ctx};
use crate::print::tabwrite;

const METRICS_GROUP: &str = "metrics.k8s.io";
const METRICS_PATH: &str = "/apis/metrics.k8s.io/v1beta1";

/// `top` subcommands.
#[derive(Subcommand, Debug)]
pub enum TopCommand {
    /// Display resource (CPU/memory) usage of pods.
    #[command(alias = "pods", alias = "po")]
    Pod(TopPodArgs),
    /// Display resource (CPU/memory) usage of nodes.
    #[command(alias = "nodes", alias = "no")]
    Node(TopNodeArgs),
}

/// `top pod` flags.
#[derive(Args, Debug)]
pub struct TopPodArgs {
    /// One pod; all pods of the namespace when left out.
    name: Option<String>,
    /// Pods of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// A row per container.
    #[arg(long)]
    containers: bool,
    /// Sort by `cpu` or `memory`.
    #[arg(long)]
    sort_by: Option<String>,
    /// Print no header row.
    #[arg(long)]
    no_headers: bool,
}

/// `top node` flags.
#[derive(Args, Debug)]
pub struct TopNodeArgs {
    /// One node; all nodes when left out.
    name: Option<String>,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Sort by `cpu` or `memory`.
    #[arg(long)]
    sort_by: Option<String>,
    /// Print no header row.
    #[arg(long)]
    no_headers: bool,
}

/// Runs `top`.
pub async fn run(ctx: &Ctx, command: TopCommand) -> Result<()> {
    let sort_by = match &command {
        TopCommand::Pod(a) => a.sort_by.as_deref(),
        TopCommand::Node(a) => a.sort_by.as_deref(),
    };
    let sort = SortBy::parse(sort_by)?;
    // kubectl asks discovery first, so the answer does not depend on which path 404s.
    let served = ctx
        .discovery()
        .await?
        .resources
        .iter()
        .any(|r| r.api.group == METRICS_GROUP);
    if !served {
        bail!("Metrics API not available");
    }
    let mut out = std::io::stdout().lock();
    match command {
        TopCommand::Pod(a) => {
            let ns = (!a.all_namespaces).then_some(ctx.namespace.as_str());
            let list = fetch(ctx, "pods", ns, a.name.as_deref(), a.selector.as_deref()).await?;
            if list.is_empty() {
                match ns {
                    Some(ns) => eprintln!("No resources found in {ns} namespace."),
                    None => eprintln!("No resources found"),
                }
                return Ok(());
            }
            let rows = pod_rows(&list, a.all_namespaces, a.containers, sort)?;
            write!(out, "{}", tabwrite(&with_header(rows, a.no_headers)))?;
        }
        TopCommand::Node(a) => {
            let list = fetch(ctx, "nodes", None, a.name.as_deref(), a.selector.as_deref()).await?;
            let nodes = ctx.get_json("/api/v1/nodes").await?;
            let nodes = nodes["items"].as_array().cloned().unwrap_or_default();
            let rows = node_rows(&list, &nodes, sort)?;
            write!(out, "{}", tabwrite(&with_header(rows, a.no_headers)))?;
        }
    }
    Ok(())
}

/// The metrics objects of one kind: the named one or the selected list.
async fn fetch(
    ctx: &Ctx,
    plural: &str,
    ns: Option<&str>,
    name: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<Value>> {
    let base = match ns {
        Some(ns) => format!("{METRICS_PATH}/namespaces/{}/{plural}", encode(ns)),
        None => format!("{METRICS_PATH}/{plural}"),
    };
    if let Some(name) = name {
        let one = ctx.get_json(&format!("{base}/{}", encode(name))).await?;
        return Ok(vec![one]);
    }
    let path = match selector {
        Some(s) => format!("{base}?labelSelector={}", encode(s)),
        None => base,
    };
    let list = ctx.get_json(&path).await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Which column orders the rows (kubectl: descending usage), or name order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Name,
    Cpu,
    Memory,
}

impl SortBy {
    fn parse(flag: Option<&str>) -> Result<SortBy> {
        match flag {
            None | Some("") => Ok(SortBy::Name),
            Some("cpu") => Ok(SortBy::Cpu),
            Some("memory") => Ok(SortBy::Memory),
            Some(o) => bail!("--sort-by accepts only cpu or memory, not {o:?}"),
        }
    }
}

/// CPU in nano-cores and memory in bytes of one `usage` map. CPU stays exact until it
/// is printed: kubectl sums a pod's containers first and rounds the sum.
fn usage(u: &Value, whose: &str) -> Result<(i128, i128)> {
    let get = |key: &str| -> Result<i128> {
        let s = u[key].as_str().unwrap_or("0");
        quantity::parse(s)
            .map_err(|e| anyhow!("the {key} usage {s:?} of {whose} is not a quantity: {e}"))
            .map(|q| if key == "cpu" { q.nanos() } else { q.value() })
    };
    Ok((get("cpu")?, get("memory")?))
}

/// Millicores, rounded up as Kubernetes' `MilliValue`.
fn cpu_cell(nanos: i128) -> String {
    format!("{}m", (nanos + 999_999).div_euclid(1_000_000))
}

fn memory_cell(bytes: i128) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// One row per pod (or per container with `--containers`), with usage summed over the
/// pod's containers as kubectl does.
fn pod_rows(
    list: &[Value],
    all_namespaces: bool,
    containers: bool,
    sort: SortBy,
) -> Result<Vec<(Vec<String>, i128, i128)>> {
    let mut rows = Vec::new();
    for pod in list {
        let name = name_of(pod);
        let mut prefix = Vec::new();
        if all_namespaces {
            prefix.push(namespace_of(pod).unwrap_or_default().to_string());
        }
        prefix.push(name.to_string());
        let mut total = (0, 0);
        for c in pod["containers"].as_array().into_iter().flatten() {
            let cname = c["name"].as_str().unwrap_or_default();
            let (cpu, mem) = usage(&c["usage"], &format!("container {cname} of pod {name}"))?;
            if containers {
                let mut row = prefix.clone();
                row.extend([cname.to_string(), cpu_cell(cpu), memory_cell(mem)]);
                rows.push((row, cpu, mem));
            }
            total = (total.0 + cpu, total.1 + mem);
        }
        if !containers {
            let mut row = prefix;
            row.extend([cpu_cell(total.0), memory_cell(total.1)]);
            rows.push((row, total.0, total.1));
        }
    }
    sort_rows(&mut rows, sort);
    let mut header = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend(if containers {
        vec!["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    } else {
        vec!["NAME", "CPU(cores)", "MEMORY(bytes)"]
    });
    rows.insert(0, (header.into_iter().map(String::from).collect(), 0, 0));
    Ok(rows)
}

/// One row per node: usage and its share of the node's allocatable.
fn node_rows(
    list: &[Value],
    nodes: &[Value],
    sort: SortBy,
) -> Result<Vec<(Vec<String>, i128, i128)>> {
    let mut rows = Vec::new();
    for m in list {
        let name = name_of(m);
        let (cpu, mem) = usage(&m["usage"], &format!("node {name}"))?;
        let allocatable = nodes
            .iter()
            .find(|n| name_of(n) == name)
            .map(|n| usage(&n["status"]["allocatable"], &format!("node {name}")))
            .transpose()?;
        let percent = |used: i128, of: Option<i128>| match of {
            Some(of) if of > 0 => format!("{}%", used * 100 / of),
            _ => "<unknown>".to_string(),
        };
        let row = vec![
            name.to_string(),
            cpu_cell(cpu),
            percent(cpu, allocatable.map(|a| a.0)),
            memory_cell(mem),
            percent(mem, allocatable.map(|a| a.1)),
        ];
        rows.push((row, cpu, mem));
    }
    sort_rows(&mut rows, sort);
    let header = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"];
    rows.insert(0, (header.into_iter().map(String::from).collect(), 0, 0));
    Ok(rows)
}

fn sort_rows(rows: &mut [(Vec<String>, i128, i128)], sort: SortBy) {
    match sort {
        SortBy::Name => rows.sort_by(|a, b| a.0.cmp(&b.0)),
        SortBy::Cpu => rows.sort_by_key(|r| std::cmp::Reverse(r.1)),
        SortBy::Memory => rows.sort_by_key(|r| std::cmp::Reverse(r.2)),
    }
}

/// The printable rows, the header (first row) kept or dropped.
fn with_header(rows: Vec<(Vec<String>, i128, i128)>, no_headers: bool) -> Vec<Vec<String>> {
    rows.into_iter()
        .skip(usize::from(no_headers))
        .map(|r| r.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_metrics(ns: &str, name: &str, containers: &[(&str, &str, &str)]) -> Value {
        json!({
            "metadata": {"name": name, "namespace": ns},
            "containers": containers.iter().map(|(n, cpu, mem)| json!({
                "name": n, "usage": {"cpu": cpu, "memory": mem}
            })).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn pod_usage_is_summed_over_containers_in_millicores_and_mebibytes() {
        let list = [
            pod_metrics(
                "default",
                "web",
                &[("app", "1500000n", "10Mi"), ("side", "2m", "5120Ki")],
            ),
            pod_metrics(
                "default",
                "half",
                &[("a", "500u", "1Mi"), ("b", "500u", "1Mi")],
            ),
            pod_metrics("default", "db", &[("pg", "250m", "1Gi")]),
        ];
        let rows = with_header(pod_rows(&list, false, false, SortBy::Name).unwrap(), false);
        assert_eq!(
            rows,
            vec![
                vec!["NAME", "CPU(cores)", "MEMORY(bytes)"],
                vec!["db", "250m", "1024Mi"],
                vec!["half", "1m", "2Mi"],
                vec!["web", "4m", "15Mi"],
            ]
        );
    }

    #[test]
    fn containers_flag_prints_a_row_per_container_and_sort_by_memory_is_descending() {
        let list = [pod_metrics(
            "a",
            "web",
            &[("app", "1m", "10Mi"), ("side", "2m", "20Mi")],
        )];
        let rows = with_header(pod_rows(&list, true, true, SortBy::Memory).unwrap(), true);
        assert_eq!(
            rows,
            vec![
                vec!["a", "web", "side", "2m", "20Mi"],
                vec!["a", "web", "app", "1m", "10Mi"],
            ]
        );
    }

    #[test]
    fn node_percentages_are_of_allocatable_and_unknown_without_the_node() {
        let metrics = [
            json!({"metadata": {"name": "w1"}, "usage": {"cpu": "500m", "memory": "1Gi"}}),
            json!({"metadata": {"name": "gone"}, "usage": {"cpu": "1", "memory": "1Mi"}}),
        ];
        let nodes = [json!({"metadata": {"name": "w1"},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}})];
        let rows = with_header(node_rows(&metrics, &nodes, SortBy::Cpu).unwrap(), false);
        assert_eq!(
            rows,
            vec![
                vec!["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
                vec!["gone", "1000m", "<unknown>", "1Mi", "<unknown>"],
                vec!["w1", "500m", "25%", "1024Mi", "25%"],
            ]
        );
    }

    #[test]
    fn a_usage_that_is_not_a_quantity_names_the_container() {
        let list = [pod_metrics("a", "web", &[("app", "lots", "1Mi")])];
        let e = pod_rows(&list, false, false, SortBy::Name).unwrap_err();
        assert!(e.to_string().contains("container app of pod web"), "{e}");
    }

    #[test]
    fn sort_by_accepts_only_cpu_or_memory() {
        assert!(SortBy::parse(Some("disk")).is_err());
        assert_eq!(SortBy::parse(Some("cpu")).unwrap(), SortBy::Cpu);
    }
}
