//! Per-registry settings from `--registry-config`: the version 2 format of
//! containers-registries.conf(5), the file CRI-O and podman read, in the subset the
//! kubelet honours.
//!
//! ```toml
//! [[registry]]
//! prefix = "example.com/foo"          # optional; defaults to location
//! location = "10.77.0.1:5000/bar"     # optional; defaults to prefix
//! insecure = true                     # TLS without certificate checks, or plain HTTP
//! blocked = false                     # true: pulls of matching images are refused
//! mirror-by-digest-only = false       # true: mirrors only for references by digest
//!
//! [[registry.mirror]]                 # tried in order, before location
//! location = "mirror.local:5000/foo"
//! insecure = true
//! pull-from-mirror = "all"            # or "digest-only", "tag-only"
//! ```
//!
//! The table whose prefix is the longest match of the image's repository is used, as
//! containers/image does. Anything else in the file (other keys, other tables,
//! wildcard prefixes, the version 1 format) is refused at startup with the file, line
//! and key, never ignored.

use std::path::Path;

use crate::reference::{is_loopback_host, Reference};
use crate::{Error, Result};

/// The parsed file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The `[[registry]]` tables, in file order.
    pub registries: Vec<Registry>,
}

/// One `[[registry]]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    /// The repository prefix this table applies to (`host[:port][/namespace…]`).
    pub prefix: String,
    /// Where the prefix's repositories really are.
    pub location: String,
    /// Plain HTTP allowed.
    pub insecure: bool,
    /// Pulls of matching images are refused.
    pub blocked: bool,
    /// Mirrors only serve references by digest.
    pub mirror_by_digest_only: bool,
    /// `[[registry.mirror]]` tables, in order.
    pub mirrors: Vec<Mirror>,
}

/// One `[[registry.mirror]]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirror {
    /// Where the mirror's copy of the prefix is.
    pub location: String,
    /// Plain HTTP allowed.
    pub insecure: bool,
    /// Which references the mirror serves.
    pub pull_from_mirror: PullFromMirror,
}

/// A mirror's `pull-from-mirror`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullFromMirror {
    /// Every reference.
    #[default]
    All,
    /// Only references by digest.
    DigestOnly,
    /// Only references by tag.
    TagOnly,
}

/// One place to try a pull from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Registry host (and port).
    pub host: String,
    /// Repository path inside it.
    pub path: String,
    /// HTTPS without certificate checks, or plain HTTP, allowed (containers/image's
    /// `insecure`): the kubelet tries HTTPS first.
    pub insecure: bool,
    /// Whether this is a mirror (for messages).
    pub mirror: bool,
}

impl Endpoint {
    /// The base URL of the registry's HTTP API without trying TLS: plain HTTP when
    /// allowed or on loopback (as Docker treats loopback), Docker Hub's API on
    /// registry-1.docker.io, else HTTPS. (For insecure endpoints the puller tries HTTPS
    /// first.)
    pub fn registry_url(&self) -> String {
        if self.insecure || is_loopback_host(&self.host) {
            format!("http://{}", self.host)
        } else if self.host == "docker.io" {
            "https://registry-1.docker.io".to_string()
        } else {
            format!("https://{}", self.host)
        }
    }

    /// `host/path`, for messages.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }
}

/// What a line of the file is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Top,
    Registry,
    Mirror,
}

