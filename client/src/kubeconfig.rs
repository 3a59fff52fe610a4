//! Reading kubeconfig files the way kubectl finds them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::client::Config;
use crate::{Error, Result};

/// The parts of a kubeconfig file the client uses.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// Named clusters.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub clusters: Vec<NamedCluster>,
    /// Named contexts (cluster + user + namespace).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub contexts: Vec<NamedContext>,
    /// Named users (credentials).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub users: Vec<NamedUser>,
    /// The context used when none is asked for.
    #[serde(default)]
    pub current_context: Option<String>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A `clusters[]` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct NamedCluster {
    /// Its name.
    pub name: String,
    /// Its settings.
    #[serde(default)]
    pub cluster: Cluster,
}

/// How to reach a cluster.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// The API server URL.
    #[serde(default)]
    pub server: String,
    /// A CA file (TLS; not supported yet).
    pub certificate_authority: Option<String>,
    /// An inline CA bundle (TLS; not supported yet).
    pub certificate_authority_data: Option<String>,
    /// Skip TLS verification (TLS; not supported yet).
    pub insecure_skip_tls_verify: Option<bool>,
}

/// A `contexts[]` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct NamedContext {
    /// Its name.
    pub name: String,
    /// Its settings.
    #[serde(default)]
    pub context: Context,
}

/// A cluster, user and namespace together.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Context {
    /// Name of a `clusters[]` entry.
    #[serde(default)]
    pub cluster: String,
    /// Name of a `users[]` entry.
    pub user: Option<String>,
    /// The default namespace.
    pub namespace: Option<String>,
}

/// A `users[]` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct NamedUser {
    /// Its name.
    pub name: String,
    /// Its credentials.
    #[serde(default)]
    pub user: AuthInfo,
}

/// Credentials. Only bearer tokens are used today; client certificates need TLS.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct AuthInfo {
    /// A bearer token.
    pub token: Option<String>,
    /// A file holding a bearer token.
    #[serde(rename = "tokenFile")]
    pub token_file: Option<String>,
    /// A client certificate file (TLS; not supported yet).
    pub client_certificate: Option<String>,
    /// An inline client certificate (TLS; not supported yet).
    pub client_certificate_data: Option<String>,
    /// A client key file (TLS; not supported yet).
    pub client_key: Option<String>,
    /// An inline client key (TLS; not supported yet).
    pub client_key_data: Option<String>,
}

impl Kubeconfig {
    /// Parses one kubeconfig document.
    pub fn from_yaml(text: &str) -> Result<Self, serde_norway::Error> {
        serde_norway::from_str(text)
    }

    /// Merges `other` under `self` as kubectl merges `$KUBECONFIG` files: the first file
    /// to name a cluster, context or user, or to set current-context, wins.
    pub fn merge(&mut self, other: Kubeconfig) {
        fn merge_named<T>(into: &mut Vec<T>, from: Vec<T>, name: impl Fn(&T) -> &str) {
            for item in from {
                if !into.iter().any(|i| name(i) == name(&item)) {
                    into.push(item);
                }
            }
        }
        merge_named(&mut self.clusters, other.clusters, |c| &c.name);
        merge_named(&mut self.contexts, other.contexts, |c| &c.name);
        merge_named(&mut self.users, other.users, |u| &u.name);
        if self.current_context.as_deref().is_none_or(str::is_empty) {
            self.current_context = other.current_context;
        }
    }

    /// The client [`Config`] for `context` (the current context when None); `source`
    /// names the file(s) this came from in errors.
    pub fn to_config(&self, context: Option<&str>, source: &Path) -> Result<Config> {
        let fail = |message: String| Error::Kubeconfig {
            path: source.to_path_buf(),
            message,
        };
        self.resolve(context)
            .map_err(fail)?
            .map_err(Error::TlsNotSupported)
    }

    // Outer error: the kubeconfig is wrong; inner error: it asks for TLS.
    fn resolve(&self, context: Option<&str>) -> Result<Result<Config, String>, String> {
        let name = match context {
            Some(c) => c,
            None => self
                .current_context
                .as_deref()
                .filter(|c| !c.is_empty())
                .ok_or("no current-context is set and no context was asked for")?,
        };
        let ctx = &self
            .contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("context {name:?} not found"))?
            .context;
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .ok_or_else(|| format!("cluster {:?} of context {name:?} not found", ctx.cluster))?
            .cluster;
        if cluster.server.is_empty() {
            return Err(format!("cluster {:?} has no server", ctx.cluster));
        }
        let user = match ctx.user.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => Some(
                &self
                    .users
                    .iter()
                    .find(|n| n.name == u)
                    .ok_or_else(|| format!("user {u:?} of context {name:?} not found"))?
                    .user,
            ),
            None => None,
        };

        let mut config = Config::new(&cluster.server);
        if let Some(ns) = ctx.namespace.as_deref().filter(|n| !n.is_empty()) {
            config.default_namespace = ns.to_string();
        }
        if let Some(user) = user {
            if user.client_certificate.is_some() || user.client_certificate_data.is_some() {
                return Ok(Err(format!(
                    "user {:?} authenticates with a client certificate",
                    ctx.user.as_deref().unwrap_or_default()
                )));
            }
            config.bearer_token = match (&user.token, &user.token_file) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(file)) => Some(
                    std::fs::read_to_string(file)
                        .map_err(|e| format!("reading tokenFile {file}: {e}"))?
                        .trim()
                        .to_string(),
                ),
                (None, None) => None,
            };
        }
        if cluster.server.starts_with("https://") {
            return Ok(Err(format!(
                "cluster {:?} has an https server ({})",
                ctx.cluster, cluster.server
            )));
        }
        Ok(Ok(config))
    }
}

