//! Verbs that change one aspect of objects: `scale`, `label`, `annotate`, `taint`,
//! `cordon`, `uncordon`, `drain`.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use skiff_client::Method;

use crate::cluster::{item_path, name_of, namespace_of, Ctx, Resource};
use crate::get::{list_objects, parse_targets};
use crate::manifest::{is_not_found, parse_duration};
use crate::ErrorList;

const MERGE: &str = "application/merge-patch+json";

/// Objects named by `TYPE NAME…`, `TYPE/NAME…`, or a type with `-l`/`--all`.
async fn select(
    ctx: &Ctx,
    args: &[String],
    selector: Option<&str>,
    all: bool,
) -> Result<Vec<(Resource, Value)>> {
    let d = ctx.discovery().await?;
    let mut out = Vec::new();
    let mut errors = ErrorList::default();
    for t in parse_targets(d, args)? {
        let r = &t.resource;
        let ns = ctx.ns_for(r, None);
        if t.names.is_empty() {
            if selector.is_none() && !all {
                bail!("resource(s) were provided, but no name was specified");
            }
            let (items, _) = list_objects(ctx, r, ns, selector, None).await?;
            out.extend(items.into_iter().map(|o| (r.clone(), o)));
        } else {
            for n in &t.names {
                match ctx.get_json(&item_path(r, ns, n)).await {
                    Ok(o) => out.push((r.clone(), o)),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.finish()?;
    }
    Ok(out)
}

fn obj_path(r: &Resource, o: &Value) -> String {
    item_path(r, namespace_of(o), name_of(o))
}

/// `scale` flags.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// TYPE NAME or TYPE/NAME (deployments, replicasets, statefulsets, replicationcontrollers, jobs).
    #[arg(required = true)]
    args: Vec<String>,
    /// The new number of replicas.
    #[arg(long)]
    replicas: i64,
    /// Only scale when the current number is this.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    current_replicas: i64,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Every object of the type.
    #[arg(long)]
    all: bool,
}

/// Runs `scale`.
pub async fn scale(ctx: &Ctx, a: ScaleArgs) -> Result<()> {
    if a.replicas < 0 {
        bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let mut out = std::io::stdout().lock();
    for (r, o) in select(ctx, &a.args, a.selector.as_deref(), a.all).await? {
        let path = obj_path(&r, &o);
        if r.api.kind == "Job" {
            // Jobs scale through spec.parallelism, as kubectl did.
            ctx.send(
                Method::PATCH,
                &path,
                MERGE,
                Some(&json!({"spec": {"parallelism": a.replicas}})),
            )
            .await?;
        } else {
            if !r.subresources.iter().any(|s| s == "scale") {
                bail!(
                    "cannot scale {}: the server serves no scale subresource for it",
                    r.plural_group()
                );
            }
            let scale_path = format!("{path}/scale");
            let current = ctx.get_json(&scale_path).await?;
            if a.current_replicas >= 0
                && current["spec"]["replicas"].as_i64().unwrap_or(0) != a.current_replicas
            {
                bail!(
                    "Expected replicas to be {}, was {}",
                    a.current_replicas,
                    current["spec"]["replicas"].as_i64().unwrap_or(0)
                );
            }
            ctx.send(
                Method::PATCH,
                &scale_path,
                MERGE,
                Some(&json!({"spec": {"replicas": a.replicas}})),
            )
            .await?;
        }
        writeln!(out, "{}/{} scaled", r.kind_prefix(), name_of(&o))?;
    }
    Ok(())
}

/// `label` and `annotate` flags.
#[derive(Args, Debug)]
pub struct MetaArgs {
    /// TYPE NAME or TYPE/NAME, then KEY=VALUE to set and KEY- to remove.
    #[arg(required = true)]
    args: Vec<String>,
    /// Replace values that are already set.
    #[arg(long)]
    overwrite: bool,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Every object of the type.
    #[arg(long)]
    all: bool,
}

/// Runs `label` (`field` = labels) or `annotate` (annotations).
pub async fn label(ctx: &Ctx, a: MetaArgs, field: &str) -> Result<()> {
    let (past, none) = if field == "labels" {
        ("labeled", "not labeled")
    } else {
        ("annotated", "not annotated")
    };
    let mut resources = Vec::new();
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    for (i, arg) in a.args.iter().enumerate() {
        if i > 0 && arg.contains('=') {
            let (k, v) = arg.split_once('=').unwrap_or_default();
            changes.push((k.to_string(), Some(v.to_string())));
        } else if i > 0 && arg.ends_with('-') && !arg.contains('/') {
            changes.push((arg.trim_end_matches('-').to_string(), None));
        } else {
            resources.push(arg.clone());
        }
    }
    if changes.is_empty() {
        bail!(
            "at least one {} update is required",
            &field[..field.len() - 1]
        );
    }
    let mut out = std::io::stdout().lock();
    for (r, o) in select(ctx, &resources, a.selector.as_deref(), a.all).await? {
        let current = o["metadata"][field]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut patch = Map::new();
        for (k, v) in &changes {
            match v {
                Some(v) => {
                    if let Some(old) = current.get(k).and_then(Value::as_str) {
                        if old != v && !a.overwrite {
                            bail!("'{k}' already has a value ({old}), and --overwrite is false");
                        }
                    }
                    if current.get(k).and_then(Value::as_str) != Some(v.as_str()) {
                        patch.insert(k.clone(), json!(v));
                    }
                }
                None => {
                    if current.contains_key(k) {
                        patch.insert(k.clone(), Value::Null);
                    } else {
                        eprintln!("{k} not found.");
                    }
                }
            }
        }
        if patch.is_empty() {
            writeln!(out, "{}/{} {none}", r.kind_prefix(), name_of(&o))?;
            continue;
        }
        let only_removals = patch.values().all(Value::is_null);
        ctx.send(
            Method::PATCH,
            &obj_path(&r, &o),
            MERGE,
            Some(&json!({"metadata": {field: patch}})),
        )
        .await?;
        // kubectl says "unlabeled" when labels were only removed.
        let verb = if field == "labels" && only_removals {
            "unlabeled"
        } else {
            past
        };
        writeln!(out, "{}/{} {verb}", r.kind_prefix(), name_of(&o))?;
    }
    Ok(())
}

/// `taint` flags.
#[derive(Args, Debug)]
pub struct TaintArgs {
    /// `nodes NAME` (or node/NAME), then KEY[=VALUE]:EFFECT to add, KEY[:EFFECT]- to remove.
    #[arg(required = true)]
    args: Vec<String>,
    /// Replace a taint with the same key and effect.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, PartialEq)]
enum TaintChange {
    Add {
        key: String,
        value: Option<String>,
        effect: String,
    },
    Remove {
        key: String,
        effect: Option<String>,
    },
}

fn parse_taint(s: &str) -> Result<TaintChange> {
    const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
    let check_effect = |e: &str| -> Result<()> {
        if EFFECTS.contains(&e) {
            Ok(())
        } else {
            bail!("invalid taint effect: {e}, unsupported taint effect")
        }
    };
    if let Some(spec) = s.strip_suffix('-') {
        let (key, effect) = match spec.split_once(':') {
            Some((k, e)) => {
                check_effect(e)?;
                (k, Some(e.to_string()))
            }
            None => (spec, None),
        };
        let key = key.split_once('=').map_or(key, |(k, _)| k);
        return Ok(TaintChange::Remove {
            key: key.to_string(),
            effect,
        });
    }
    let (kv, effect) = s
        .split_once(':')
        .ok_or_else(|| anyhow!("invalid taint spec: {s}"))?;
    check_effect(effect)?;
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        bail!("invalid taint spec: {s}");
    }
    Ok(TaintChange::Add {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
    })
}

/// Runs `taint`.
pub async fn taint(ctx: &Ctx, a: TaintArgs) -> Result<()> {
    let mut targets = Vec::new();
    let mut changes = Vec::new();
    for (i, arg) in a.args.iter().enumerate() {
        if i > 0 && (arg.contains(':') || arg.ends_with('-')) && !arg.contains('/') {
            changes.push(parse_taint(arg)?);
        } else {
            targets.push(arg.clone());
        }
    }
    if changes.is_empty() {
        bail!("at least one taint update is required");
    }
    let mut out = std::io::stdout().lock();
    for (r, node) in select(ctx, &targets, None, false).await? {
        if r.api.kind != "Node" {
            bail!(
                "invalid resource type {}, only node types are supported",
                r.api.plural
            );
        }
        let name = name_of(&node).to_string();
        let mut taints: Vec<Value> = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (mut added, mut removed) = (false, false);
        for c in &changes {
            match c {
                TaintChange::Add { key, value, effect } => {
                    let same = taints
                        .iter()
                        .position(|t| t["key"] == json!(key) && t["effect"] == json!(effect));
                    let mut t = json!({"key": key, "effect": effect});
                    if let Some(v) = value {
                        t["value"] = json!(v);
                    }
                    match same {
                        Some(_) if !a.overwrite => bail!(
                            "node {name} already has {key} taint(s) with same effect(s) and --overwrite is false"
                        ),
                        Some(i) => taints[i] = t,
                        None => taints.push(t),
                    }
                    added = true;
                }
                TaintChange::Remove { key, effect } => {
                    let before = taints.len();
                    taints.retain(|t| {
                        !(t["key"] == json!(key)
                            && effect.as_ref().is_none_or(|e| t["effect"] == json!(e)))
                    });
                    if taints.len() == before {
                        let spec = match effect {
                            Some(e) => format!("{key}:{e}"),
                            None => key.clone(),
                        };
                        bail!("taint {spec:?} not found");
                    }
                    removed = true;
                }
            }
        }
        ctx.send(
            Method::PATCH,
            &obj_path(&r, &node),
            MERGE,
            Some(&json!({"spec": {"taints": taints}})),
        )
        .await?;
        let verb = match (added, removed) {
            (true, true) => "modified",
            (false, true) => "untainted",
            _ => "tainted",
        };
        writeln!(out, "node/{name} {verb}")?;
    }
    Ok(())
}

/// `cordon` / `uncordon` flags.
#[derive(Args, Debug)]
pub struct CordonArgs {
    /// Node names.
    nodes: Vec<String>,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
}

async fn nodes(
    ctx: &Ctx,
    names: &[String],
    selector: Option<&str>,
) -> Result<Vec<(Resource, Value)>> {
    let mut args = vec!["nodes".to_string()];
    args.extend(names.iter().cloned());
    if names.is_empty() && selector.is_none() {
        bail!("resource(s) were provided, but no name was specified");
    }
    select(ctx, &args, selector, false).await
}

async fn set_unschedulable(ctx: &Ctx, r: &Resource, node: &Value, on: bool) -> Result<bool> {
    let name = name_of(node);
    let current = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
    let mut out = std::io::stdout().lock();
    let verb = if on { "cordoned" } else { "uncordoned" };
    if current == on {
        writeln!(out, "node/{name} already {verb}")?;
        return Ok(false);
    }
    let value = if on { json!(true) } else { Value::Null };
    ctx.send(
        Method::PATCH,
        &obj_path(r, node),
        MERGE,
        Some(&json!({"spec": {"unschedulable": value}})),
    )
    .await?;
    writeln!(out, "node/{name} {verb}")?;
    Ok(true)
}

/// Runs `cordon` (`on`) or `uncordon`.
pub async fn cordon(ctx: &Ctx, a: CordonArgs, on: bool) -> Result<()> {
    for (r, node) in nodes(ctx, &a.nodes, a.selector.as_deref()).await? {
        set_unschedulable(ctx, &r, &node, on).await?;
    }
    Ok(())
}

/// `drain` flags.
#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The node.
    node: String,
    /// Leave DaemonSet-managed pods in place.
    #[arg(long)]
    ignore_daemonsets: bool,
    /// Also evict pods no controller manages (they will not come back).
    #[arg(long)]
    force: bool,
    /// Also evict pods with emptyDir volumes (their data is lost).
    #[arg(long)]
    delete_emptydir_data: bool,
    /// Seconds each pod gets to stop; -1 keeps the pod's own.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    grace_period: i64,
    /// Give up after this long (0: wait for a week).
    #[arg(long, default_value = "0s")]
    timeout: String,
}

/// Runs `drain`: cordon, then evict the node's pods through `pods/eviction`.
pub async fn drain(ctx: &Ctx, a: DrainArgs) -> Result<()> {
    let d = ctx.discovery().await?;
    let pods_r = d.resolve("pods")?.clone();
    if !pods_r.subresources.iter().any(|s| s == "eviction") {
        bail!("cannot drain: the server does not serve the pods/eviction subresource");
    }
    let timeout = match parse_duration(&a.timeout)? {
        t if t.is_zero() => Duration::from_secs(7 * 24 * 3600),
        t => t,
    };
    for (r, node) in nodes(ctx, std::slice::from_ref(&a.node), None).await? {
        set_unschedulable(ctx, &r, &node, true).await?;
    }
    let (pods, _) = list_objects(
        ctx,
        &pods_r,
        None,
        None,
        Some(&format!("spec.nodeName={}", a.node)),
    )
    .await?;
    let mut evict = Vec::new();
    let (mut daemon, mut unmanaged, mut emptydir) = (Vec::new(), Vec::new(), Vec::new());
    for p in pods {
        let id = format!("{}/{}", namespace_of(&p).unwrap_or_default(), name_of(&p));
        let phase = p["status"]["phase"].as_str().unwrap_or_default();
        if matches!(phase, "Succeeded" | "Failed") {
            evict.push(p);
            continue;
        }
        let owner = p["metadata"]["ownerReferences"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["controller"] == json!(true)).cloned());
        match owner {
            Some(o) if o["kind"] == "DaemonSet" => {
                daemon.push(id);
                continue;
            }
            None => unmanaged.push(id.clone()),
            _ => {}
        }
        if p["spec"]["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| !v["emptyDir"].is_null()))
        {
            emptydir.push(id);
        }
        evict.push(p);
    }
    let mut problems = Vec::new();
    if !daemon.is_empty() && !a.ignore_daemonsets {
        problems.push(format!(
            "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {}",
            daemon.join(", ")
        ));
    }
    if !unmanaged.is_empty() && !a.force {
        problems.push(format!(
            "cannot delete Pods that declare no controller (use --force to override): {}",
            unmanaged.join(", ")
        ));
    }
    if !emptydir.is_empty() && !a.delete_emptydir_data {
        problems.push(format!(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override): {}",
            emptydir.join(", ")
        ));
    }
    if !problems.is_empty() {
        bail!(
            "unable to drain node {:?} due to error: [{}], continuing command...\nThere are pending nodes to be drained:\n {}",
            a.node,
            problems.join(", "),
            a.node
        );
    }
    if !daemon.is_empty() {
        eprintln!(
            "Warning: ignoring DaemonSet-managed Pods: {}",
            daemon.join(", ")
        );
    }
    if !unmanaged.is_empty() {
        eprintln!(
            "Warning: deleting Pods that declare no controller: {}",
            unmanaged.join(", ")
        );
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = std::io::stdout().lock();
    let mut waiting = Vec::new();
    for p in &evict {
        let ns = namespace_of(p).unwrap_or_default();
        let name = name_of(p);
        writeln!(out, "evicting pod {ns}/{name}")?;
        out.flush()?;
        let mut body = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
        });
        if a.grace_period >= 0 {
            body["deleteOptions"] = json!({"gracePeriodSeconds": a.grace_period});
        }
        let path = format!("{}/eviction", item_path(&pods_r, Some(ns), name));
        loop {
            match ctx
                .send(Method::POST, &path, "application/json", Some(&body))
                .await
            {
                Ok(_) => break,
                Err(e) if is_not_found(&e) => break,
                Err(e)
                    if e.downcast_ref::<skiff_client::Error>()
                        .and_then(|e| e.code())
                        == Some(429)
                        && tokio::time::Instant::now() < deadline =>
                {
                    eprintln!(
                        "error when evicting pods/{name:?} -n {ns:?} (will retry after 5s): {e}"
                    );
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => return Err(e),
            }
        }
        waiting.push((
            ns.to_string(),
            name.to_string(),
            p["metadata"]["uid"].clone(),
        ));
    }
    for (ns, name, uid) in waiting {
        loop {
            match ctx.get_json(&item_path(&pods_r, Some(&ns), &name)).await {
                Err(e) if is_not_found(&e) => break,
                Ok(v) if v["metadata"]["uid"] != uid => break,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("drain did not complete within {}", a.timeout);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        writeln!(out, "pod/{name} evicted")?;
    }
    writeln!(out, "node/{} drained", a.node)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_specs() {
        assert_eq!(
            parse_taint("dedicated=gpu:NoSchedule").unwrap(),
            TaintChange::Add {
                key: "dedicated".into(),
                value: Some("gpu".into()),
                effect: "NoSchedule".into()
            }
        );
        assert_eq!(
            parse_taint("dedicated:NoExecute-").unwrap(),
            TaintChange::Remove {
                key: "dedicated".into(),
                effect: Some("NoExecute".into())
            }
        );
        assert_eq!(
            parse_taint("dedicated-").unwrap(),
            TaintChange::Remove {
                key: "dedicated".into(),
                effect: None
            }
        );
        assert!(parse_taint("k=v:Sometimes").is_err());
        assert!(parse_taint("k=v").is_err());
    }
}