impl RegistryConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<RegistryConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("--registry-config {}: {e}", path.display())))?;
        RegistryConfig::parse(&path.display().to_string(), &text)
    }

    /// Parses the text of a file named `file` (for messages).
    pub fn parse(file: &str, text: &str) -> Result<RegistryConfig> {
        let err = |line: usize, key: &str, message: String| {
            let at = if key.is_empty() {
                format!("{file}:{line}")
            } else {
                format!("{file}:{line}: {key}")
            };
            Error::Config(format!("registry config {at}: {message}"))
        };
        let mut registries: Vec<(usize, Registry, Vec<&'static str>)> = Vec::new();
        let mut mirror_keys: Vec<&'static str> = Vec::new();
        let mut section = Section::Top;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                match line {
                    "[[registry]]" => {
                        registries.push((n, Registry::default(), Vec::new()));
                        section = Section::Registry;
                    }
                    "[[registry.mirror]]" => {
                        let Some((_, r, _)) = registries.last_mut() else {
                            return Err(err(
                                n,
                                "",
                                "[[registry.mirror]] before any [[registry]]".into(),
                            ));
                        };
                        r.mirrors.push(Mirror::default());
                        mirror_keys.clear();
                        section = Section::Mirror;
                    }
                    _ if line.starts_with("[registries.") => {
                        return Err(err(
                            n,
                            "",
                            format!("{line}: the version 1 format is not supported; write [[registry]] tables (containers-registries.conf(5) version 2)"),
                        ));
                    }
                    _ => {
                        return Err(err(
                            n,
                            "",
                            format!("table {line} is not supported (only [[registry]] and [[registry.mirror]])"),
                        ));
                    }
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(err(n, "", format!("{line:?} is not `key = value`")));
            };
            let key = key.trim();
            let value = value.trim();
            let string = || parse_string(value).map_err(|m| err(n, key, m));
            let boolean = || match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(err(n, key, format!("{value} is not true or false"))),
            };
            match section {
                Section::Top => {
                    let why = match key {
                        "unqualified-search-registries" | "short-name-mode" => {
                            "not supported: the kubelet names short images docker.io/library/…, as Kubernetes does"
                        }
                        "credential-helpers" => {
                            "not supported: credentials come from the pod's imagePullSecrets"
                        }
                        _ => "unknown key (only [[registry]] tables are supported)",
                    };
                    return Err(err(n, key, why.into()));
                }
                Section::Registry => {
                    let Some((_, r, seen)) = registries.last_mut() else {
                        return Err(err(n, key, "outside a [[registry]] table".into()));
                    };
                    let k: &'static str = match key {
                        "prefix" => {
                            r.prefix = string()?;
                            check_repository(&r.prefix).map_err(|m| err(n, key, m))?;
                            "prefix"
                        }
                        "location" => {
                            r.location = string()?;
                            check_repository(&r.location).map_err(|m| err(n, key, m))?;
                            "location"
                        }
                        "insecure" => {
                            r.insecure = boolean()?;
                            "insecure"
                        }
                        "blocked" => {
                            r.blocked = boolean()?;
                            "blocked"
                        }
                        "mirror-by-digest-only" => {
                            r.mirror_by_digest_only = boolean()?;
                            "mirror-by-digest-only"
                        }
                        _ => {
                            return Err(err(
                                n,
                                key,
                                "unknown key in [[registry]] (known: prefix, location, insecure, blocked, mirror-by-digest-only)".into(),
                            ))
                        }
                    };
                    if seen.contains(&k) {
                        return Err(err(n, key, "set twice in one table".into()));
                    }
                    seen.push(k);
                }
                Section::Mirror => {
                    let Some(m) = registries
                        .last_mut()
                        .and_then(|(_, r, _)| r.mirrors.last_mut())
                    else {
                        return Err(err(n, key, "outside a [[registry.mirror]] table".into()));
                    };
                    let k: &'static str = match key {
                        "location" => {
                            m.location = string()?;
                            check_repository(&m.location).map_err(|e| err(n, key, e))?;
                            "location"
                        }
                        "insecure" => {
                            m.insecure = boolean()?;
                            "insecure"
                        }
                        "pull-from-mirror" => {
                            m.pull_from_mirror = match string()?.as_str() {
                                "all" => PullFromMirror::All,
                                "digest-only" => PullFromMirror::DigestOnly,
                                "tag-only" => PullFromMirror::TagOnly,
                                other => {
                                    return Err(err(
                                        n,
                                        key,
                                        format!("{other:?} is not all, digest-only or tag-only"),
                                    ))
                                }
                            };
                            "pull-from-mirror"
                        }
                        _ => {
                            return Err(err(
                                n,
                                key,
                                "unknown key in [[registry.mirror]] (known: location, insecure, pull-from-mirror)".into(),
                            ))
                        }
                    };
                    if mirror_keys.contains(&k) {
                        return Err(err(n, key, "set twice in one table".into()));
                    }
                    mirror_keys.push(k);
                }
            }
        }
        let mut out: Vec<Registry> = Vec::new();
        for (n, mut r, _) in registries {
            if r.prefix.is_empty() && r.location.is_empty() {
                return Err(err(
                    n,
                    "[[registry]]",
                    "needs a prefix or a location".into(),
                ));
            }
            if r.prefix.is_empty() {
                r.prefix = r.location.clone();
            }
            if r.location.is_empty() {
                r.location = r.prefix.clone();
            }
            for m in &r.mirrors {
                if m.location.is_empty() {
                    return Err(err(
                        n,
                        "[[registry.mirror]]",
                        format!("a mirror of {} has no location", r.prefix),
                    ));
                }
            }
            if out.iter().any(|o| o.prefix == r.prefix) {
                return Err(err(
                    n,
                    "[[registry]] prefix",
                    format!("{} has two [[registry]] tables", r.prefix),
                ));
            }
            out.push(r);
        }
        Ok(RegistryConfig { registries: out })
    }

    /// The table for `reference`: the longest prefix that is its repository or a
    /// parent of it.
    pub fn find(&self, reference: &Reference) -> Option<&Registry> {
        let repo = reference.repository();
        self.registries
            .iter()
            .filter(|r| {
                repo == r.prefix
                    || repo
                        .strip_prefix(&r.prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|r| r.prefix.len())
    }

    /// Where to pull `reference` from, in order: the mirrors that serve it, then its
    /// location. An error when it is blocked.
    pub fn endpoints(&self, reference: &Reference) -> Result<Vec<Endpoint>> {
        let Some(r) = self.find(reference) else {
            return Ok(vec![Endpoint {
                host: reference.domain.clone(),
                path: reference.path.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        if r.blocked {
            return Err(Error::Image {
                image: reference.name(),
                message: format!("pulls from {} are blocked by --registry-config", r.prefix),
            });
        }
        let rest = &reference.repository()[r.prefix.len()..];
        let rewrite = |location: &str, insecure: bool, mirror: bool| {
            let full = format!("{location}{rest}");
            let (host, path) = full.split_once('/').unwrap_or((full.as_str(), ""));
            Endpoint {
                host: host.to_string(),
                path: path.to_string(),
                insecure,
                mirror,
            }
        };
        let by_digest = reference.digest.is_some();
        let mut out: Vec<Endpoint> = r
            .mirrors
            .iter()
            .filter(|_| by_digest || !r.mirror_by_digest_only)
            .filter(|m| match m.pull_from_mirror {
                PullFromMirror::All => true,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            })
            .map(|m| rewrite(&m.location, m.insecure, true))
            .collect();
        out.push(rewrite(&r.location, r.insecure, false));
        if let Some(e) = out.iter().find(|e| e.path.is_empty()) {
            return Err(Error::Image {
                image: reference.name(),
                message: format!(
                    "--registry-config maps it to {}, a registry without a repository path; give the location a path",
                    e.host
                ),
            });
        }
        Ok(out)
    }
}

/// The line without its `#` comment (a `#` inside a quoted string stays).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return &line[..i],
            None => {}
        }
    }
    line
}

/// A TOML basic ("…", with \" and \\ escapes) or literal ('…') string.
fn parse_string(value: &str) -> std::result::Result<String, String> {
    let not = || format!("{value} is not a quoted string");
    if let Some(inner) = value.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'').ok_or_else(not)?;
        if inner.contains('\'') {
            return Err(not());
        }
        return Ok(inner.to_string());
    }
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(not)?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                other => {
                    return Err(format!(
                        "escape \\{} is not supported in {value}",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            },
            '"' => return Err(not()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A prefix or location: `host[:port][/namespace…]`, no scheme, tag, digest or wildcard.
fn check_repository(s: &str) -> std::result::Result<(), String> {
    if s.contains("://") {
        return Err(format!(
            "{s:?}: write host[:port][/path] without a scheme (insecure = true allows plain HTTP)"
        ));
    }
    if s.starts_with("*.") {
        return Err(format!("{s:?}: wildcard prefixes are not supported"));
    }
    if s.contains('@') {
        return Err(format!("{s:?}: a digest is not supported here"));
    }
    let (host, path) = s.split_once('/').unwrap_or((s, ""));
    if host.is_empty() || s.ends_with('/') || s.chars().any(|c| c.is_whitespace()) {
        return Err(format!("{s:?} is not host[:port][/path]"));
    }
    if path.contains(':') {
        return Err(format!("{s:?}: a tag is not supported here"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<RegistryConfig, String> {
        RegistryConfig::parse("r.conf", text).map_err(|e| e.to_string())
    }

    fn reference(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn the_lab_registry_is_plain_http() {
        let c = parse("[[registry]]\nlocation = \"10.77.0.1:5000\"\ninsecure = true\n").unwrap();
        let e = c
            .endpoints(&reference("10.77.0.1:5000/skiff-test/busybox:1"))
            .unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].registry_url(), "http://10.77.0.1:5000");
        assert_eq!(e[0].path, "skiff-test/busybox");
        // Another registry is untouched: HTTPS.
        let e = c.endpoints(&reference("10.77.0.2:5000/x:1")).unwrap();
        assert_eq!(e[0].registry_url(), "https://10.77.0.2:5000");
        // Loopback stays plain HTTP without configuration.
        let e = RegistryConfig::default()
            .endpoints(&reference("127.0.0.1:5000/x:1"))
            .unwrap();
        assert_eq!(e[0].registry_url(), "http://127.0.0.1:5000");
    }

    #[test]
    fn mirrors_come_first_then_the_location() {
        let c = parse(
            r#"
# a comment
[[registry]]
prefix = "example.com/foo"   # trailing comment
insecure = false
blocked = false
location = "internal.example.net/bar"

[[registry.mirror]]
location = "mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = 'mirror-1.local/mirrors/foo'
insecure = true
"#,
        )
        .unwrap();
        let e = c
            .endpoints(&reference("example.com/foo/image:latest"))
            .unwrap();
        let got: Vec<(String, bool, bool)> = e
            .iter()
            .map(|e| (e.repository(), e.insecure, e.mirror))
            .collect();
        assert_eq!(
            got,
            vec![
                ("mirror-0.local/mirror-for-foo/image".into(), false, true),
                ("mirror-1.local/mirrors/foo/image".into(), true, true),
                ("internal.example.net/bar/image".into(), false, false),
            ]
        );
        // "example.com/foobar" is not under the prefix "example.com/foo".
        let e = c.endpoints(&reference("example.com/foobar/x:1")).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].repository(), "example.com/foobar/x");
    }

    #[test]
    fn the_longest_prefix_wins_and_ports_are_not_prefixes() {
        let c = parse(
            "[[registry]]\nprefix = \"r.io\"\nlocation = \"a.io\"\n\
             [[registry]]\nprefix = \"r.io/team\"\nlocation = \"b.io/t\"\n",
        )
        .unwrap();
        assert_eq!(
            c.endpoints(&reference("r.io/team/app:1")).unwrap()[0].repository(),
            "b.io/t/app"
        );
        assert_eq!(
            c.endpoints(&reference("r.io/other/app:1")).unwrap()[0].repository(),
            "a.io/other/app"
        );
        assert_eq!(
            c.endpoints(&reference("r.io:5000/app:1")).unwrap()[0].repository(),
            "r.io:5000/app"
        );
    }

    #[test]
    fn docker_hub_prefixes_include_library() {
        let c = parse(
            "[[registry]]\nprefix = \"docker.io/library\"\n[[registry.mirror]]\nlocation = \"10.0.0.9:5000/hub\"\ninsecure = true\n",
        )
        .unwrap();
        let e = c.endpoints(&reference("busybox")).unwrap();
        assert_eq!(e[0].repository(), "10.0.0.9:5000/hub/busybox");
        assert_eq!(e[0].registry_url(), "http://10.0.0.9:5000");
        assert_eq!(e[1].registry_url(), "https://registry-1.docker.io");
        assert_eq!(e[1].path, "library/busybox");
    }

    #[test]
    fn digest_only_mirrors() {
        let d = format!("sha256:{}", "a".repeat(64));
        let c = parse(
            "[[registry]]\nlocation = \"r.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\n",
        )
        .unwrap();
        assert_eq!(c.endpoints(&reference("r.io/x:1")).unwrap().len(), 1);
        assert_eq!(
            c.endpoints(&reference(&format!("r.io/x@{d}")))
                .unwrap()
                .len(),
            2
        );
        let c = parse(
            "[[registry]]\nlocation = \"r.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"tag-only\"\n",
        )
        .unwrap();
        assert_eq!(c.endpoints(&reference("r.io/x:1")).unwrap().len(), 2);
        assert_eq!(
            c.endpoints(&reference(&format!("r.io/x@{d}")))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_location_must_leave_a_repository_path() {
        let c = parse("[[registry]]\nprefix = \"r.io/app\"\nlocation = \"m.io\"\n").unwrap();
        let e = c.endpoints(&reference("r.io/app:1")).unwrap_err();
        assert!(e.to_string().contains("without a repository path"), "{e}");
        assert_eq!(
            c.endpoints(&reference("r.io/app/sub:1")).unwrap()[0].repository(),
            "m.io/sub"
        );
    }

    #[test]
    fn blocked_registries_refuse_pulls() {
        let c = parse("[[registry]]\nprefix = \"evil.io\"\nblocked = true\n").unwrap();
        let e = c.endpoints(&reference("evil.io/x:1")).unwrap_err();
        assert!(e.to_string().contains("blocked"), "{e}");
    }

    #[test]
    fn bad_files_name_the_line_and_key() {
        let cases = [
            ("unqualified-search-registries = [\"docker.io\"]\n", "r.conf:1: unqualified-search-registries"),
            ("[[registry]]\nlocation = \"a.io\"\ninsecur = true\n", "r.conf:3: insecur: unknown key"),
            ("[[registry]]\nlocation = \"a.io\"\ninsecure = yes\n", "r.conf:3: insecure: yes is not true or false"),
            ("[[registry]]\nlocation = a.io\n", "r.conf:2: location: a.io is not a quoted string"),
            ("[[registry.mirror]]\nlocation = \"a.io\"\n", "r.conf:1: [[registry.mirror]] before any [[registry]]"),
            ("[registries.insecure]\nregistries = ['a']\n", "r.conf:1: [registries.insecure]: the version 1 format"),
            ("[[registry]]\ninsecure = true\n", "r.conf:1: [[registry]]: needs a prefix or a location"),
            ("\n[[registry]]\nlocation = \"http://a.io\"\n", "r.conf:3: location: \"http://a.io\": write host[:port][/path] without a scheme"),
            ("[[registry]]\nprefix = \"*.a.io\"\n", "wildcard prefixes are not supported"),
            ("[[registry]]\nlocation = \"a.io\"\nlocation = \"b.io\"\n", "r.conf:3: location: set twice"),
            ("[[registry]]\nlocation = \"a.io\"\n[[registry]]\nlocation = \"a.io\"\n", "r.conf:3: [[registry]] prefix: a.io has two"),
            ("[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\nurl = \"b\"\n", "r.conf:4: url: unknown key in [[registry.mirror]]"),
            ("[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\ninsecure = true\n", "a mirror of a.io has no location"),
            ("[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"some\"\n", "r.conf:5: pull-from-mirror: \"some\" is not all"),
            ("[registry]\n", "r.conf:1: table [registry] is not supported"),
            ("[[registry]]\nlocation\n", "r.conf:2: \"location\" is not `key = value`"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err();
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn strings_and_comments() {
        assert_eq!(strip_comment("a = \"x#y\" # c"), "a = \"x#y\" ");
        assert_eq!(strip_comment("a = 'x#y'"), "a = 'x#y'");
        assert_eq!(parse_string("\"a\\\"b\"").unwrap(), "a\"b");
        assert!(parse_string("\"a\" \"b\"").is_err());
        assert!(parse_string("\"a\\n\"").is_err());
        assert_eq!(parse("# nothing\n\n").unwrap(), RegistryConfig::default());
    }
}