/// The kubeconfig files to read, in kubectl's order: the flag, else every file of
/// `$KUBECONFIG`, else `~/.kube/config`.
pub fn kubeconfig_paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    match std::env::var_os("HOME") {
        Some(home) => vec![Path::new(&home).join(".kube").join("config")],
        None => vec![PathBuf::from(".kube/config")],
    }
}

impl Kubeconfig {
    /// Reads and merges the files kubectl would read (see [`kubeconfig_paths`]): the
    /// file at `path` (which must exist), else the files of `$KUBECONFIG` (missing ones
    /// skipped), else `~/.kube/config`. Also returns the files' names joined by `:`,
    /// for messages.
    pub fn load(path: Option<&Path>) -> Result<(Kubeconfig, PathBuf)> {
        let paths = kubeconfig_paths(path);
        let shown = PathBuf::from(
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        );
        let mut merged: Option<Kubeconfig> = None;
        for p in &paths {
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                // kubectl skips missing $KUBECONFIG entries; an explicit file must exist.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.is_none() => continue,
                Err(e) => {
                    return Err(Error::Kubeconfig {
                        path: p.clone(),
                        message: e.to_string(),
                    })
                }
            };
            let parsed = Kubeconfig::from_yaml(&text).map_err(|e| Error::Kubeconfig {
                path: p.clone(),
                message: e.to_string(),
            })?;
            match &mut merged {
                Some(m) => m.merge(parsed),
                None => merged = Some(parsed),
            }
        }
        let merged = merged.ok_or_else(|| Error::Kubeconfig {
            path: shown.clone(),
            message: "no kubeconfig file found".into(),
        })?;
        Ok((merged, shown))
    }
}

impl Config {
    /// The config kubectl would use: the file at `path` (`--kubeconfig`), else the files
    /// of `$KUBECONFIG` merged (missing ones skipped), else `~/.kube/config`; then
    /// `context` or the current context → cluster server and namespace.
    pub fn from_kubeconfig(path: Option<&Path>, context: Option<&str>) -> Result<Self> {
        let (merged, shown) = Kubeconfig::load(path)?;
        merged.to_config(context, &shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: http://127.0.0.1:6443
- name: prod
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: AAAA
contexts:
- name: lab
  context:
    cluster: lab
    user: admin
    namespace: kube-system
- name: prod
  context:
    cluster: prod
    user: cert
current-context: lab
users:
- name: admin
  user:
    token: abc
- name: cert
  user:
    client-certificate-data: AAAA
    client-key-data: BBBB
preferences: {}
"#;

    #[test]
    fn current_context_gives_server_namespace_and_token() {
        let kc = Kubeconfig::from_yaml(CONFIG).unwrap();
        let c = kc.to_config(None, Path::new("kc")).unwrap();
        assert_eq!(c.cluster_url, "http://127.0.0.1:6443");
        assert_eq!(c.default_namespace, "kube-system");
        assert_eq!(c.bearer_token.as_deref(), Some("abc"));
    }

    #[test]
    fn tls_contexts_are_refused_clearly() {
        let kc = Kubeconfig::from_yaml(CONFIG).unwrap();
        let e = kc.to_config(Some("prod"), Path::new("kc")).unwrap_err();
        assert!(matches!(e, Error::TlsNotSupported(_)), "{e}");
        assert!(e.to_string().contains("client certificate"), "{e}");
    }

    #[test]
    fn missing_pieces_are_named() {
        let kc = Kubeconfig::from_yaml(CONFIG).unwrap();
        let err =
            |kc: &Kubeconfig, ctx| kc.to_config(ctx, Path::new("kc")).unwrap_err().to_string();
        assert_eq!(
            err(&kc, Some("nope")),
            "kubeconfig kc: context \"nope\" not found"
        );
        let kc = Kubeconfig::from_yaml(
            "clusters: null\ncontexts:\n- name: x\n  context: {cluster: c}\n",
        )
        .unwrap();
        assert!(err(&kc, None).contains("no current-context"));
        assert!(err(&kc, Some("x")).contains("cluster \"c\""));
    }

    #[test]
    fn merge_keeps_the_first_definition() {
        let mut a = Kubeconfig::from_yaml(
            "clusters:\n- name: lab\n  cluster: {server: 'http://a:1'}\ncurrent-context: ''\n",
        )
        .unwrap();
        let b = Kubeconfig::from_yaml(CONFIG).unwrap();
        a.merge(b);
        assert_eq!(a.current_context.as_deref(), Some("lab"));
        let c = a.to_config(None, Path::new("kc")).unwrap();
        assert_eq!(c.cluster_url, "http://a:1");
        assert_eq!(c.default_namespace, "kube-system");
    }

    #[test]
    fn files_are_read_and_errors_name_them() {
        let dir = std::env::temp_dir().join(format!("skiff-client-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("config");
        std::fs::write(&good, CONFIG).unwrap();
        let c = Config::from_kubeconfig(Some(&good), None).unwrap();
        assert_eq!(c.cluster_url, "http://127.0.0.1:6443");
        let e = Config::from_kubeconfig(Some(&good), Some("prod")).unwrap_err();
        assert!(matches!(e, Error::TlsNotSupported(_)), "{e}");
        assert!(e
            .to_string()
            .starts_with("TLS is not supported by skiff's client yet"));

        let bad = dir.join("bad");
        std::fs::write(&bad, "clusters: [").unwrap();
        let e = Config::from_kubeconfig(Some(&bad), None).unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
        let e = Config::from_kubeconfig(Some(&dir.join("missing")), None).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
