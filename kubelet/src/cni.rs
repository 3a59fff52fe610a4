//! CNI: the network configuration from `--cni-conf-dir` and the plugins from
//! `--cni-bin-dir`, run as the CNI spec says (ADD in order, DEL in reverse, each with
//! the previous result). What ADD was given and returned is kept in the pod's
//! directory, so DEL works even after the configuration changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::{Error, Result};

/// A network configuration list.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkList {
    /// `name`.
    pub name: String,
    /// `cniVersion`.
    pub cni_version: String,
    /// The plugin configurations, in order.
    pub plugins: Vec<Value>,
}

impl NetworkList {
    /// Parses a `.conflist`, or a single-plugin `.conf` (wrapped into a list).
    pub fn parse(text: &str) -> Result<NetworkList> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| Error::Cni(format!("not JSON: {e}")))?;
        let name = v["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::Cni("no network name".into()))?
            .to_string();
        let cni_version = v["cniVersion"].as_str().unwrap_or("0.4.0").to_string();
        let plugins = match v.get("plugins") {
            Some(Value::Array(p)) if !p.is_empty() => p.clone(),
            Some(_) => return Err(Error::Cni(format!("network {name}: plugins is empty"))),
            None => vec![v.clone()],
        };
        for p in &plugins {
            if p["type"]
                .as_str()
                .is_none_or(|t| t.is_empty() || t.contains('/'))
            {
                return Err(Error::Cni(format!(
                    "network {name}: a plugin without a valid type"
                )));
            }
        }
        Ok(NetworkList {
            name,
            cni_version,
            plugins,
        })
    }

    /// The network of a directory: the first file by name ending in .conflist, .conf
    /// or .json, as the kubelet (libcni) picks it.
    pub fn load(dir: &Path) -> Result<NetworkList> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::Cni(format!("reading --cni-conf-dir {}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        let first = files.first().ok_or_else(|| {
            Error::Cni(format!(
                "no network configuration in {} (netd writes it)",
                dir.display()
            ))
        })?;
        let text = std::fs::read_to_string(first).map_err(|e| Error::io("reading", first, e))?;
        NetworkList::parse(&text).map_err(|e| Error::Cni(format!("{}: {e}", first.display())))
    }
}

/// What a pod's network needs to know about the pod.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// CNI_CONTAINERID: the pod uid.
    pub container_id: String,
    /// CNI_NETNS.
    pub netns: PathBuf,
    /// CNI_IFNAME.
    pub ifname: String,
    /// K8S_POD_NAMESPACE.
    pub pod_namespace: String,
    /// K8S_POD_NAME.
    pub pod_name: String,
}

/// Runs CNI plugins.
#[derive(Clone, Debug)]
pub struct Cni {
    /// Directories holding the plugin binaries.
    pub bin_dirs: Vec<PathBuf>,
    /// The configuration directory.
    pub conf_dir: PathBuf,
}

impl Cni {
    fn find(&self, plugin: &str) -> Result<PathBuf> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::Cni(format!(
                    "plugin {plugin:?} not found in {}",
                    self.bin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ))
            })
    }

    async fn exec(
        &self,
        command: &str,
        net: &NetworkList,
        plugin: &Value,
        prev: Option<&Value>,
        a: &Attachment,
    ) -> Result<Value> {
        let kind = plugin["type"].as_str().unwrap_or_default();
        let binary = self.find(kind)?;
        let mut conf = plugin.clone();
        conf["name"] = json!(net.name);
        conf["cniVersion"] = json!(net.cni_version);
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        let stdin = serde_json::to_vec(&conf).map_err(|e| Error::Cni(e.to_string()))?;
        let path = self
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut child = tokio::process::Command::new(&binary)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &a.container_id)
            .env("CNI_NETNS", &a.netns)
            .env("CNI_IFNAME", &a.ifname)
            .env("CNI_PATH", path)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    a.pod_namespace, a.pod_name, a.container_id, a.container_id
                ),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Cni(format!("running {}: {e}", binary.display())))?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(&stdin)
                .await
                .map_err(|e| Error::Cni(format!("{kind} {command}: writing its config: {e}")))?;
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .map_err(|_| Error::Cni(format!("{kind} {command}: no answer within 60 s")))?
            .map_err(|e| Error::Cni(format!("{kind} {command}: {e}")))?;
        let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if !out.status.success() {
            let msg = parsed
                .as_ref()
                .map(|v| {
                    format!(
                        "{} {}",
                        v["msg"].as_str().unwrap_or(""),
                        v["details"].as_str().unwrap_or("")
                    )
                })
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            return Err(Error::Cni(format!(
                "{kind} {command}: {} ({})",
                msg.trim(),
                out.status
            )));
        }
        Ok(parsed.unwrap_or(Value::Null))
    }

    /// Adds the pod to the network; returns the network used and the final result.
    pub async fn add(&self, a: &Attachment) -> Result<(NetworkList, Value)> {
        let net = NetworkList::load(&self.conf_dir)?;
        let mut prev: Option<Value> = None;
        for plugin in &net.plugins {
            let result = self.exec("ADD", &net, plugin, prev.as_ref(), a).await?;
            if !result.is_null() {
                prev = Some(result);
            }
        }
        Ok((net, prev.unwrap_or(Value::Null)))
    }

    /// Removes the pod from a network it was added to, plugins in reverse order.
    pub async fn del(&self, net: &NetworkList, result: &Value, a: &Attachment) -> Result<()> {
        let prev = (!result.is_null()).then_some(result);
        for plugin in net.plugins.iter().rev() {
            self.exec("DEL", net, plugin, prev, a).await?;
        }
        Ok(())
    }
}

/// The first IP address of a CNI result (without its prefix length).
pub fn result_ip(result: &Value) -> Option<String> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_single_confs() {
        let l = NetworkList::parse(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"loopback"}]}"#).unwrap();
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.cni_version, "1.0.0");
        let s = NetworkList::parse(r#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(s.plugins.len(), 1);
        assert!(NetworkList::parse(r#"{"name":"n","plugins":[{"type":"../x"}]}"#).is_err());
        assert!(NetworkList::parse(r#"{"plugins":[]}"#).is_err());
    }

    #[test]
    fn ip_of_a_result() {
        let r: Value =
            serde_json::from_str(r#"{"ips":[{"address":"10.22.0.5/16","gateway":"10.22.0.1"}]}"#)
                .unwrap();
        assert_eq!(result_ip(&r).as_deref(), Some("10.22.0.5"));
        assert_eq!(result_ip(&Value::Null), None);
    }
}
