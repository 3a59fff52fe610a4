//! Manifests (`-f FILE|DIR|-`, `-R`) and the verbs that take them: `create`, `apply`
//! (client-side, with the last-applied annotation and a three-way merge), `delete`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use skiff_client::Method;

use crate::cluster::{item_path, name_of, namespace_of, Ctx, Resource};
use crate::get::{list_objects, parse_targets};
use crate::ErrorList;

/// kubectl's annotation holding the configuration last applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One object read from a manifest, with where it came from.
pub struct Manifest {
    /// The file (or `STDIN`).
    pub source: String,
    /// The object.
    pub object: Value,
}

/// Reads every object of `-f` arguments: files, directories (`.yaml`, `.yml`, `.json`;
/// recursively with `-R`) and `-` for stdin. Multi-document YAML and `kind: List` are
/// split into their objects.
pub fn read_manifests(paths: &[String], recursive: bool) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for p in paths {
        if p == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            parse_documents("STDIN", &text, &mut out)?;
            continue;
        }
        let path = Path::new(p);
        if !path.exists() {
            bail!("the path {p:?} does not exist");
        }
        let mut files = Vec::new();
        collect_files(path, recursive, true, &mut files)?;
        for f in files {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            parse_documents(&f.display().to_string(), &text, &mut out)?;
        }
    }
    if out.is_empty() {
        bail!("no objects passed to apply");
    }
    Ok(out)
}

fn collect_files(path: &Path, recursive: bool, top: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        if !top && !recursive {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                collect_files(&e, recursive, false, out)?;
            } else if e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
            {
                out.push(e);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn parse_documents(source: &str, text: &str, out: &mut Vec<Manifest>) -> Result<()> {
    for doc in serde_norway::Deserializer::from_str(text) {
        let yaml = serde_norway::Value::deserialize(doc)
            .with_context(|| format!("error parsing {source}"))?;
        let v: Value =
            serde_json::to_value(yaml).with_context(|| format!("error parsing {source}"))?;
        if v.is_null() {
            continue;
        }
        push_object(source, v, out)?;
    }
    Ok(())
}

fn push_object(source: &str, v: Value, out: &mut Vec<Manifest>) -> Result<()> {
    if !v.is_object() {
        bail!("error validating {source:?}: a manifest must be a mapping");
    }
    if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) && v["items"].is_array() {
        for item in v["items"].as_array().cloned().unwrap_or_default() {
            push_object(source, item, out)?;
        }
        return Ok(());
    }
    for field in ["apiVersion", "kind"] {
        if v[field].as_str().is_none_or(str::is_empty) {
            bail!("error validating data from {source:?}: {field} not set");
        }
    }
    out.push(Manifest {
        source: source.to_string(),
        object: v,
    });
    Ok(())
}

/// `-f` and friends, shared by create and apply.
#[derive(Args, Debug)]
pub struct FileArgs {
    /// Files, directories or `-` (stdin) with the objects.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filename: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// `none`, `client` (print only) or `server` (the server checks, stores nothing).
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    /// `name` prints only `kind/name` per object.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// `apply` flags.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    files: FileArgs,
    /// Delete objects with the last-applied annotation that match `-l` and were not in
    /// this apply.
    #[arg(long)]
    prune: bool,
    /// Label selector for `--prune`.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// With --prune: every namespaced type considered (else the current namespace's).
    #[arg(long)]
    all: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum DryRun {
    None,
    Client,
    Server,
}

impl DryRun {
    fn parse(s: &str) -> Result<DryRun> {
        Ok(match s {
            "none" | "false" => DryRun::None,
            "client" | "true" => DryRun::Client,
            "server" => DryRun::Server,
            o => bail!("Invalid dry-run value ({o}). Must be \"none\", \"server\", or \"client\"."),
        })
    }

    fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }

    fn query(self) -> &'static str {
        if self == DryRun::Server {
            "?dryRun=All"
        } else {
            ""
        }
    }
}

struct Placed<'a> {
    resource: &'a Resource,
    ns: Option<String>,
    name: String,
}

