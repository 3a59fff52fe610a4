//! Verbs about the server rather than objects: `api-resources`, `version`, `explain`.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::cluster::Ctx;
use crate::print::{tabwrite, to_json, to_yaml};

/// `api-resources` flags.
#[derive(Args, Debug)]
pub struct ApiResourcesArgs {
    /// `wide` adds verbs and categories; `name` prints `plural.group`.
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Only namespaced (true) or cluster-scoped (false) types.
    #[arg(long)]
    namespaced: Option<bool>,
    /// Only this API group ("" for core).
    #[arg(long)]
    api_group: Option<String>,
    /// Print no header row.
    #[arg(long)]
    no_headers: bool,
}

/// Runs `api-resources`.
pub async fn api_resources(ctx: &Ctx, a: ApiResourcesArgs) -> Result<()> {
    let d = ctx.discovery().await?;
    let mut rs: Vec<_> = d
        .resources
        .iter()
        .filter(|r| a.namespaced.is_none_or(|n| r.api.namespaced == n))
        .filter(|r| a.api_group.as_ref().is_none_or(|g| &r.api.group == g))
        .collect();
    rs.sort_by(|x, y| (&x.api.group, &x.api.plural).cmp(&(&y.api.group, &y.api.plural)));
    let mut out = std::io::stdout().lock();
    let wide = match a.output.as_deref() {
        Some("name") => {
            for r in rs {
                writeln!(out, "{}", r.plural_group())?;
            }
            return Ok(());
        }
        Some("wide") => true,
        None | Some("") => false,
        Some(o) => bail!("--output {o} is not available"),
    };
    let mut rows = Vec::new();
    if !a.no_headers {
        let mut h = vec!["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"];
        if wide {
            h.extend(["VERBS", "CATEGORIES"]);
        }
        rows.push(h.into_iter().map(String::from).collect());
    }
    for r in rs {
        let mut row = vec![
            r.api.plural.clone(),
            r.short_names.join(","),
            r.api.api_version.clone(),
            r.api.namespaced.to_string(),
            r.api.kind.clone(),
        ];
        if wide {
            row.push(format!("[{}]", r.verbs.join(" ")));
            row.push(r.categories.join(","));
        }
        rows.push(row);
    }
    write!(out, "{}", tabwrite(&rows))?;
    Ok(())
}

/// `version` flags.
#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Only the client's version (no server needed).
    #[arg(long)]
    client: bool,
    /// `json` or `yaml`.
    #[arg(short = 'o', long)]
    output: Option<String>,
}

/// Runs `version`.
pub async fn version(ctx: Option<&Ctx>, a: VersionArgs) -> Result<()> {
    let client_version = json!({
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION"), "-skiffctl"),
        "major": env!("CARGO_PKG_VERSION_MAJOR"),
        "minor": env!("CARGO_PKG_VERSION_MINOR"),
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    });
    let mut doc = json!({"clientVersion": client_version});
    let mut server_err = None;
    if !a.client {
        match ctx {
            Some(ctx) => match ctx.get_json("/version").await {
                Ok(v) => doc["serverVersion"] = v,
                Err(e) => server_err = Some(e),
            },
            None => bail!("no kubeconfig: use --client for the client version only"),
        }
    }
    let mut out = std::io::stdout().lock();
    match a.output.as_deref() {
        Some("json") => write!(out, "{}", to_json(&doc)?)?,
        Some("yaml") => write!(out, "{}", to_yaml(&doc)?)?,
        None | Some("") => {
            writeln!(
                out,
                "Client Version: {}",
                doc["clientVersion"]["gitVersion"]
                    .as_str()
                    .unwrap_or_default()
            )?;
            if let Some(v) = doc.get("serverVersion") {
                writeln!(
                    out,
                    "Server Version: {}",
                    v["gitVersion"].as_str().unwrap_or_default()
                )?;
            }
        }
        Some(o) => bail!("--output must be 'yaml' or 'json', not {o:?}"),
    }
    match server_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `explain` flags.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// TYPE or TYPE.field.path, e.g. `pods.spec.containers`.
    field: String,
    /// Print every field below, recursively (names and types only).
    #[arg(long)]
    recursive: bool,
}

