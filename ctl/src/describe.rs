//! `describe`: kubectl's human-readable view of an object, with the Events about it.
//! Pods, Deployments, Nodes and Services get their own sections; other kinds show
//! their spec and status as an indented tree.

use std::fmt::Write as _;

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use crate::cluster::{item_path, name_of, namespace_of, Ctx, Resource};
use crate::get::{list_objects, parse_targets};
use crate::manifest::LAST_APPLIED;
use crate::ErrorList;

/// `describe` flags.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// TYPE [NAME…] or TYPE/NAME…; a name prefix matches as in kubectl.
    #[arg(required = true)]
    args: Vec<String>,
    /// Label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Show events (true) or not.
    #[arg(long, default_value = "true")]
    show_events: String,
}

/// kubectl's `duration.HumanDuration` of a number of seconds.
pub fn human_duration(secs: i64) -> String {
    skiff_api::table::human_duration(jiff::SignedDuration::from_secs(secs))
}

fn age_of(ts: &Value) -> Option<i64> {
    let t: jiff::Timestamp = ts.as_str()?.parse().ok()?;
    Some(jiff::Timestamp::now().as_second() - t.as_second())
}

/// Lines of `key:` + value, aligned as kubectl's tabwriter (padding 2) aligns them.
#[derive(Default)]
struct Section {
    lines: Vec<(String, String)>,
}

impl Section {
    fn kv(&mut self, k: &str, v: impl Into<String>) {
        self.lines.push((format!("{k}:"), v.into()));
    }
    fn raw(&mut self, line: impl Into<String>) {
        self.lines.push((line.into(), String::new()));
    }
    fn render(&self, indent: &str, out: &mut String) {
        let w = self
            .lines
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0)
            + 2;
        for (k, v) in &self.lines {
            if v.is_empty() {
                let _ = writeln!(out, "{indent}{k}");
            } else {
                let _ = writeln!(out, "{indent}{k:<w$}{v}");
            }
        }
    }
}

fn map_lines(v: &Value, skip: &[&str]) -> Vec<String> {
    let Some(m) = v.as_object() else {
        return vec!["<none>".into()];
    };
    let lines: Vec<String> = m
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if lines.is_empty() {
        vec!["<none>".into()]
    } else {
        lines
    }
}

fn multiline(s: &mut Section, key: &str, values: Vec<String>) {
    let mut it = values.into_iter();
    s.kv(key, it.next().unwrap_or_else(|| "<none>".into()));
    for v in it {
        s.lines.push((String::new(), v));
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        o => o.to_string(),
    }
}

fn selector_text(sel: &Value) -> String {
    let mut parts: Vec<String> = sel
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", str_of(v)))
                .collect()
        })
        .unwrap_or_default();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let vals: Vec<String> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
        parts.push(format!(
            "{} {} ({})",
            str_of(&e["key"]),
            str_of(&e["operator"]).to_lowercase(),
            vals.join(",")
        ));
    }
    parts.join(",")
}

fn header(s: &mut Section, o: &Value, namespaced: bool) {
    s.kv("Name", name_of(o));
    if namespaced {
        s.kv("Namespace", namespace_of(o).unwrap_or_default());
    }
    multiline(s, "Labels", map_lines(&o["metadata"]["labels"], &[]));
    multiline(
        s,
        "Annotations",
        map_lines(&o["metadata"]["annotations"], &[LAST_APPLIED]),
    );
    s.kv(
        "CreationTimestamp",
        str_of(&o["metadata"]["creationTimestamp"]),
    );
}