fn place<'a>(ctx: &'a Ctx, r: &'a Resource, obj: &Value, source: &str) -> Result<Placed<'a>> {
    let name = name_of(obj).to_string();
    if name.is_empty() {
        bail!("error when retrieving current configuration of {source:?}: resource name may not be empty");
    }
    let ns = match (r.api.namespaced, namespace_of(obj)) {
        (false, _) => None,
        (true, Some(ns)) => {
            if ctx.namespace_explicit && ns != ctx.namespace {
                bail!(
                    "the namespace from the provided object {ns:?} does not match the namespace {:?}. You must pass '--namespace={ns}' to perform this operation.",
                    ctx.namespace
                );
            }
            Some(ns.to_string())
        }
        (true, None) => Some(ctx.namespace.clone()),
    };
    Ok(Placed {
        resource: r,
        ns,
        name,
    })
}

fn with_namespace(obj: &Value, p: &Placed) -> Value {
    let mut o = obj.clone();
    if let Some(ns) = &p.ns {
        o["metadata"]["namespace"] = json!(ns);
    }
    o
}

fn print_result(
    out: &mut impl Write,
    name_only: bool,
    p: &Placed,
    verb: &str,
    dry: DryRun,
) -> Result<()> {
    if name_only {
        writeln!(out, "{}/{}", p.resource.kind_prefix(), p.name)?;
    } else {
        writeln!(
            out,
            "{}/{} {verb}{}",
            p.resource.kind_prefix(),
            p.name,
            dry.suffix()
        )?;
    }
    Ok(())
}

/// Runs `create -f`.
pub async fn create(ctx: &Ctx, a: FileArgs) -> Result<()> {
    let dry = DryRun::parse(&a.dry_run)?;
    let manifests = read_manifests(&a.filename, a.recursive)?;
    let d = ctx.discovery().await?;
    let mut errors = ErrorList::default();
    let mut out = std::io::stdout().lock();
    for m in &manifests {
        let r = d.for_kind(
            m.object["apiVersion"].as_str().unwrap_or_default(),
            m.object["kind"].as_str().unwrap_or_default(),
        )?;
        let p = match place(ctx, r, &m.object, &m.source) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if dry != DryRun::Client {
            let path = format!("{}{}", r.api.collection_path(p.ns.as_deref()), dry.query());
            let body = with_namespace(&m.object, &p);
            if let Err(e) = ctx
                .send(Method::POST, &path, "application/json", Some(&body))
                .await
                .with_context(|| format!("error when creating {:?}", m.source))
            {
                errors.push(e);
                continue;
            }
        }
        print_result(
            &mut out,
            a.output.as_deref() == Some("name"),
            &p,
            "created",
            dry,
        )?;
    }
    errors.finish()
}

/// Runs `apply -f`.
pub async fn apply(ctx: &Ctx, a: ApplyArgs) -> Result<()> {
    let dry = DryRun::parse(&a.files.dry_run)?;
    if a.prune && a.selector.is_none() && !a.all {
        bail!("all resources selected for prune without explicitly passing --all. To prune all resources, pass the --all flag. If you did not mean to prune all resources, specify a label selector");
    }
    let manifests = read_manifests(&a.files.filename, a.files.recursive)?;
    let d = ctx.discovery().await?;
    let mut errors = ErrorList::default();
    let mut out = std::io::stdout().lock();
    let name_only = a.files.output.as_deref() == Some("name");
    let mut applied: BTreeSet<(String, Option<String>, String)> = BTreeSet::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    for m in &manifests {
        let r = d.for_kind(
            m.object["apiVersion"].as_str().unwrap_or_default(),
            m.object["kind"].as_str().unwrap_or_default(),
        )?;
        let p = match place(ctx, r, &m.object, &m.source) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        applied.insert((r.plural_group(), p.ns.clone(), p.name.clone()));
        if let Some(ns) = &p.ns {
            namespaces.insert(ns.clone());
        }
        match apply_one(ctx, &p, &m.object, dry).await {
            Ok(verb) => print_result(&mut out, name_only, &p, verb, dry)?,
            Err(e) => {
                errors.push(e.context(format!("error when applying patch to {:?}", m.source)))
            }
        }
    }
    if a.prune {
        if namespaces.is_empty() {
            namespaces.insert(ctx.namespace.clone());
        }
        for r in prune_types(d) {
            let scopes: Vec<Option<String>> = if r.api.namespaced {
                namespaces.iter().cloned().map(Some).collect()
            } else {
                vec![None]
            };
            for ns in scopes {
                let (items, _) =
                    list_objects(ctx, r, ns.as_deref(), a.selector.as_deref(), None).await?;
                for o in items {
                    if o["metadata"]["annotations"][LAST_APPLIED].is_null() {
                        continue;
                    }
                    let key = (
                        r.plural_group(),
                        namespace_of(&o).map(str::to_string),
                        name_of(&o).to_string(),
                    );
                    if applied.contains(&key) {
                        continue;
                    }
                    if dry != DryRun::Client {
                        let path =
                            format!("{}{}", item_path(r, key.1.as_deref(), &key.2), dry.query());
                        ctx.send(
                            Method::DELETE,
                            &path,
                            "application/json",
                            Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})),
                        )
                        .await?;
                    }
                    writeln!(out, "{}/{} pruned{}", r.kind_prefix(), key.2, dry.suffix())?;
                }
            }
        }
    }
    errors.finish()
}

