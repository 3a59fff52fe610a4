//! `rollout status|history|undo|restart` for Deployments (status also for StatefulSets
//! and DaemonSets), with kubectl's messages.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use skiff_client::Method;

use crate::cluster::{
    encode, item_path, label_selector_query, name_of, namespace_of, Ctx, Resource,
};
use crate::get::{list_objects, parse_targets};
use crate::manifest::parse_duration;

/// `rollout` subcommands.
#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Wait until a rollout finishes.
    Status(RolloutArgs),
    /// Show the revisions of a Deployment.
    History(RolloutArgs),
    /// Go back to an earlier revision.
    Undo(RolloutArgs),
    /// Restart the pods (a new rollout of the same template).
    Restart(RolloutArgs),
}

/// Flags shared by the rollout subcommands.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    args: Vec<String>,
    /// undo: the revision to go back to (0: the previous one); history: show one.
    #[arg(long, default_value_t = 0)]
    to_revision: i64,
    /// history: show this revision's pod template.
    #[arg(long, default_value_t = 0)]
    revision: i64,
    /// status: keep waiting (true) or report once (false).
    #[arg(short = 'w', long, default_value = "true")]
    watch: String,
    /// status: give up after this long (0: never).
    #[arg(long, default_value = "0s")]
    timeout: String,
}

async fn target(ctx: &Ctx, args: &[String]) -> Result<(Resource, String)> {
    let d = ctx.discovery().await?;
    let targets = parse_targets(d, args)?;
    let [t] = targets.as_slice() else {
        bail!("rollout takes one TYPE NAME");
    };
    let [name] = t.names.as_slice() else {
        bail!("required resource not specified");
    };
    Ok((t.resource.clone(), name.clone()))
}

