//! `skiffctl config …`: read and edit kubeconfig files as kubectl does. Each file is kept
//! as a YAML document so fields skiff does not know survive an edit; a context is written
//! back to the file that defined it, current-context to the first file that sets one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use skiff_client::kubeconfig::kubeconfig_paths;

use crate::cluster::GlobalArgs;
use crate::print::{tabwrite, to_json, to_yaml};

/// `config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Describe one or many contexts.
    GetContexts {
        /// Only these contexts.
        names: Vec<String>,
        /// `name` prints only the names.
        #[arg(short = 'o', long)]
        output: Option<String>,
        /// Print no header row.
        #[arg(long)]
        no_headers: bool,
    },
    /// Display the current-context.
    CurrentContext,
    /// Set the current-context in a kubeconfig file.
    UseContext {
        /// The context.
        name: String,
    },
    /// Set a context entry in kubeconfig.
    SetContext(SetContextArgs),
    /// Display merged kubeconfig settings or a specified kubeconfig file.
    View {
        /// Output format: yaml (default) or json.
        #[arg(short = 'o', long)]
        output: Option<String>,
        /// Show only the current context's entries.
        #[arg(long)]
        minify: bool,
        /// Show secrets and certificate data.
        #[arg(long)]
        raw: bool,
    },
    /// Display clusters defined in the kubeconfig.
    GetClusters,
    /// Display users defined in the kubeconfig.
    GetUsers,
}

/// `config set-context` flags.
#[derive(Args, Debug)]
pub struct SetContextArgs {
    /// The context to create or modify.
    pub name: Option<String>,
    /// Modify the current context.
    #[arg(long)]
    pub current: bool,
    /// Its cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Its user.
    #[arg(long)]
    pub user: Option<String>,
    /// Its namespace (`config set-context --namespace` sets, not selects).
    #[arg(long = "namespace", id = "ctx_namespace")]
    pub namespace: Option<String>,
}

/// One kubeconfig file as read.
struct File {
    path: PathBuf,
    exists: bool,
    doc: Value,
}

/// The files kubectl would read, in order, parsed.
struct Files {
    explicit: bool,
    files: Vec<File>,
}

impl Files {
    fn load(explicit: Option<&Path>) -> Result<Files> {
        let mut files = Vec::new();
        for path in kubeconfig_paths(explicit) {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let yaml: serde_norway::Value =
                        serde_norway::from_str(&text).with_context(|| {
                            format!("error loading config file {:?}", path.display().to_string())
                        })?;
                    let mut doc = serde_json::to_value(yaml).with_context(|| {
                        format!("error loading config file {:?}", path.display().to_string())
                    })?;
                    if doc.is_null() {
                        doc = json!({});
                    }
                    files.push(File {
                        path,
                        exists: true,
                        doc,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => files
                    .push(File {
                        path,
                        exists: false,
                        doc: json!({}),
                    }),
                Err(e) => bail!("stat {}: {e}", path.display()),
            }
        }
        Ok(Files {
            explicit: explicit.is_some(),
            files,
        })
    }

    /// client-go's GetDefaultFilename: the explicit file, else the only or first
    /// existing `$KUBECONFIG` file (else its last), else `~/.kube/config`.
    fn default_index(&self) -> usize {
        if self.explicit || self.files.len() == 1 {
            return 0;
        }
        self.files
            .iter()
            .position(|f| f.exists)
            .unwrap_or(self.files.len().saturating_sub(1))
    }

    /// Entries of `section` across files, first definition of a name winning.
    fn merged(&self, section: &str) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for f in &self.files {
            for e in f.doc[section].as_array().into_iter().flatten() {
                if !out.iter().any(|o| o["name"] == e["name"]) {
                    out.push(e.clone());
                }
            }
        }
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        out
    }

    fn current_context(&self) -> Option<String> {
        self.files
            .iter()
            .filter_map(|f| f.doc["current-context"].as_str())
            .find(|c| !c.is_empty())
            .map(str::to_string)
    }