// kubectl's default prune allowlist (pkg/cmd/apply/prune.go).
fn prune_types(d: &crate::cluster::Discovery) -> Vec<&Resource> {
    const ALLOW: &[(&str, &str)] = &[
        ("", "ConfigMap"),
        ("", "Endpoints"),
        ("", "Namespace"),
        ("", "PersistentVolumeClaim"),
        ("", "PersistentVolume"),
        ("", "Pod"),
        ("", "ReplicationController"),
        ("", "Secret"),
        ("", "Service"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("networking.k8s.io", "Ingress"),
        ("apps", "DaemonSet"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
    ];
    d.resources
        .iter()
        .filter(|r| {
            ALLOW
                .iter()
                .any(|(g, k)| r.api.group == *g && r.api.kind == *k)
        })
        .collect()
}

async fn apply_one(ctx: &Ctx, p: &Placed<'_>, obj: &Value, dry: DryRun) -> Result<&'static str> {
    // As kubectl: the annotation holds the object as given, namespace filled in and
    // annotations without itself (an empty map when there were none).
    let mut config = with_namespace(obj, p);
    if !config["metadata"]["annotations"].is_object() {
        config["metadata"]["annotations"] = json!({});
    }
    if let Some(a) = config["metadata"]["annotations"].as_object_mut() {
        a.remove(LAST_APPLIED);
    }
    let annotation = format!("{}\n", serde_json::to_string(&config)?);
    let mut modified = config;
    modified["metadata"]["annotations"][LAST_APPLIED] = json!(annotation);

    let path = item_path(p.resource, p.ns.as_deref(), &p.name);
    let live = match ctx.get_json(&path).await {
        Ok(v) => Some(v),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    let Some(live) = live else {
        if dry != DryRun::Client {
            let path = format!(
                "{}{}",
                p.resource.api.collection_path(p.ns.as_deref()),
                dry.query()
            );
            ctx.send(Method::POST, &path, "application/json", Some(&modified))
                .await?;
        }
        return Ok("created");
    };
    let original: Value = live["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(json!({}));
    let patch = three_way_merge_patch(&original, &modified, &live);
    if patch.as_object().is_none_or(Map::is_empty) {
        return Ok("unchanged");
    }
    if dry != DryRun::Client {
        ctx.send(
            Method::PATCH,
            &format!("{path}{}", dry.query()),
            "application/merge-patch+json",
            Some(&patch),
        )
        .await?;
    }
    Ok("configured")
}

/// A JSON merge patch taking `current` to what `modified` asks for: fields set in
/// `modified` that differ from `current`, and `null` for fields in `original` (the last
/// applied configuration) that `modified` no longer has. Lists are replaced whole, but
/// only when the user changed them since the last apply: the live list carries
/// server-set defaults, and comparing against it would patch on every apply.
pub fn three_way_merge_patch(original: &Value, modified: &Value, current: &Value) -> Value {
    let mut patch = Map::new();
    let (Some(m), Some(c)) = (modified.as_object(), current.as_object()) else {
        return modified.clone();
    };
    let o = original.as_object();
    for (k, mv) in m {
        let ov = o.and_then(|o| o.get(k));
        match (mv, c.get(k)) {
            (Value::Object(_), Some(cv @ Value::Object(_))) => {
                let sub = three_way_merge_patch(ov.unwrap_or(&Value::Null), mv, cv);
                if sub.as_object().is_some_and(|s| !s.is_empty()) {
                    patch.insert(k.clone(), sub);
                }
            }
            (Value::Array(_), Some(cv)) => {
                if Some(mv) != ov && mv != cv {
                    patch.insert(k.clone(), mv.clone());
                }
            }
            (_, cv) => {
                if cv != Some(mv) {
                    patch.insert(k.clone(), mv.clone());
                }
            }
        }
    }
    if let Some(o) = o {
        for k in o.keys() {
            if !m.contains_key(k) && c.contains_key(k) {
                patch.insert(k.clone(), Value::Null);
            }
        }
    }
    Value::Object(patch)
}

/// Whether an error is the server's NotFound.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<skiff_client::Error>()
        .is_some_and(|e| e.is_not_found())
}

/// `delete` flags.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// TYPE NAME…, TYPE/NAME…, or TYPE with -l / --all.
    args: Vec<String>,
    /// Files, directories or `-` naming the objects.
    #[arg(short = 'f', long = "filename")]
    filename: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Every object of the type in the namespace.
    #[arg(long)]
    all: bool,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Seconds the pods get to stop; -1 keeps the object's own.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    grace_period: i64,
    /// Delete at once (grace period 0 on the object's side).
    #[arg(long)]
    now: bool,
    /// Skip the grace period (with --grace-period=0).
    #[arg(long)]
    force: bool,
    /// Wait until the objects are gone.
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true")]
    wait: String,
    /// How long --wait waits (e.g. 60s, 2m); 0 waits for a week.
    #[arg(long, default_value = "0s")]
    timeout: String,
    /// Ignore objects that are not there.
    #[arg(long)]
    ignore_not_found: bool,
    /// `background`, `foreground` or `orphan`.
    #[arg(long, default_value = "background")]
    cascade: String,
    /// `name` prints only `kind/name`.
    #[arg(short = 'o', long)]
    output: Option<String>,
}

/// Parses a kubectl duration like `30s`, `2m`, `1h`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("invalid duration {s:?}"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Runs `delete`.
pub async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<()> {
    let d = ctx.discovery().await?;
    let wait = match a.wait.as_str() {
        "true" => true,
        "false" => false,
        o => bail!("invalid argument {o:?} for --wait"),
    };
    let timeout = match parse_duration(&a.timeout)? {
        t if t.is_zero() => Duration::from_secs(7 * 24 * 3600),
        t => t,
    };
    let grace = if a.now { 1 } else { a.grace_period };
    if a.force && grace != 0 && grace != -1 {
        bail!("--force and --grace-period greater than 0 cannot be specified together");
    }
    let mut options = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
    if grace >= 0 {
        options["gracePeriodSeconds"] = json!(grace);
    } else if a.force {
        options["gracePeriodSeconds"] = json!(0);
    }
    options["propagationPolicy"] = json!(match a.cascade.as_str() {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        o => bail!(
            "invalid cascade value ({o}). Must be \"background\", \"foreground\", or \"orphan\""
        ),
    });

    // (resource, namespace, name)
    let mut victims: Vec<(Resource, Option<String>, String)> = Vec::new();
    let mut errors = ErrorList::default();
    if !a.filename.is_empty() {
        for m in read_manifests(&a.filename, a.recursive)? {
            let r = d.for_kind(
                m.object["apiVersion"].as_str().unwrap_or_default(),
                m.object["kind"].as_str().unwrap_or_default(),
            )?;
            let p = place(ctx, r, &m.object, &m.source)?;
            victims.push((r.clone(), p.ns, p.name));
        }
    } else {
        if a.args.is_empty() {
            bail!("You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'");
        }
        for t in parse_targets(d, &a.args)? {
            let r = &t.resource;
            if t.names.is_empty() {
                if a.selector.is_none() && !a.all && !a.all_namespaces {
                    bail!("resource(s) were provided, but no name was specified");
                }
                let ns = if a.all_namespaces {
                    None
                } else {
                    ctx.ns_for(r, None)
                };
                let (items, _) = list_objects(ctx, r, ns, a.selector.as_deref(), None).await?;
                for o in items {
                    victims.push((
                        r.clone(),
                        namespace_of(&o).map(str::to_string),
                        name_of(&o).to_string(),
                    ));
                }
            } else {
                for n in t.names {
                    victims.push((r.clone(), ctx.ns_for(r, None).map(str::to_string), n));
                }
            }
        }
    }
    if victims.is_empty() {
        if a.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", ctx.namespace);
        }
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let mut deleted = Vec::new();
    for (r, ns, name) in victims {
        let path = item_path(&r, ns.as_deref(), &name);
        match ctx
            .send(Method::DELETE, &path, "application/json", Some(&options))
            .await
        {
            Ok(answer) => {
                if a.output.as_deref() == Some("name") {
                    writeln!(out, "{}/{name}", r.kind_prefix())?;
                } else {
                    writeln!(out, "{} {name:?} deleted", r.kind_prefix())?;
                }
                out.flush()?;
                let uid = answer["metadata"]["uid"].as_str().map(str::to_string);
                deleted.push((r, ns, name, uid));
            }
            Err(e) if a.ignore_not_found && is_not_found(&e) => {}
            Err(e) => errors.push(e),
        }
    }
    drop(out);
    if wait && !deleted.is_empty() {
        wait_gone(ctx, &deleted, timeout).await?;
    }
    errors.finish()
}

async fn wait_gone(
    ctx: &Ctx,
    objects: &[(Resource, Option<String>, String, Option<String>)],
    timeout: Duration,
) -> Result<()> {
    let bar = crate::progress::spinner(&format!(
        "waiting for {} object(s) to be deleted",
        objects.len()
    ));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut remaining: Vec<_> = objects.iter().collect();
    loop {
        let mut still = Vec::new();
        for o in remaining {
            let (r, ns, name, uid) = o;
            match ctx.get_json(&item_path(r, ns.as_deref(), name)).await {
                Err(e) if is_not_found(&e) => {}
                // Same name, new object: the one we deleted is gone.
                Ok(v) if uid.is_some() && v["metadata"]["uid"].as_str() != uid.as_deref() => {}
                Ok(_) => still.push(o),
                Err(e) => return Err(e),
            }
        }
        remaining = still;
        bar.set_message(format!(
            "waiting for {} object(s) to be deleted",
            remaining.len()
        ));
        if remaining.is_empty() {
            bar.finish_and_clear();
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bar.finish_and_clear();
            let (r, _, name, _) = remaining[0];
            bail!(
                "timed out waiting for the condition on {}/{name}",
                r.plural_group()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_way_patch_sets_changes_and_deletes_removed_fields() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 2, "ports": [1]}});
        let modified =
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 3, "ports": [1]}});
        let current = json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "x"}, "uid": "u"}, "spec": {"replicas": 2, "ports": [{"port": 1, "protocol": "TCP"}]}});
        let p = three_way_merge_patch(&original, &modified, &current);
        assert_eq!(
            p,
            json!({"metadata": {"labels": {"b": null}}, "spec": {"replicas": 3}})
        );
        assert_eq!(
            three_way_merge_patch(&modified, &modified, &current)["spec"],
            json!({"replicas": 3})
        );
        let same = json!({"spec": {"replicas": 3, "ports": [1]}});
        assert_eq!(three_way_merge_patch(&same, &same, &same), json!({}));
    }

    #[test]
    fn documents_and_lists_are_split() {
        let mut out = Vec::new();
        parse_documents(
            "f",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n",
            &mut out,
        )
        .unwrap();
        let names: Vec<&str> = out.iter().map(|m| name_of(&m.object)).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(parse_documents("f", "kind: X\n", &mut Vec::new()).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("x").is_err());
    }
}