fn containers(out: &mut String, title: &str, spec: &Value, statuses: &Value) {
    let Some(cs) = spec.as_array() else { return };
    let _ = writeln!(out, "{title}:");
    for c in cs {
        let name = str_of(&c["name"]);
        let _ = writeln!(out, "  {name}:");
        let mut s = Section::default();
        let st = statuses
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == c["name"]))
            .cloned()
            .unwrap_or(Value::Null);
        if !st.is_null() {
            s.kv("Container ID", str_of(&st["containerID"]));
        }
        s.kv("Image", str_of(&c["image"]));
        let ports: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}/{}",
                    str_of(&p["containerPort"]),
                    p["protocol"].as_str().unwrap_or("TCP")
                )
            })
            .collect();
        s.kv(
            "Port",
            if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(", ")
            },
        );
        if let Some(cmd) = c["command"].as_array() {
            s.raw("Command:");
            for a in cmd {
                s.lines.push((format!("  {}", str_of(a)), String::new()));
            }
        }
        if let Some(args) = c["args"].as_array() {
            s.raw("Args:");
            for a in args {
                s.lines.push((format!("  {}", str_of(a)), String::new()));
            }
        }
        if !st.is_null() {
            let state = st["state"].as_object().and_then(|m| m.iter().next());
            match state {
                Some((k, v)) => {
                    let mut k = k.clone();
                    if let Some(f) = k.get_mut(..1) {
                        f.make_ascii_uppercase();
                    }
                    s.kv("State", k);
                    if let Some(r) = v["reason"].as_str() {
                        s.kv("  Reason", r);
                    }
                    if let Some(t) = v["startedAt"].as_str() {
                        s.kv("  Started", t);
                    }
                    if !v["exitCode"].is_null() {
                        s.kv("  Exit Code", str_of(&v["exitCode"]));
                    }
                }
                None => s.kv("State", "Waiting"),
            }
            s.kv("Ready", str_of(&st["ready"]));
            s.kv("Restart Count", str_of(&st["restartCount"]));
        }
        for (k, label) in [("limits", "Limits"), ("requests", "Requests")] {
            if let Some(m) = c["resources"][k].as_object() {
                s.raw(format!("{label}:"));
                for (r, q) in m {
                    s.kv(&format!("  {r}"), str_of(q));
                }
            }
        }
        let env: Vec<String> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                if e["valueFrom"].is_null() {
                    format!("{}:  {}", str_of(&e["name"]), str_of(&e["value"]))
                } else {
                    format!(
                        "{}:  <set from {}>",
                        str_of(&e["name"]),
                        e["valueFrom"]
                            .as_object()
                            .and_then(|m| m.keys().next().cloned())
                            .unwrap_or_default()
                    )
                }
            })
            .collect();
        if env.is_empty() {
            s.kv("Environment", "<none>");
        } else {
            s.raw("Environment:");
            for e in env {
                s.lines.push((format!("  {e}"), String::new()));
            }
        }
        let mounts: Vec<String> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                format!(
                    "{} from {} ({})",
                    str_of(&m["mountPath"]),
                    str_of(&m["name"]),
                    if m["readOnly"] == true { "ro" } else { "rw" }
                )
            })
            .collect();
        if mounts.is_empty() {
            s.kv("Mounts", "<none>");
        } else {
            s.raw("Mounts:");
            for m in mounts {
                s.lines.push((format!("  {m}"), String::new()));
            }
        }
        s.render("    ", out);
    }
}

fn conditions(out: &mut String, conds: &Value, cols: &[(&str, &str)]) {
    let Some(cs) = conds.as_array() else { return };
    let _ = writeln!(out, "Conditions:");
    let mut rows = vec![
        cols.iter().map(|(h, _)| h.to_string()).collect::<Vec<_>>(),
        cols.iter().map(|(h, _)| "-".repeat(h.len())).collect(),
    ];
    for c in cs {
        rows.push(cols.iter().map(|(_, k)| str_of(&c[*k])).collect());
    }
    out.push_str(&indent_table(&rows, "  "));
}

fn indent_table(rows: &[Vec<String>], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count() + 2);
        }
    }
    let mut out = String::new();
    for r in rows {
        out.push_str(indent);
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                let _ = write!(line, "{c:<w$}", w = widths[i]);
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn controlled_by(o: &Value) -> Option<String> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| format!("{}/{}", str_of(&r["kind"]), str_of(&r["name"])))
}

