//! Image references as Docker and containerd normalise them: `busybox` is
//! `docker.io/library/busybox:latest`.

use crate::{Error, Result};

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub domain: String,
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub path: String,
    /// Tag, when one was given (or `latest` when neither tag nor digest was).
    pub tag: Option<String>,
    /// `sha256:…` digest, when one was given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |message: &str| Error::InvalidImage {
            reference: s.to_string(),
            message: message.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > 4096 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or is too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("digest must be sha256:<64 hex digits>"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("digest must be sha256:<64 hex digits>"));
                }
                (r, Some(d.to_ascii_lowercase()))
            }
            None => (s, None),
        };
        let (domain, remainder) = match rest.split_once('/') {
            Some((first, r))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), r.to_string())
            }
            _ => ("docker.io".to_string(), rest.to_string()),
        };
        // A tag is after the last ':' of the last path component (a ':' in the domain
        // is a port and has already been split off).
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p.to_string(), Some(t.to_string())),
            _ => (remainder.clone(), None),
        };
        if domain.is_empty() || domain.starts_with(':') || domain.ends_with(':') {
            return Err(bad("registry host is empty"));
        }
        if path.is_empty() {
            return Err(bad("repository name is empty"));
        }
        for component in path.split('/') {
            let ok = !component.is_empty()
                && component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && component
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && component
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(
                    "repository name must be lowercase letters, digits and . _ - separated by /",
                ));
            }
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("tag must be up to 128 letters, digits, . _ -"));
            }
        }
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The repository with its registry, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name containerd stores the image under, e.g. `docker.io/library/busybox:latest`.
    pub fn name(&self) -> String {
        let mut s = self.repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The tag or digest to ask the registry for.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// Whether a registry host (with an optional port) is on loopback.
pub fn is_loopback_host(domain: &str) -> bool {
    let host = if let Some(rest) = domain.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        domain.rsplit_once(':').map_or(domain, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_short_names_are_normalised() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox:latest");
        let r = Reference::parse("user/app:1.2").unwrap();
        assert_eq!(r.name(), "docker.io/user/app:1.2");
    }

    #[test]
    fn registry_with_port_and_tag() {
        let r = Reference::parse("127.0.0.1:5000/skiff-test/busybox:1").unwrap();
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.path, "skiff-test/busybox");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.name(), "127.0.0.1:5000/skiff-test/busybox:1");
        let r = Reference::parse("localhost:5000/x").unwrap();
        assert_eq!(r.name(), "localhost:5000/x:latest");
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("quay.io/x/y@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.name(), format!("quay.io/x/y@{d}"));
        let r = Reference::parse(&format!("quay.io/x/y:v1@{d}")).unwrap();
        assert_eq!(r.name(), format!("quay.io/x/y:v1@{d}"));
        assert!(Reference::parse("x@sha256:abc").is_err());
    }

    #[test]
    fn bad_references_are_refused() {
        for s in [
            "",
            "UPPER/case",
            "a b",
            "x:",
            "example.com/",
            "x::y",
            "-x",
            "x/:tag",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} parsed");
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.5.0.1"));
        assert!(is_loopback_host("localhost:80"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
        assert!(!is_loopback_host("docker.io"));
    }
}
