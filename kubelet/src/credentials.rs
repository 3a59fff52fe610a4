//! Registry credentials from a pod's `imagePullSecrets`: Secrets of type
//! `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, `{"auths": {KEY: {…}}}`) or
//! `kubernetes.io/dockercfg` (`.dockercfg`, `{KEY: {…}}`), each entry a `username` and
//! `password` or an `auth` of base64 `user:password`.
//!
//! Keys match images as the kubelet's keyring matches them: a key is a registry host,
//! optionally with a scheme, a port and a path prefix (`/v1/` and `/v2/` stand for the
//! bare host, as Docker treats them), and its host labels may be globs
//! (`*.example.com`). More specific keys are tried first; `index.docker.io` serves
//! images on Docker Hub.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

/// A username and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// `secret/key`, for messages (the password never is).
    pub source: String,
    /// The user.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("source", &self.source)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The `Authorization` header value of HTTP basic authentication.
    pub fn basic_authorization(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// The credentials of a pod's pull secrets, by the key they are for.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    /// (normalised key, credential), most specific key first once sorted.
    entries: Vec<(String, Credential)>,
}

/// Docker Hub's host as keys name it.
const DEFAULT_REGISTRY_KEY: &str = "index.docker.io";

impl Keyring {
    /// Whether no secret gave a credential.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the credentials of Secret `name` (its decoded data). A Secret holding
    /// neither key, or one that does not parse, is an error naming what is wrong; the
    /// keyring keeps what the other secrets gave.
    pub fn add_secret(
        &mut self,
        name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), String> {
        let (key, auths) = if let Some(raw) = data.get(".dockerconfigjson") {
            let parsed: DockerConfigJson = serde_json::from_slice(raw)
                .map_err(|e| format!("secret {name}: .dockerconfigjson does not parse: {e}"))?;
            (".dockerconfigjson", parsed.auths)
        } else if let Some(raw) = data.get(".dockercfg") {
            let parsed: BTreeMap<String, Entry> = serde_json::from_slice(raw)
                .map_err(|e| format!("secret {name}: .dockercfg does not parse: {e}"))?;
            (".dockercfg", parsed)
        } else {
            return Err(format!(
                "secret {name} has neither .dockerconfigjson nor .dockercfg (make it with kubectl create secret docker-registry)"
            ));
        };
        for (location, entry) in auths {
            let (username, password) = match (entry.username, entry.password, entry.auth) {
                (Some(u), Some(p), _) if !u.is_empty() => (u, p),
                (_, _, Some(auth)) if !auth.is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| {
                            format!("secret {name}: {key}: the auth of {location:?} is not base64 of user:password")
                        })?;
                    let (u, p) = decoded.split_once(':').ok_or_else(|| {
                        format!("secret {name}: {key}: the auth of {location:?} has no ':' between user and password")
                    })?;
                    (u.to_string(), p.to_string())
                }
                _ => continue,
            };
            self.entries.push((
                normalise_key(&location),
                Credential {
                    source: format!("{name}/{key}"),
                    username,
                    password,
                },
            ));
        }
        // Reverse order puts `host/path` before `host`, as the kubelet's keyring does.
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(())
    }

    /// The credentials for repository `path` on registry `host` (with its port), most
    /// specific first.
    pub fn lookup(&self, host: &str, path: &str) -> Vec<Credential> {
        let target = format!("{host}/{path}");
        let found: Vec<Credential> = self
            .entries
            .iter()
            .filter(|(key, _)| key_matches(key, &target))
            .map(|(_, c)| c.clone())
            .collect();
        if !found.is_empty() {
            return found;
        }
        if matches!(
            host,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        ) {
            return self
                .entries
                .iter()
                .filter(|(key, _)| key == DEFAULT_REGISTRY_KEY)
                .map(|(_, c)| c.clone())
                .collect();
        }
        Vec::new()
    }
}

/// A key without its scheme, with `/v1/…` and `/v2/…` paths read as the bare host.
fn normalise_key(location: &str) -> String {
    let bare = location
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = match bare.split_once('/') {
        Some((h, p)) => (h, p),
        None => (bare, ""),
    };
    // Docker reads `/v1/…` and `/v2/…` as the registry's own paths.
    let path = path
        .strip_prefix("v1/")
        .or_else(|| path.strip_prefix("v2/"))
        .unwrap_or(path)
        .trim_matches('/');
    if path.is_empty() {
        host.to_ascii_lowercase()
    } else {
        format!("{}/{path}", host.to_ascii_lowercase())
    }
}