fn describe_pod(o: &Value, out: &mut String) {
    let mut s = Section::default();
    s.kv("Name", name_of(o));
    s.kv("Namespace", namespace_of(o).unwrap_or_default());
    s.kv(
        "Priority",
        o["spec"]["priority"].as_i64().unwrap_or(0).to_string(),
    );
    s.kv(
        "Service Account",
        o["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default"),
    );
    let node = match (
        o["spec"]["nodeName"].as_str(),
        o["status"]["hostIP"].as_str(),
    ) {
        (Some(n), Some(ip)) => format!("{n}/{ip}"),
        (Some(n), None) => n.to_string(),
        _ => "<none>".into(),
    };
    s.kv("Node", node);
    if let Some(t) = o["status"]["startTime"].as_str() {
        s.kv("Start Time", t);
    }
    multiline(&mut s, "Labels", map_lines(&o["metadata"]["labels"], &[]));
    multiline(
        &mut s,
        "Annotations",
        map_lines(&o["metadata"]["annotations"], &[LAST_APPLIED]),
    );
    let status = if o["metadata"]["deletionTimestamp"].is_null() {
        str_of(&o["status"]["phase"])
    } else {
        "Terminating".into()
    };
    s.kv("Status", status);
    s.kv("IP", str_of(&o["status"]["podIP"]));
    let ips: Vec<String> = o["status"]["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| str_of(&i["ip"]))
        .collect();
    if ips.is_empty() {
        s.kv("IPs", "<none>");
    } else {
        s.raw("IPs:");
        for ip in ips {
            s.kv("  IP", ip);
        }
    }
    if let Some(c) = controlled_by(o) {
        s.kv("Controlled By", c);
    }
    s.render("", out);
    containers(
        out,
        "Init Containers",
        &o["spec"]["initContainers"],
        &o["status"]["initContainerStatuses"],
    );
    containers(
        out,
        "Containers",
        &o["spec"]["containers"],
        &o["status"]["containerStatuses"],
    );
    conditions(
        out,
        &o["status"]["conditions"],
        &[("Type", "type"), ("Status", "status")],
    );
    let mut s = Section::default();
    s.kv("QoS Class", str_of(&o["status"]["qosClass"]));
    multiline(
        &mut s,
        "Node-Selectors",
        map_lines(&o["spec"]["nodeSelector"], &[]),
    );
    let tols: Vec<String> = o["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let mut x = str_of(&t["key"]);
            if let Some(v) = t["value"].as_str() {
                x = format!("{x}={v}");
            }
            if let Some(e) = t["effect"].as_str() {
                x = format!("{x}:{e}");
            }
            if t["operator"] == "Exists" && t["key"].is_null() {
                x = "op=Exists".into();
            } else if t["operator"] == "Exists" {
                x = format!("{x} op=Exists");
            }
            if let Some(s) = t["tolerationSeconds"].as_i64() {
                x = format!("{x} for {s}s");
            }
            x
        })
        .collect();
    multiline(
        &mut s,
        "Tolerations",
        if tols.is_empty() {
            vec!["<none>".into()]
        } else {
            tols
        },
    );
    s.render("", out);
}