/// Runs `explain` from the server's OpenAPI v2 document.
pub async fn explain(ctx: &Ctx, a: ExplainArgs) -> Result<()> {
    let d = ctx.discovery().await?;
    let mut parts = a.field.split('.');
    let first = parts.next().unwrap_or_default();
    let r = d.resolve(first)?;
    let spec = ctx.get_json("/openapi/v2").await?;
    let defs = &spec["definitions"];
    let Some((def_name, root)) = defs.as_object().and_then(|m| {
        m.iter().find(|(_, s)| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|g| {
                    g.iter().any(|g| {
                        g["group"] == json!(r.api.group)
                            && g["version"] == json!(r.api.version)
                            && g["kind"] == json!(r.api.kind)
                    })
                })
        })
    }) else {
        bail!(
            "couldn't find resource for {:?} in the server's OpenAPI document",
            r.plural_group()
        );
    };
    let _ = def_name;
    let mut schema = root.clone();
    let mut field_path = Vec::new();
    let mut field_type = String::new();
    for p in parts {
        schema = deref(defs, &schema);
        let Some(next) = schema["properties"].get(p) else {
            bail!("field {p:?} does not exist");
        };
        field_type = type_name(defs, next);
        field_path.push(p.to_string());
        let desc = next["description"].clone();
        schema = deref(defs, next);
        if schema["description"].is_null() {
            schema["description"] = desc;
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "GROUP:      {}", r.api.group)?;
    writeln!(out, "KIND:       {}", r.api.kind)?;
    writeln!(out, "VERSION:    {}", r.api.version)?;
    writeln!(out)?;
    if !field_path.is_empty() {
        writeln!(
            out,
            "FIELD: {} <{field_type}>",
            field_path.last().cloned().unwrap_or_default()
        )?;
        writeln!(out)?;
    }
    writeln!(out, "DESCRIPTION:")?;
    for line in wrap(schema["description"].as_str().unwrap_or("<empty>"), 76) {
        writeln!(out, "    {line}")?;
    }
    if let Some(props) = schema["properties"].as_object() {
        writeln!(out)?;
        writeln!(out, "FIELDS:")?;
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        print_fields(&mut out, defs, props, &required, a.recursive, 1)?;
    }
    Ok(())
}

fn print_fields(
    out: &mut impl Write,
    defs: &Value,
    props: &serde_json::Map<String, Value>,
    required: &[&str],
    recursive: bool,
    depth: usize,
) -> Result<()> {
    let indent = "  ".repeat(depth);
    for (name, p) in props {
        let req = if required.contains(&name.as_str()) {
            " -required-"
        } else {
            ""
        };
        writeln!(out, "{indent}{name}\t<{}>{req}", type_name(defs, p))?;
        if recursive {
            let sub = deref(defs, p);
            if let Some(sp) = sub["properties"].as_object() {
                if depth < 12 {
                    print_fields(out, defs, sp, &[], true, depth + 1)?;
                }
            }
        } else {
            for line in wrap(p["description"].as_str().unwrap_or(""), 72) {
                writeln!(out, "{indent}  {line}")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

fn deref(defs: &Value, s: &Value) -> Value {
    let s = if s["type"] == "array" { &s["items"] } else { s };
    let s = if s["additionalProperties"].is_object() && s["properties"].is_null() {
        &s["additionalProperties"]
    } else {
        s
    };
    match s["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/definitions/"))
    {
        Some(name) => defs[name].clone(),
        None => match s["allOf"].as_array().and_then(|a| a.first()) {
            Some(inner) => deref(defs, inner),
            None => s.clone(),
        },
    }
}

fn type_name(defs: &Value, s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str().and_then(|r| r.rsplit('.').next()) {
        let target = deref(defs, s);
        return match target["type"].as_str() {
            Some(t) if t != "object" => t.to_string(),
            _ => r.to_string(),
        };
    }
    match s["type"].as_str() {
        Some("array") => format!("[]{}", type_name(defs, &s["items"])),
        Some("object") if s["additionalProperties"].is_object() => {
            format!("map[string]{}", type_name(defs, &s["additionalProperties"]))
        }
        Some(t) => t.to_string(),
        None => s["allOf"]
            .as_array()
            .and_then(|a| a.first())
            .map(|i| type_name(defs, i))
            .unwrap_or_else(|| "Object".into()),
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}