    fn save(&self, i: usize) -> Result<()> {
        let f = &self.files[i];
        let mut doc = f.doc.clone();
        if let Some(m) = doc.as_object_mut() {
            m.entry("apiVersion").or_insert(json!("v1"));
            m.entry("kind").or_insert(json!("Config"));
            for s in ["clusters", "contexts", "users"] {
                m.entry(s).or_insert(json!([]));
            }
            m.entry("current-context").or_insert(json!(""));
            m.entry("preferences").or_insert(json!({}));
        }
        if let Some(dir) = f.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = to_yaml(&doc)?;
        let tmp = f.path.with_extension("skiffctl-tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &f.path).with_context(|| format!("writing {}", f.path.display()))?;
        Ok(())
    }
}

/// Runs a `config` subcommand.
pub fn run(global: &GlobalArgs, cmd: ConfigCommand) -> Result<()> {
    let mut files = Files::load(global.kubeconfig.as_deref())?;
    let mut out = std::io::stdout().lock();
    match cmd {
        ConfigCommand::CurrentContext => match files.current_context() {
            Some(c) => writeln!(out, "{c}")?,
            None => bail!("current-context is not set"),
        },
        ConfigCommand::GetContexts {
            names,
            output,
            no_headers,
        } => {
            let current = files.current_context().unwrap_or_default();
            let mut contexts = files.merged("contexts");
            if !names.is_empty() {
                for n in &names {
                    if !contexts.iter().any(|c| c["name"] == json!(n)) {
                        bail!("context {n} not found");
                    }
                }
                contexts.retain(|c| names.iter().any(|n| c["name"] == json!(n)));
            }
            match output.as_deref() {
                Some("name") => {
                    for c in &contexts {
                        writeln!(out, "{}", c["name"].as_str().unwrap_or_default())?;
                    }
                }
                None | Some("") => {
                    let mut rows = Vec::new();
                    if !no_headers {
                        rows.push(
                            ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
                                .map(String::from)
                                .to_vec(),
                        );
                    }
                    for c in &contexts {
                        let name = c["name"].as_str().unwrap_or_default();
                        let s = |k: &str| c["context"][k].as_str().unwrap_or_default().to_string();
                        rows.push(vec![
                            if name == current {
                                "*".into()
                            } else {
                                String::new()
                            },
                            name.to_string(),
                            s("cluster"),
                            s("user"),
                            s("namespace"),
                        ]);
                    }
                    write!(out, "{}", tabwrite(&rows))?;
                }
                Some(o) => bail!("output must be one of '' or 'name': {o}"),
            }
        }
        ConfigCommand::GetClusters => {
            writeln!(out, "NAME")?;
            for c in files.merged("clusters") {
                writeln!(out, "{}", c["name"].as_str().unwrap_or_default())?;
            }
        }
        ConfigCommand::GetUsers => {
            writeln!(out, "NAME")?;
            for c in files.merged("users") {
                writeln!(out, "{}", c["name"].as_str().unwrap_or_default())?;
            }
        }
        ConfigCommand::UseContext { name } => {
            if !files
                .merged("contexts")
                .iter()
                .any(|c| c["name"] == json!(name))
            {
                bail!("no context exists with the name: {name:?}");
            }
            // The first file that already sets a current-context gets the new one.
            let i = if files.explicit {
                0
            } else {
                files
                    .files
                    .iter()
                    .position(|f| {
                        f.doc["current-context"]
                            .as_str()
                            .is_some_and(|c| !c.is_empty())
                    })
                    .unwrap_or_else(|| files.default_index())
            };
            set_field(&mut files.files[i].doc, "current-context", json!(name));
            files.save(i)?;
            writeln!(out, "Switched to context {name:?}.")?;
        }
        ConfigCommand::SetContext(a) => {
            let name = match (a.current, a.name) {
                (true, Some(_)) => bail!("you cannot specify a name and the --current flag"),
                (true, None) => files
                    .current_context()
                    .ok_or_else(|| anyhow!("no current context is set"))?,
                (false, Some(n)) => n,
                (false, None) => bail!("you must specify a non-empty context name or --current"),
            };
            // Modify the context where it is defined; a new one goes to the default file.
            let existing = files.files.iter().position(|f| {
                f.doc["contexts"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["name"] == json!(name)))
            });
            let i = existing.unwrap_or_else(|| files.default_index());
            let doc = &mut files.files[i].doc;
            if !doc["contexts"].is_array() {
                set_field(doc, "contexts", json!([]));
            }
            let contexts = doc["contexts"]
                .as_array_mut()
                .expect("set to an array above");
            let entry = match contexts.iter().position(|c| c["name"] == json!(name)) {
                Some(p) => &mut contexts[p],
                None => {
                    contexts.push(json!({"name": name, "context": {}}));
                    contexts.last_mut().expect("just pushed")
                }
            };
            if !entry["context"].is_object() {
                entry["context"] = json!({});
            }
            for (k, v) in [
                ("cluster", &a.cluster),
                ("user", &a.user),
                ("namespace", &a.namespace),
            ] {
                if let Some(v) = v {
                    entry["context"][k] = json!(v);
                }
            }
            files.save(i)?;
            let verb = if existing.is_some() {
                "modified"
            } else {
                "created"
            };
            writeln!(out, "Context {name:?} {verb}.")?;
        }
        ConfigCommand::View {
            output,
            minify,
            raw,
        } => {
            let current = files.current_context().unwrap_or_default();
            let mut clusters = files.merged("clusters");
            let mut contexts = files.merged("contexts");
            let mut users = files.merged("users");
            if minify {
                if current.is_empty() {
                    bail!("current-context must exist in order to minify");
                }
                contexts.retain(|c| c["name"] == json!(current));
                let ctx = contexts
                    .first()
                    .ok_or_else(|| anyhow!("cannot locate context {current}"))?
                    .clone();
                clusters.retain(|c| c["name"] == ctx["context"]["cluster"]);
                users.retain(|u| u["name"] == ctx["context"]["user"]);
            }
            // kubectl always prints these fields, empty or not.
            for c in &mut contexts {
                for k in ["cluster", "user"] {
                    if c["context"][k].is_null() {
                        c["context"][k] = json!("");
                    }
                }
            }
            for c in &mut clusters {
                if c["cluster"]["server"].is_null() {
                    c["cluster"]["server"] = json!("");
                }
            }
            if !raw {
                for c in &mut clusters {
                    redact(
                        &mut c["cluster"],
                        &["certificate-authority-data"],
                        "DATA+OMITTED",
                    );
                }
                for u in &mut users {
                    redact(
                        &mut u["user"],
                        &["client-certificate-data", "client-key-data"],
                        "DATA+OMITTED",
                    );
                    redact(&mut u["user"], &["token", "password"], "REDACTED");
                }
            }
            // Go prints an empty list as null.
            let list = |v: Vec<Value>| {
                if v.is_empty() {
                    Value::Null
                } else {
                    Value::Array(v)
                }
            };
            let doc = json!({
                "apiVersion": "v1",
                "clusters": list(clusters),
                "contexts": list(contexts),
                "current-context": current,
                "kind": "Config",
                "preferences": {},
                "users": list(users),
            });
            match output.as_deref() {
                None | Some("") | Some("yaml") => write!(out, "{}", to_yaml(&doc)?)?,
                Some("json") => write!(out, "{}", to_json(&doc)?)?,
                Some(o) => bail!("unable to match a printer suitable for the output format {o:?}, allowed formats are: json,yaml"),
            }
        }
    }
    Ok(())
}

