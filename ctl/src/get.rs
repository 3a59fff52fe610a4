//! `skiffctl get`: Tables from the server in kubectl's layout, or the objects as YAML,
//! JSON, names or a JSONPath template; `-w` follows a watch.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_client::WatchEvent;

use crate::cluster::{encode, item_path, name_of, Ctx, Discovery, Resource, TABLE_ACCEPT};
use crate::print::{jsonpath, table_view, tabwrite, to_json, to_yaml, Output};
use crate::ErrorList;

/// `get` flags.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// TYPE[,TYPE…] [NAME…], or TYPE/NAME…; `all` names the `all` category.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Output format: wide, yaml, json, name, jsonpath=TEMPLATE.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Label selector, e.g. `app=web,tier!=db`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector, e.g. `spec.nodeName=n1`.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Prefix names with their type.
    #[arg(long)]
    pub show_kind: bool,
    /// Print no header row.
    #[arg(long)]
    pub no_headers: bool,
}

/// What the user named: types with the object names of each (empty: all).
pub struct Target {
    /// The type.
    pub resource: Resource,
    /// Names; empty means every object (of the selector).
    pub names: Vec<String>,
}

/// Reads `TYPE[,TYPE] [NAME…]` or `TYPE/NAME…` as kubectl does; `all` expands to the
/// `all` category.
pub fn parse_targets(d: &Discovery, args: &[String]) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = Vec::new();
    if args.is_empty() {
        bail!("You must specify the type of resource to get.");
    }
    if args[0].contains('/') {
        for a in args {
            let Some((t, name)) = a.split_once('/') else {
                bail!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiffctl get resource/<resource_name>' instead of 'skiffctl get resource resource/<resource_name>'");
            };
            let r = d.resolve(t)?.clone();
            match out.iter_mut().find(|x| x.resource.api == r.api) {
                Some(x) => x.names.push(name.to_string()),
                None => out.push(Target {
                    resource: r,
                    names: vec![name.to_string()],
                }),
            }
        }
        return Ok(out);
    }
    let names: Vec<String> = args[1..].to_vec();
    for t in args[0].split(',').filter(|t| !t.is_empty()) {
        let resources: Vec<Resource> = if t == "all" {
            d.category("all").into_iter().cloned().collect()
        } else {
            vec![d.resolve(t)?.clone()]
        };
        for r in resources {
            if !out.iter().any(|x| x.resource.api == r.api) {
                out.push(Target {
                    resource: r,
                    names: names.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn list_query(label: Option<&str>, field: Option<&str>, extra: &[(&str, String)]) -> String {
    let mut q: Vec<String> = Vec::new();
    if let Some(l) = label {
        q.push(format!("labelSelector={}", encode(l)));
    }
    if let Some(f) = field {
        q.push(format!("fieldSelector={}", encode(f)));
    }
    for (k, v) in extra {
        q.push(format!("{k}={}", encode(v)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Lists a type's objects as JSON (items carry kind and apiVersion).
pub async fn list_objects(
    ctx: &Ctx,
    r: &Resource,
    ns: Option<&str>,
    label: Option<&str>,
    field: Option<&str>,
) -> Result<(Vec<Value>, String)> {
    let path = format!(
        "{}{}",
        r.api.collection_path(ns),
        list_query(label, field, &[])
    );
    let list = ctx.get_json(&path).await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let items = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut o| {
            o["apiVersion"] = json!(r.api.api_version);
            o["kind"] = json!(r.api.kind);
            o
        })
        .collect();
    Ok((items, rv))
}

/// Runs `get`.
pub async fn run(ctx: &Ctx, a: GetArgs) -> Result<()> {
    let output = Output::parse(a.output.as_deref())?;
    let d = ctx.discovery().await?;
    let targets = parse_targets(d, &a.args)?;
    let show_kind = a.show_kind || targets.len() > 1 || a.args[0].split(',').any(|t| t == "all");
    let ns_all = a.all_namespaces;
    let mut errors = ErrorList::default();
    let mut stdout = std::io::stdout().lock();
    let mut printed_any = false;

    if a.watch && targets.len() > 1 {
        bail!("you may only specify a single resource type");
    }

    match &output {
        Output::Table | Output::Wide => {
            let mut first_table = true;
            for t in &targets {
                let r = &t.resource;
                let ns = if ns_all { None } else { ctx.ns_for(r, None) };
                let mut tables = Vec::new();
                if t.names.is_empty() {
                    let path = format!(
                        "{}{}",
                        r.api.collection_path(ns),
                        list_query(a.selector.as_deref(), a.field_selector.as_deref(), &[])
                    );
                    tables.push(ctx.get_table(&path).await?);
                } else {
                    for n in &t.names {
                        match ctx.get_table(&item_path(r, ns, n)).await {
                            Ok(tb) => tables.push(tb),
                            Err(e) => errors.push(e),
                        }
                    }
                }
                let mut rows: Vec<Vec<String>> = Vec::new();
                let mut headers = Vec::new();
                let mut rv = String::new();
                for tb in &tables {
                    let view = table_view(tb, output == Output::Wide)?;
                    headers = view.headers;
                    rv = tb["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    for (cells, obj) in view.rows {
                        rows.push(decorate(cells, &obj, r, ns_all, show_kind));
                    }
                }
                if !headers.is_empty() && ns_all && r.api.namespaced {
                    headers.insert(0, "NAMESPACE".into());
                }
                if rows.is_empty() && !a.watch {
                    continue;
                }
                if !first_table {
                    writeln!(stdout)?;
                }
                first_table = false;
                let mut all = Vec::new();
                if !a.no_headers {
                    all.push(headers.clone());
                }
                printed_any |= !rows.is_empty();
                all.extend(rows);
                write!(stdout, "{}", tabwrite(&all))?;
                stdout.flush()?;
                if a.watch {
                    drop(stdout);
                    return watch_table(ctx, t, ns, &a, rv, ns_all, show_kind).await;
                }
            }
        }
        _ => {
            let mut objects = Vec::new();
            let single = targets.len() == 1
                && targets[0].names.len() == 1
                && !a.args[0].split(',').any(|t| t == "all");
            let mut last_rv = String::new();
            for t in &targets {
                let r = &t.resource;
                let ns = if ns_all { None } else { ctx.ns_for(r, None) };
                if t.names.is_empty() {
                    let (items, rv) = list_objects(
                        ctx,
                        r,
                        ns,
                        a.selector.as_deref(),
                        a.field_selector.as_deref(),
                    )
                    .await?;
                    last_rv = rv;
                    objects.extend(items);
                } else {
                    for n in &t.names {
                        match ctx.get_json(&item_path(r, ns, n)).await {
                            Ok(mut o) => {
                                o["apiVersion"] = json!(r.api.api_version);
                                o["kind"] = json!(r.api.kind);
                                objects.push(o)
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                }
            }
            printed_any = !objects.is_empty();
            let doc = if single && objects.len() == 1 {
                objects[0].clone()
            } else {
                json!({"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}})
            };
            if output == Output::Name {
                for o in &objects {
                    let r = d.for_kind(
                        o["apiVersion"].as_str().unwrap_or_default(),
                        o["kind"].as_str().unwrap_or_default(),
                    )?;
                    writeln!(stdout, "{}/{}", r.kind_prefix(), name_of(o))?;
                }
            } else if !objects.is_empty() || errors.is_empty() {
                print_doc(&mut stdout, &output, &doc)?;
                printed_any = true;
            }
            if a.watch {
                drop(stdout);
                let t = &targets[0];
                let ns = if ns_all {
                    None
                } else {
                    ctx.ns_for(&t.resource, None)
                };
                return watch_objects(ctx, t, ns, &a, &output, last_rv).await;
            }
        }
    }
    if !printed_any && errors.is_empty() {
        if ns_all || targets.iter().all(|t| !t.resource.api.namespaced) {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", ctx.namespace);
        }
    }
    errors.finish()
}

fn print_doc(out: &mut impl Write, output: &Output, doc: &Value) -> Result<()> {
    match output {
        Output::Yaml => write!(out, "{}", to_yaml(doc)?)?,
        Output::Json => write!(out, "{}", to_json(doc)?)?,
        Output::JsonPath(t) => write!(out, "{}", jsonpath(t, doc)?)?,
        _ => {}
    }
    Ok(())
}

fn decorate(
    mut cells: Vec<String>,
    obj: &Value,
    r: &Resource,
    ns_all: bool,
    show_kind: bool,
) -> Vec<String> {
    if show_kind {
        if let Some(first) = cells.first_mut() {
            *first = format!("{}/{}", r.kind_prefix(), first);
        }
    }
    if ns_all && r.api.namespaced {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        cells.insert(0, ns);
    }
    cells
}

fn watch_path(t: &Target, ns: Option<&str>, a: &GetArgs, rv: &str) -> String {
    let mut field = a.field_selector.clone();
    if let Some(n) = t.names.first() {
        field = Some(format!("metadata.name={n}"));
    }
    let mut extra = vec![("watch", "true".to_string())];
    if !rv.is_empty() {
        extra.push(("resourceVersion", rv.to_string()));
    }
    format!(
        "{}{}",
        t.resource.api.collection_path(ns),
        list_query(a.selector.as_deref(), field.as_deref(), &extra)
    )
}

async fn watch_table(
    ctx: &Ctx,
    t: &Target,
    ns: Option<&str>,
    a: &GetArgs,
    rv: String,
    ns_all: bool,
    show_kind: bool,
) -> Result<()> {
    let path = watch_path(t, ns, a, &rv);
    let mut events = ctx
        .client
        .request_watch_accept::<Value>(&path, TABLE_ACCEPT, None)
        .await?;
    while let Some(ev) = events.next().await {
        let table = match ev? {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(s) => return Err(skiff_client::Error::Api(s).into()),
        };
        let view = table_view(&table, a.output.as_deref() == Some("wide"))?;
        let rows: Vec<Vec<String>> = view
            .rows
            .into_iter()
            .map(|(cells, obj)| decorate(cells, &obj, &t.resource, ns_all, show_kind))
            .collect();
        let mut out = std::io::stdout().lock();
        write!(out, "{}", tabwrite(&rows))?;
        out.flush()?;
    }
    Ok(())
}

async fn watch_objects(
    ctx: &Ctx,
    t: &Target,
    ns: Option<&str>,
    a: &GetArgs,
    output: &Output,
    rv: String,
) -> Result<()> {
    let path = watch_path(t, ns, a, &rv);
    let mut events = ctx.client.request_watch::<Value>(&path, None).await?;
    while let Some(ev) = events.next().await {
        let mut o = match ev? {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(s) => return Err(skiff_client::Error::Api(s).into()),
        };
        o["apiVersion"] = json!(t.resource.api.api_version);
        o["kind"] = json!(t.resource.api.kind);
        let mut out = std::io::stdout().lock();
        match output {
            Output::Name => writeln!(out, "{}/{}", t.resource.kind_prefix(), name_of(&o))?,
            Output::Yaml => write!(out, "---\n{}", to_yaml(&o)?)?,
            other => print_doc(&mut out, other, &o)?,
        }
        out.flush()?;
    }
    Ok(())
}