fn describe_deployment(o: &Value, out: &mut String) {
    let mut s = Section::default();
    header(&mut s, o, true);
    s.kv(
        "Selector",
        selector_text(&o["spec"]["selector"]["matchLabels"]),
    );
    let st = &o["status"];
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    s.kv(
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            o["spec"]["replicas"].as_i64().unwrap_or(1),
            n("updatedReplicas"),
            n("replicas"),
            n("availableReplicas"),
            n("unavailableReplicas")
        ),
    );
    let strategy = o["spec"]["strategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate");
    s.kv("StrategyType", strategy);
    s.kv(
        "MinReadySeconds",
        o["spec"]["minReadySeconds"]
            .as_i64()
            .unwrap_or(0)
            .to_string(),
    );
    if strategy == "RollingUpdate" {
        let ru = &o["spec"]["strategy"]["rollingUpdate"];
        s.kv(
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                str_of(&ru["maxUnavailable"]),
                str_of(&ru["maxSurge"])
            ),
        );
    }
    s.render("", out);
    let _ = writeln!(out, "Pod Template:");
    let t = &o["spec"]["template"];
    let mut s = Section::default();
    multiline(&mut s, "Labels", map_lines(&t["metadata"]["labels"], &[]));
    if t["metadata"]["annotations"].is_object() {
        multiline(
            &mut s,
            "Annotations",
            map_lines(&t["metadata"]["annotations"], &[]),
        );
    }
    s.render("  ", out);
    let mut inner = String::new();
    containers(
        &mut inner,
        "Containers",
        &t["spec"]["containers"],
        &Value::Null,
    );
    for line in inner.lines() {
        let _ = writeln!(out, "  {line}");
    }
    conditions(
        out,
        &st["conditions"],
        &[("Type", "type"), ("Status", "status"), ("Reason", "reason")],
    );
}

fn describe_node(o: &Value, out: &mut String, pods: &[Value]) {
    let mut s = Section::default();
    s.kv("Name", name_of(o));
    let roles: Vec<String> = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
        })
        .collect();
    s.kv(
        "Roles",
        if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",")
        },
    );
    multiline(&mut s, "Labels", map_lines(&o["metadata"]["labels"], &[]));
    multiline(
        &mut s,
        "Annotations",
        map_lines(&o["metadata"]["annotations"], &[]),
    );
    s.kv(
        "CreationTimestamp",
        str_of(&o["metadata"]["creationTimestamp"]),
    );
    let taints: Vec<String> = o["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| match t["value"].as_str() {
            Some(v) => format!("{}={v}:{}", str_of(&t["key"]), str_of(&t["effect"])),
            None => format!("{}:{}", str_of(&t["key"]), str_of(&t["effect"])),
        })
        .collect();
    multiline(
        &mut s,
        "Taints",
        if taints.is_empty() {
            vec!["<none>".into()]
        } else {
            taints
        },
    );
    s.kv(
        "Unschedulable",
        o["spec"]["unschedulable"]
            .as_bool()
            .unwrap_or(false)
            .to_string(),
    );
    s.render("", out);
    conditions(
        out,
        &o["status"]["conditions"],
        &[
            ("Type", "type"),
            ("Status", "status"),
            ("LastHeartbeatTime", "lastHeartbeatTime"),
            ("Reason", "reason"),
            ("Message", "message"),
        ],
    );
    let _ = writeln!(out, "Addresses:");
    let mut s = Section::default();
    for a in o["status"]["addresses"].as_array().into_iter().flatten() {
        s.kv(&str_of(&a["type"]), str_of(&a["address"]));
    }
    s.render("  ", out);
    for (key, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        let _ = writeln!(out, "{title}:");
        let mut s = Section::default();
        for (k, v) in o["status"][key].as_object().into_iter().flatten() {
            s.kv(k, str_of(v));
        }
        s.render("  ", out);
    }
    let mut s = Section::default();
    s.kv("PodCIDR", str_of(&o["spec"]["podCIDR"]));
    s.render("", out);
    let _ = writeln!(
        out,
        "Non-terminated Pods:          ({} in total)",
        pods.len()
    );
    let mut rows = vec![
        vec!["Namespace".to_string(), "Name".into(), "Age".into()],
        vec!["---------".to_string(), "----".into(), "---".into()],
    ];
    for p in pods {
        rows.push(vec![
            namespace_of(p).unwrap_or_default().to_string(),
            name_of(p).to_string(),
            age_of(&p["metadata"]["creationTimestamp"])
                .map(human_duration)
                .unwrap_or_default(),
        ]);
    }
    out.push_str(&indent_table(&rows, "  "));
}