/// Adds a cluster, user and context all named `name` for `server` to the kubeconfig
/// kubectl would write to (replacing entries of that name) and makes it the current
/// context, as `kind create cluster` does. Returns the file written.
pub fn add_cluster_context(explicit: Option<&Path>, name: &str, server: &str) -> Result<PathBuf> {
    if let Some(path) = explicit.filter(|p| !p.exists()) {
        std::fs::write(path, "").with_context(|| format!("creating {}", path.display()))?;
    }
    let mut files = Files::load(explicit)?;
    let i = files.default_index();
    let doc = &mut files.files[i].doc;
    let entries = [
        (
            "clusters",
            json!({"name": name, "cluster": {"server": server}}),
        ),
        ("users", json!({"name": name, "user": {}})),
        (
            "contexts",
            json!({"name": name, "context": {"cluster": name, "user": name}}),
        ),
    ];
    for (section, entry) in entries {
        let mut list: Vec<Value> = doc[section].as_array().cloned().unwrap_or_default();
        list.retain(|e| e["name"] != json!(name));
        list.push(entry);
        set_field(doc, section, Value::Array(list));
    }
    set_field(doc, "current-context", json!(name));
    files.save(i)?;
    Ok(files.files[i].path.clone())
}

/// Removes the cluster, user and context named `name` from every kubeconfig file that
/// has them, and the current-context when it names it (`kind delete cluster`).
pub fn remove_cluster_context(explicit: Option<&Path>, name: &str) -> Result<()> {
    if explicit.is_some_and(|p| !p.exists()) {
        return Ok(());
    }
    let mut files = Files::load(explicit)?;
    for i in 0..files.files.len() {
        let doc = &mut files.files[i].doc;
        let mut changed = false;
        for section in ["clusters", "users", "contexts"] {
            if let Some(list) = doc[section].as_array_mut() {
                let before = list.len();
                list.retain(|e| e["name"] != json!(name));
                changed |= list.len() != before;
            }
        }
        if doc["current-context"] == json!(name) {
            set_field(doc, "current-context", json!(""));
            changed = true;
        }
        if changed {
            files.save(i)?;
        }
    }
    Ok(())
}

fn set_field(doc: &mut Value, key: &str, v: Value) {
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    doc[key] = v;
}

fn redact(section: &mut Value, keys: &[&str], with: &str) {
    for k in keys {
        if section.get(*k).is_some_and(|v| !v.is_null()) {
            section[*k] = json!(with);
        }
    }
}