/// The message for one observation of a rollout, and whether it is done (kubectl's
/// DeploymentStatusViewer and friends).
pub fn status_message(kind: &str, o: &Value) -> Result<(String, bool)> {
    let name = name_of(o);
    let st = &o["status"];
    let num = |v: &Value| v.as_i64().unwrap_or(0);
    let generation = num(&o["metadata"]["generation"]);
    let observed = num(&st["observedGeneration"]);
    match kind {
        "Deployment" => {
            if generation > observed {
                return Ok((
                    "Waiting for deployment spec update to be observed...".into(),
                    false,
                ));
            }
            if let Some(c) = st["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
            {
                if c["reason"] == "ProgressDeadlineExceeded" {
                    bail!("deployment {name:?} exceeded its progress deadline");
                }
            }
            let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
            let updated = num(&st["updatedReplicas"]);
            let replicas = num(&st["replicas"]);
            let available = num(&st["availableReplicas"]);
            if updated < want {
                return Ok((format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."), false));
            }
            if replicas > updated {
                return Ok((format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", replicas - updated), false));
            }
            if available < updated {
                return Ok((format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."), false));
            }
            Ok((format!("deployment {name:?} successfully rolled out"), true))
        }
        "StatefulSet" => {
            if generation > observed {
                return Ok((
                    "Waiting for statefulset spec update to be observed...".into(),
                    false,
                ));
            }
            let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = num(&st["readyReplicas"]);
            if ready < want {
                return Ok((
                    format!("Waiting for {} pods to be ready...", want - ready),
                    false,
                ));
            }
            if st["updateRevision"] != st["currentRevision"] {
                return Ok((format!("waiting for statefulset rolling update to complete {} pods at revision {}...", num(&st["updatedReplicas"]), st["updateRevision"].as_str().unwrap_or_default()), false));
            }
            Ok((
                format!(
                    "statefulset rolling update complete {want} pods at revision {}...",
                    st["currentRevision"].as_str().unwrap_or_default()
                ),
                true,
            ))
        }
        "DaemonSet" => {
            if generation > observed {
                return Ok((
                    "Waiting for daemon set spec update to be observed...".into(),
                    false,
                ));
            }
            let want = num(&st["desiredNumberScheduled"]);
            let updated = num(&st["updatedNumberScheduled"]);
            let available = num(&st["numberAvailable"]);
            if updated < want {
                return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {updated} out of {want} new pods have been updated..."), false));
            }
            if available < want {
                return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {available} of {want} updated pods are available..."), false));
            }
            Ok((format!("daemon set {name:?} successfully rolled out"), true))
        }
        k => bail!("no status viewer has been implemented for {k}"),
    }
}

/// Runs a rollout subcommand.
pub async fn run(ctx: &Ctx, cmd: RolloutCommand) -> Result<()> {
    match cmd {
        RolloutCommand::Status(a) => status(ctx, a).await,
        RolloutCommand::History(a) => history(ctx, a).await,
        RolloutCommand::Undo(a) => undo(ctx, a).await,
        RolloutCommand::Restart(a) => restart(ctx, a).await,
    }
}

async fn status(ctx: &Ctx, a: RolloutArgs) -> Result<()> {
    let (r, name) = target(ctx, &a.args).await?;
    let path = item_path(&r, ctx.ns_for(&r, None), &name);
    let watch = a.watch != "false";
    let timeout = parse_duration(&a.timeout)?;
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut last = String::new();
    let bar = crate::progress::bar(0, "");
    loop {
        let o = ctx.get_json(&path).await?;
        let (msg, done) = status_message(&r.api.kind, &o)?;
        let want = o["spec"]["replicas"].as_u64().unwrap_or(1);
        bar.set_length(want);
        bar.set_position(
            o["status"]["updatedReplicas"]
                .as_u64()
                .unwrap_or(0)
                .min(want),
        );
        if msg != last {
            bar.suspend(|| println!("{msg}"));
            last = msg;
        }
        if !done && !bar.is_hidden() {
            // Best effort: the pulls only decorate the bar, so a failed look is skipped.
            if let Ok(pulls) = image_pulls(ctx, &o).await {
                bar.set_message(crate::progress::pulls_message(&pulls));
            }
        }
        if done || !watch {
            bar.finish_and_clear();
            return Ok(());
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            bar.finish_and_clear();
            bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The image pulls under way for the pods `workload` selects, from the kubelets' Events.
async fn image_pulls(ctx: &Ctx, workload: &Value) -> Result<Vec<String>> {
    let ns = encode(namespace_of(workload).unwrap_or(&ctx.namespace));
    let selector = encode(&label_selector_query(&workload["spec"]["selector"]));
    let pods = ctx
        .get_json(&format!(
            "/api/v1/namespaces/{ns}/pods?labelSelector={selector}"
        ))
        .await?;
    let names: HashSet<&str> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(name_of)
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let events = ctx
        .get_json(&format!(
            "/api/v1/namespaces/{ns}/events?fieldSelector={}",
            encode("involvedObject.kind=Pod")
        ))
        .await?;
    let events = events["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(crate::progress::pulls_in_progress(
        events,
        &names,
        jiff::Timestamp::now(),
    ))
}

/// The ReplicaSets a Deployment owns, with their revision numbers, oldest first.
async fn revisions(ctx: &Ctx, deploy: &Value) -> Result<Vec<(i64, Value)>> {
    let d = ctx.discovery().await?;
    let rs_r = d.resolve("replicasets.apps")?;
    let ns = deploy["metadata"]["namespace"].as_str();
    let (items, _) = list_objects(ctx, rs_r, ns, None, None).await?;
    let uid = &deploy["metadata"]["uid"];
    let mut out: Vec<(i64, Value)> = items
        .into_iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| &o["uid"] == uid))
        })
        .map(|rs| {
            let rev = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (rev, rs)
        })
        .collect();
    out.sort_by_key(|(rev, _)| *rev);
    Ok(out)
}

fn deployment_only(r: &Resource) -> Result<()> {
    if r.api.kind != "Deployment" {
        bail!(
            "skiffctl supports this rollout verb for deployments only, not {}",
            r.plural_group()
        );
    }
    Ok(())
}

async fn history(ctx: &Ctx, a: RolloutArgs) -> Result<()> {
    let (r, name) = target(ctx, &a.args).await?;
    deployment_only(&r)?;
    let deploy = ctx
        .get_json(&item_path(&r, ctx.ns_for(&r, None), &name))
        .await?;
    let revs = revisions(ctx, &deploy).await?;
    let mut out = std::io::stdout().lock();
    if a.revision > 0 {
        let Some((_, rs)) = revs.iter().find(|(n, _)| *n == a.revision) else {
            bail!("unable to find the specified revision");
        };
        writeln!(
            out,
            "{}/{name} with revision #{}",
            r.kind_prefix(),
            a.revision
        )?;
        write!(out, "{}", crate::print::to_yaml(&rs["spec"]["template"])?)?;
        return Ok(());
    }
    writeln!(out, "{}/{name} ", r.kind_prefix())?;
    let mut rows = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    for (rev, rs) in &revs {
        let cause = rs["metadata"]["annotations"]["kubernetes.io/change-cause"]
            .as_str()
            .unwrap_or("<none>");
        rows.push(vec![rev.to_string(), cause.to_string()]);
    }
    // kubectl's history table uses padding 2 and no minimum width.
    let w = rows.iter().map(|r| r[0].len()).max().unwrap_or(0) + 2;
    for row in rows {
        writeln!(out, "{:<w$}{}", row[0], row[1])?;
    }
    writeln!(out)?;
    Ok(())
}

fn without_hash(mut template: Value) -> Value {
    if let Some(l) = template["metadata"]["labels"].as_object_mut() {
        l.remove("pod-template-hash");
    }
    template
}

async fn undo(ctx: &Ctx, a: RolloutArgs) -> Result<()> {
    let (r, name) = target(ctx, &a.args).await?;
    deployment_only(&r)?;
    let path = item_path(&r, ctx.ns_for(&r, None), &name);
    let deploy = ctx.get_json(&path).await?;
    let revs = revisions(ctx, &deploy).await?;
    let current = deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .or_else(|| revs.last().map(|(n, _)| *n))
        .unwrap_or(0);
    let wanted = if a.to_revision > 0 {
        revs.iter().find(|(n, _)| *n == a.to_revision)
    } else {
        revs.iter().rev().find(|(n, _)| *n < current)
    };
    let Some((rev, rs)) = wanted else {
        if a.to_revision > 0 {
            bail!(
                "unable to find specified revision {} in history",
                a.to_revision
            );
        }
        bail!("no rollout history found for deployment {name:?}");
    };
    let template = without_hash(rs["spec"]["template"].clone());
    let mut out = std::io::stdout().lock();
    if without_hash(deploy["spec"]["template"].clone()) == template {
        writeln!(
            out,
            "{}/{name} skipped rollback (current template already matches revision {rev})",
            r.kind_prefix()
        )?;
        return Ok(());
    }
    ctx.send(
        Method::PATCH,
        &path,
        "application/json-patch+json",
        Some(&json!([{"op": "replace", "path": "/spec/template", "value": template}])),
    )
    .await?;
    writeln!(out, "{}/{name} rolled back", r.kind_prefix())?;
    Ok(())
}

async fn restart(ctx: &Ctx, a: RolloutArgs) -> Result<()> {
    let (r, name) = target(ctx, &a.args).await?;
    if !matches!(
        r.api.kind.as_str(),
        "Deployment" | "StatefulSet" | "DaemonSet"
    ) {
        bail!("restarting is not supported for {}", r.plural_group());
    }
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)?
        .to_string();
    ctx.send(
        Method::PATCH,
        &item_path(&r, ctx.ns_for(&r, None), &name),
        "application/merge-patch+json",
        Some(&json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}})),
    )
    .await?;
    writeln!(std::io::stdout(), "{}/{name} restarted", r.kind_prefix())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_status_messages() {
        let mut d = json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 3},
            "status": {"observedGeneration": 1}
        });
        assert_eq!(
            status_message("Deployment", &d).unwrap().0,
            "Waiting for deployment spec update to be observed..."
        );
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3});
        assert_eq!(status_message("Deployment", &d).unwrap().0, "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...");
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4, "availableReplicas": 3});
        assert!(status_message("Deployment", &d)
            .unwrap()
            .0
            .contains("1 old replicas are pending termination"));
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2});
        assert!(status_message("Deployment", &d)
            .unwrap()
            .0
            .contains("2 of 3 updated replicas are available"));
        d["status"]["availableReplicas"] = json!(3);
        assert_eq!(
            status_message("Deployment", &d).unwrap(),
            ("deployment \"web\" successfully rolled out".into(), true)
        );
    }
}