fn describe_service(o: &Value, out: &mut String, endpoints: &Value) {
    let mut s = Section::default();
    header(&mut s, o, true);
    let spec = &o["spec"];
    s.kv("Selector", selector_text(&spec["selector"]));
    s.kv("Type", str_of(&spec["type"]));
    s.kv("IP Family Policy", str_of(&spec["ipFamilyPolicy"]));
    s.kv("IP", str_of(&spec["clusterIP"]));
    if let Some(e) = spec["externalName"].as_str() {
        s.kv("External Name", e);
    }
    if let Some(ips) = spec["externalIPs"].as_array() {
        s.kv(
            "External IPs",
            ips.iter().map(str_of).collect::<Vec<_>>().join(","),
        );
    }
    let addrs: Vec<String> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|ss| {
            let ports: Vec<String> = ss["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| str_of(&p["port"]))
                .collect();
            ss["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(move |a| {
                    let ip = str_of(&a["ip"]);
                    ports.clone().into_iter().map(move |p| format!("{ip}:{p}"))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for p in spec["ports"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("<unset>");
        s.kv(
            "Port",
            format!(
                "{name}  {}/{}",
                str_of(&p["port"]),
                p["protocol"].as_str().unwrap_or("TCP")
            ),
        );
        s.kv(
            "TargetPort",
            format!(
                "{}/{}",
                str_of(&p["targetPort"]),
                p["protocol"].as_str().unwrap_or("TCP")
            ),
        );
        if let Some(np) = p["nodePort"].as_i64() {
            s.kv(
                "NodePort",
                format!("{name}  {np}/{}", p["protocol"].as_str().unwrap_or("TCP")),
            );
        }
        s.kv(
            "Endpoints",
            if addrs.is_empty() {
                "<none>".into()
            } else {
                addrs.join(",")
            },
        );
    }
    s.kv(
        "Session Affinity",
        spec["sessionAffinity"].as_str().unwrap_or("None"),
    );
    if let Some(p) = spec["externalTrafficPolicy"].as_str() {
        s.kv("External Traffic Policy", p);
    }
    s.render("", out);
}

fn tree(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let mut key = k.clone();
                if let Some(f) = key.get_mut(..1) {
                    f.make_ascii_uppercase();
                }
                match x {
                    Value::Object(_) | Value::Array(_) => {
                        let _ = writeln!(out, "{pad}{key}:");
                        tree(x, indent + 1, out);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{key}:  {}", str_of(x));
                    }
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                match x {
                    Value::Object(_) | Value::Array(_) => tree(x, indent, out),
                    _ => {
                        let _ = writeln!(out, "{pad}{}", str_of(x));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", str_of(other));
        }
    }
}

fn describe_generic(o: &Value, r: &Resource, out: &mut String) {
    let mut s = Section::default();
    header(&mut s, o, r.api.namespaced);
    s.render("", out);
    for (k, v) in o.as_object().into_iter().flatten() {
        if matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
            continue;
        }
        let mut key = k.clone();
        if let Some(f) = key.get_mut(..1) {
            f.make_ascii_uppercase();
        }
        match v {
            Value::Object(_) | Value::Array(_) => {
                let _ = writeln!(out, "{key}:");
                tree(v, 1, out);
            }
            _ => {
                let _ = writeln!(out, "{key}:  {}", str_of(v));
            }
        }
    }
}

async fn events(ctx: &Ctx, o: &Value, out: &mut String) -> Result<()> {
    let d = ctx.discovery().await?;
    let ev_r = d.resolve("events")?;
    let (items, _) =
        list_objects(ctx, ev_r, namespace_of(o).or(Some("default")), None, None).await?;
    let uid = &o["metadata"]["uid"];
    let mut evs: Vec<&Value> = items
        .iter()
        .filter(|e| {
            let io = &e["involvedObject"];
            (!io["uid"].is_null() && &io["uid"] == uid)
                || (io["uid"].is_null() && io["name"].as_str() == Some(name_of(o)))
        })
        .collect();
    if evs.is_empty() {
        let _ = writeln!(out, "Events:  <none>");
        return Ok(());
    }
    let when = |e: &Value| {
        [
            &e["lastTimestamp"],
            &e["eventTime"],
            &e["firstTimestamp"],
            &e["metadata"]["creationTimestamp"],
        ]
        .into_iter()
        .find_map(|t| t.as_str().map(str::to_string))
        .unwrap_or_default()
    };
    evs.sort_by_key(|e| when(e));
    let _ = writeln!(out, "Events:");
    let mut rows = vec![
        ["Type", "Reason", "Age", "From", "Message"]
            .map(String::from)
            .to_vec(),
        ["----", "------", "----", "----", "-------"]
            .map(String::from)
            .to_vec(),
    ];
    for e in evs {
        let last = age_of(&Value::String(when(e)))
            .map(human_duration)
            .unwrap_or_default();
        let count = e["count"].as_i64().unwrap_or(1);
        let age = match (count > 1, age_of(&e["firstTimestamp"])) {
            (true, Some(first)) => format!("{last} (x{count} over {})", human_duration(first)),
            _ => last,
        };
        let from = e["source"]["component"]
            .as_str()
            .or(e["reportingComponent"].as_str())
            .unwrap_or_default();
        rows.push(vec![
            str_of(&e["type"]),
            str_of(&e["reason"]),
            age,
            from.to_string(),
            str_of(&e["message"]).trim().to_string(),
        ]);
    }
    out.push_str(&indent_table(&rows, "  "));
    Ok(())
}

/// Runs `describe`.
pub async fn run(ctx: &Ctx, a: DescribeArgs) -> Result<()> {
    let d = ctx.discovery().await?;
    let mut errors = ErrorList::default();
    let mut first = true;
    for t in parse_targets(d, &a.args)? {
        let r = &t.resource;
        let ns = if a.all_namespaces {
            None
        } else {
            ctx.ns_for(r, None)
        };
        let mut objects = Vec::new();
        let (all, _) = list_objects(ctx, r, ns, a.selector.as_deref(), None).await?;
        if t.names.is_empty() {
            objects = all;
        } else {
            for n in &t.names {
                match ctx.get_json(&item_path(r, ns, n)).await {
                    Ok(o) => objects.push(o),
                    // kubectl describes every object whose name starts with the word.
                    Err(e) => {
                        let found: Vec<Value> = all
                            .iter()
                            .filter(|o| name_of(o).starts_with(n.as_str()))
                            .cloned()
                            .collect();
                        if found.is_empty() {
                            errors.push(e);
                        }
                        objects.extend(found);
                    }
                }
            }
        }
        for o in objects {
            let mut out = String::new();
            match r.api.kind.as_str() {
                "Pod" => describe_pod(&o, &mut out),
                "Deployment" => describe_deployment(&o, &mut out),
                "Node" => {
                    let pods_r = d.resolve("pods")?;
                    let (pods, _) = list_objects(
                        ctx,
                        pods_r,
                        None,
                        None,
                        Some(&format!("spec.nodeName={}", name_of(&o))),
                    )
                    .await?;
                    let live: Vec<Value> = pods
                        .into_iter()
                        .filter(|p| {
                            !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                        })
                        .collect();
                    describe_node(&o, &mut out, &live);
                }
                "Service" => {
                    let ep_r = d.resolve("endpoints")?;
                    let ep = ctx
                        .get_json(&item_path(ep_r, namespace_of(&o), name_of(&o)))
                        .await
                        .unwrap_or(Value::Null);
                    describe_service(&o, &mut out, &ep);
                }
                _ => describe_generic(&o, r, &mut out),
            }
            if a.show_events != "false" {
                events(ctx, &o, &mut out).await?;
            }
            if !first {
                println!();
                println!();
            }
            first = false;
            print!("{out}");
        }
    }
    errors.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
    }

    #[test]
    fn sections_align_values() {
        let mut s = Section::default();
        s.kv("Name", "x");
        s.kv("Service Account", "default");
        let mut out = String::new();
        s.render("", &mut out);
        assert_eq!(out, "Name:             x\nService Account:  default\n");
    }
}