/// Whether normalised `key` covers `target` (`host[:port]/path`): the same number of
/// host labels, each equal or matched by the key's glob, the same port, and the key's
/// path a prefix of the target's.
fn key_matches(key: &str, target: &str) -> bool {
    let (key_host, key_path) = key.split_once('/').unwrap_or((key, ""));
    let (target_host, target_path) = target.split_once('/').unwrap_or((target, ""));
    let split_port = |h: &str| match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            (name.to_string(), port.to_string())
        }
        _ => (h.to_string(), String::new()),
    };
    let (key_name, key_port) = split_port(key_host);
    let (target_name, target_port) = split_port(&target_host.to_ascii_lowercase());
    if key_port != target_port {
        return false;
    }
    let key_labels: Vec<&str> = key_name.split('.').collect();
    let target_labels: Vec<&str> = target_name.split('.').collect();
    if key_labels.len() != target_labels.len()
        || !key_labels
            .iter()
            .zip(&target_labels)
            .all(|(k, t)| glob_matches(k, t))
    {
        return false;
    }
    target_path.starts_with(key_path)
}

/// `*` matches any run of characters within one label.
fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(after) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=after.len())
                .filter(|&i| after.is_char_boundary(i))
                .any(|i| glob_matches(rest, &after[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: &str, json: &str) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(key.to_string(), json.as_bytes().to_vec())])
    }

    fn users(found: &[Credential]) -> Vec<&str> {
        found.iter().map(|c| c.username.as_str()).collect()
    }

    #[test]
    fn both_secret_types_and_both_entry_forms_are_read() {
        let mut k = Keyring::default();
        // auth is base64("bob:s3cr:et"): the password keeps its colons.
        k.add_secret(
            "json",
            &secret(
                ".dockerconfigjson",
                r#"{"auths": {"https://reg.example:5000/v1/": {"auth": "Ym9iOnMzY3I6ZXQ="}}}"#,
            ),
        )
        .unwrap();
        k.add_secret(
            "cfg",
            &secret(
                ".dockercfg",
                r#"{"other.example": {"username": "ann", "password": "pw", "email": "a@b"}}"#,
            ),
        )
        .unwrap();
        let bob = k.lookup("reg.example:5000", "team/app");
        assert_eq!(users(&bob), ["bob"]);
        assert_eq!(bob[0].password, "s3cr:et");
        assert_eq!(bob[0].source, "json/.dockerconfigjson");
        assert_eq!(bob[0].basic_authorization(), "Basic Ym9iOnMzY3I6ZXQ=");
        assert_eq!(users(&k.lookup("other.example", "x")), ["ann"]);
        // The port is part of the match.
        assert!(k.lookup("reg.example", "team/app").is_empty());
        assert!(
            !format!("{bob:?}").contains("s3cr"),
            "Debug hides the password"
        );
    }

    #[test]
    fn keys_match_as_the_kubelets_keyring_matches_them() {
        let mut k = Keyring::default();
        let json = r#"{"auths": {
            "reg.example": {"username": "host", "password": "p"},
            "reg.example/team": {"username": "team", "password": "p"},
            "*.corp.example": {"username": "glob", "password": "p"},
            "https://index.docker.io/v1/": {"username": "hub", "password": "p"}
        }}"#;
        k.add_secret("s", &secret(".dockerconfigjson", json))
            .unwrap();
        assert_eq!(
            users(&k.lookup("reg.example", "team/app")),
            ["team", "host"]
        );
        assert_eq!(users(&k.lookup("reg.example", "other/app")), ["host"]);
        assert_eq!(users(&k.lookup("a.corp.example", "x")), ["glob"]);
        assert!(
            k.lookup("a.b.corp.example", "x").is_empty(),
            "one label per *"
        );
        assert_eq!(users(&k.lookup("docker.io", "library/busybox")), ["hub"]);
        assert!(k.lookup("quay.io", "x").is_empty());
    }

    #[test]
    fn bad_secrets_say_what_is_wrong() {
        let mut k = Keyring::default();
        let e = k.add_secret("plain", &secret("password", "x")).unwrap_err();
        assert!(
            e.contains("neither .dockerconfigjson nor .dockercfg"),
            "{e}"
        );
        let e = k
            .add_secret("broken", &secret(".dockerconfigjson", "{"))
            .unwrap_err();
        assert!(
            e.contains("secret broken: .dockerconfigjson does not parse"),
            "{e}"
        );
        let e = k
            .add_secret(
                "nocolon",
                &secret(".dockerconfigjson", r#"{"auths": {"r": {"auth": "Ym9i"}}}"#),
            )
            .unwrap_err();
        assert!(e.contains("has no ':'"), "{e}");
        assert!(k.is_empty());
    }

    #[test]
    fn globs_stay_within_a_label() {
        assert!(glob_matches("*", "abc"));
        assert!(glob_matches("a*c", "abbc"));
        assert!(!glob_matches("a*c", "abd"));
        assert!(glob_matches("*-reg", "eu-reg"));
    }
}
