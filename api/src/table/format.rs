//! The small formatting rules Kubernetes' printers share: ages, label sets and selectors,
//! access modes, container lists.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::access::{array_at, get, go_zero_time, opt_str, str_at, string_map};

/// Kubernetes' `duration.HumanDuration`: two or three significant figures, so ages stay
/// short (`5s`, `3m20s`, `4h`, `2d3h`, `3y`).
pub fn human_duration(d: SignedDuration) -> String {
    // Go converts through float seconds and truncates toward zero; a clock skew of
    // under two seconds reads as "now".
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of a timestamp at `now`, `<unknown>` for an unset one (`translateTimestampSince`).
pub(super) fn since(ts: Option<Timestamp>, now: Timestamp) -> String {
    match ts {
        Some(ts) => human_duration(now.duration_since(ts)),
        None => "<unknown>".to_string(),
    }
}

/// A timestamp as Go's `time.RFC3339` prints it in UTC: whole seconds and `Z`.
pub(super) fn rfc3339(ts: Option<Timestamp>) -> String {
    ts.unwrap_or_else(go_zero_time)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A label map as `labels.FormatLabels` prints it: `k=v` sorted by key, `<none>` if empty.
pub(super) fn format_labels(v: &Value, path: &[&str]) -> String {
    let mut pairs = string_map(v, path);
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `LabelSelector` converted the way `metav1.LabelSelectorAsSelector` does and printed
/// with `Selector.String()`. `Err` where Kubernetes' conversion fails (an unknown operator,
/// a malformed key or value); `Ok("")` for a missing or empty selector.
pub(super) fn label_selector(v: &Value, path: &[&str]) -> Result<String, ()> {
    let Some(sel) = get(v, path).filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    if !sel.is_object() {
        return Err(());
    }
    // (key, rendered requirement): the selector sorts by key alone.
    let mut reqs: Vec<(String, String)> = Vec::new();
    let mut labels = string_map(sel, &["matchLabels"]);
    labels.sort_unstable();
    for (k, val) in labels {
        if !valid_label_key(k) || !valid_label_value(val) {
            return Err(());
        }
        reqs.push((k.to_string(), format!("{k}={val}")));
    }
    for expr in array_at(sel, &["matchExpressions"]) {
        let key = str_at(expr, &["key"]);
        let mut values = Vec::new();
        for val in array_at(expr, &["values"]) {
            let val = val.as_str().ok_or(())?;
            if !valid_label_value(val) {
                return Err(());
            }
            values.push(val);
        }
        if !valid_label_key(key) {
            return Err(());
        }
        let rendered = match opt_str(expr, &["operator"]).unwrap_or("") {
            "In" | "NotIn" if values.is_empty() => return Err(()),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(()),
            op @ ("In" | "NotIn") => {
                // Values print sorted without changing the selector itself.
                values.sort_unstable();
                let word = if op == "In" { "in" } else { "notin" };
                format!("{key} {word} ({})", values.join(","))
            }
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key.to_string(), rendered));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`: `<none>` for an empty selector, `<error>` for a bad one.
pub(super) fn format_label_selector(v: &Value, path: &[&str]) -> String {
    match label_selector(v, path) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 || !p.split('.').all(valid_dns_label) {
            return false;
        }
    }
    !name.is_empty() && valid_label_value(name)
}

/// A label value: empty, or at most 63 characters as for a key's name part.
fn valid_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let b = v.as_bytes();
    b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// One dot-separated part of a DNS subdomain: lowercase alphanumerics and `-`,
/// alphanumeric at the ends (the subdomain as a whole is limited, not each part).
fn valid_dns_label(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Access modes abbreviated in Kubernetes' fixed order, each once (`RWO,ROX`).
pub(super) fn access_modes(v: &Value, path: &[&str]) -> String {
    let modes: Vec<&str> = array_at(v, path).iter().filter_map(Value::as_str).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The names and images of a container list, each joined by commas.
pub(super) fn containers(v: &Value, path: &[&str]) -> (String, String) {
    let list = array_at(v, path);
    let names = list
        .iter()
        .map(|c| str_at(c, &["name"]))
        .collect::<Vec<_>>();
    let images = list
        .iter()
        .map(|c| str_at(c, &["image"]))
        .collect::<Vec<_>>();
    (names.join(","), images.join(","))
}

/// Go's `net.JoinHostPort`: brackets around an IPv6 host.
pub(super) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Up to three items and `+ N more...` for the rest (`listWithMoreString`), `<unset>`
/// when there are none.
pub(super) fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.len() > MAX {
        return format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX);
    }
    if items.is_empty() {
        return "<unset>".to_string();
    }
    items.join(",")
}
