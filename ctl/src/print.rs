//! Printers: kubectl's aligned columns, YAML, JSON, names and JSONPath templates.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// Aligns rows as Go's tabwriter does with kubectl's settings (minimum width 6,
/// padding 3): every cell but the last of a row is padded to its column's width.
pub fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                widths[i] = widths[i].max(cell.chars().count() + 3).max(6);
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// How `-o` asked for output.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Columns from the server's Table.
    Table,
    /// Columns including priority > 0 ones.
    Wide,
    /// YAML of the object (or a List).
    Yaml,
    /// JSON of the object (or a List).
    Json,
    /// `kind.group/name` per object.
    Name,
    /// A JSONPath template.
    JsonPath(String),
}

impl Output {
    /// Parses `-o`.
    pub fn parse(s: Option<&str>) -> Result<Output> {
        Ok(match s {
            None | Some("") => Output::Table,
            Some("wide") => Output::Wide,
            Some("yaml") => Output::Yaml,
            Some("json") => Output::Json,
            Some("name") => Output::Name,
            Some(o) => {
                if let Some(t) = o
                    .strip_prefix("jsonpath=")
                    .or_else(|| o.strip_prefix("jsonpath-as-json="))
                {
                    Output::JsonPath(t.to_string())
                } else {
                    bail!("unable to match a printer suitable for the output format {o:?}, allowed formats are: json,jsonpath,name,wide,yaml")
                }
            }
        })
    }
}

/// Serializes as kubectl prints YAML (go-yaml's style: keys sorted, sequences not
/// indented under their key, double quotes for strings that would read as another type,
/// single quotes for strings plain style cannot carry, `|` blocks for multi-line text).
pub fn to_yaml(v: &Value) -> Result<String> {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_map(m, 0, false, &mut out),
        Value::Array(a) if !a.is_empty() => yaml_seq(a, 0, &mut out),
        other => {
            out.push_str(&yaml_scalar(other, 0).0);
            out.push('\n');
        }
    }
    Ok(out)
}

fn yaml_map(
    m: &serde_json::Map<String, Value>,
    indent: usize,
    first_inline: bool,
    out: &mut String,
) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 || !first_inline {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&yaml_string(k));
        out.push(':');
        yaml_after_key(&m[k], indent, out);
    }
}

fn yaml_after_key(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_map(m, indent + 2, false, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_seq(a, indent, out);
        }
        other => {
            let (text, block) = yaml_scalar(other, indent + 2);
            out.push(' ');
            out.push_str(&text);
            if !block {
                out.push('\n');
            }
        }
    }
}

fn yaml_seq(a: &[Value], indent: usize, out: &mut String) {
    for item in a {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => yaml_map(m, indent + 2, true, out),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                yaml_seq(inner, indent + 2, out);
            }
            other => {
                let (text, block) = yaml_scalar(other, indent + 2);
                out.push_str(&text);
                if !block {
                    out.push('\n');
                }
            }
        }
    }
}

/// A scalar's text; true when it is a literal block (which ends with its own newline).
fn yaml_scalar(v: &Value, indent: usize) -> (String, bool) {
    match v {
        Value::Null => ("null".into(), false),
        Value::Bool(b) => (b.to_string(), false),
        Value::Number(n) => (n.to_string(), false),
        Value::Object(_) => ("{}".into(), false),
        Value::Array(_) => ("[]".into(), false),
        Value::String(s)
            if s.contains('\n')
                && !s.starts_with(' ')
                && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            let chomp = if !s.ends_with('\n') {
                "-"
            } else if s.ends_with("\n\n") {
                "+"
            } else {
                ""
            };
            let body = s.strip_suffix('\n').unwrap_or(s);
            let mut text = format!("|{chomp}\n");
            let pad = " ".repeat(indent);
            for line in body.split('\n') {
                if !line.is_empty() {
                    text.push_str(&pad);
                    text.push_str(line);
                }
                text.push('\n');
            }
            (text, true)
        }
        Value::String(s) => (yaml_string(s), false),
    }
}

fn yaml_string(s: &str) -> String {
    if s.chars().any(|c| c.is_control()) {
        return serde_json::to_string(s).unwrap_or_default();
    }
    if resolves_to_non_string(s) {
        return format!("\"{s}\"");
    }
    if plain_allowed(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", "+.inf", ".nan", ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let t = s.replace('_', "");
    let t = t.strip_prefix(['+', '-']).unwrap_or(&t);
    let numeric = !t.is_empty()
        && (t.parse::<f64>().is_ok()
            && t.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
            || t.strip_prefix("0x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || t.strip_prefix("0o")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_digit(8)))
            || t.strip_prefix("0b")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c == '0' || c == '1')));
    if numeric {
        return true;
    }
    // YAML 1.1 timestamps: 2001-12-14, 2001-12-14t21:59:43.10-05:00, …
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && s[5..].starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| {
            c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | 'T' | 't' | 'Z' | 'z' | ' ' | '+')
        })
}

fn plain_allowed(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    if matches!(
        first,
        '#' | ','
            | '['
            | ']'
            | '{'
            | '}'
            | '&'
            | '*'
            | '!'
            | '|'
            | '>'
            | '\''
            | '"'
            | '%'
            | '@'
            | '`'
    ) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') && (s.len() == 1 || s[1..].starts_with(' ')) {
        return false;
    }
    !(s.starts_with(' ')
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.contains('\t'))
}

/// Serializes as kubectl prints JSON (4-space indent).
pub fn to_json(v: &Value) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    let mut s = String::from_utf8(buf)?;
    s.push('\n');
    Ok(s)
}

/// A Table's rows as text cells: the columns to show (priority 0, or all when `wide`).
pub struct TableView {
    /// Upper-cased column names.
    pub headers: Vec<String>,
    /// Cells per row, and the row's object metadata.
    pub rows: Vec<(Vec<String>, Value)>,
}

/// Reads a `meta.k8s.io` Table.
pub fn table_view(table: &Value, wide: bool) -> Result<TableView> {
    if table["kind"] != "Table" {
        bail!("the server did not answer with a Table");
    }
    let defs = table["columnDefinitions"]
        .as_array()
        .ok_or_else(|| anyhow!("Table without columnDefinitions"))?;
    let shown: Vec<usize> = defs
        .iter()
        .enumerate()
        .filter(|(_, d)| wide || d["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let headers = shown
        .iter()
        .map(|&i| defs[i]["name"].as_str().unwrap_or_default().to_uppercase())
        .collect();
    let rows = table["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let cells = shown.iter().map(|&i| cell_text(&row["cells"][i])).collect();
            (cells, row["object"].clone())
        })
        .collect();
    Ok(TableView { headers, rows })
}

/// A cell as kubectl prints it.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

/// Evaluates a kubectl JSONPath template (`{.a.b}`, `{.items[*].metadata.name}`,
/// `{range .items[*]}…{end}`, `{"\n"}`) against `data`.
pub fn jsonpath(template: &str, data: &Value) -> Result<String> {
    let tokens = tokenize(template)?;
    let mut pos = 0;
    let nodes = parse_nodes(&tokens, &mut pos, false)?;
    let mut out = String::new();
    render(&nodes, data, &mut out)?;
    Ok(out)
}

#[derive(Debug)]
enum Tok {
    Text(String),
    Expr(String),
}

fn tokenize(t: &str) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest
                    .find('}')
                    .ok_or_else(|| anyhow!("error parsing jsonpath {t}, unclosed action"))?;
                toks.push(Tok::Expr(rest[1..end].trim().to_string()));
                rest = &rest[end + 1..];
            }
            Some(i) => {
                toks.push(Tok::Text(rest[..i].to_string()));
                rest = &rest[i..];
            }
            None => {
                toks.push(Tok::Text(rest.to_string()));
                rest = "";
            }
        }
    }
    Ok(toks)
}

fn parse_nodes(toks: &[Tok], pos: &mut usize, in_range: bool) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    while *pos < toks.len() {
        let tok = &toks[*pos];
        *pos += 1;
        match tok {
            Tok::Text(s) => nodes.push(Node::Text(s.clone())),
            Tok::Expr(e) if e == "end" => {
                if in_range {
                    return Ok(nodes);
                }
                bail!("error parsing jsonpath: not in range, nothing to end");
            }
            Tok::Expr(e) => {
                if let Some(path) = e.strip_prefix("range ") {
                    let steps = parse_path(path.trim())?;
                    let body = parse_nodes(toks, pos, true)?;
                    nodes.push(Node::Range(steps, body));
                } else if e.starts_with('"') && e.ends_with('"') && e.len() >= 2 {
                    nodes.push(Node::Text(unescape(&e[1..e.len() - 1])));
                } else {
                    nodes.push(Node::Path(parse_path(e)?));
                }
            }
        }
    }
    if in_range {
        bail!("error parsing jsonpath: unclosed range");
    }
    Ok(nodes)
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

fn parse_path(p: &str) -> Result<Vec<Step>> {
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| anyhow!("error parsing jsonpath {p}: unterminated ["))?;
            let inner = r[..end].trim();
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(i) = inner.parse::<i64>() {
                steps.push(Step::Index(i));
            } else {
                let key = inner.trim_matches(|c| c == '\'' || c == '"');
                steps.push(Step::Field(key.to_string()));
            }
            rest = &r[end + 1..];
        } else {
            bail!("error parsing jsonpath {p}: unexpected {rest:?}");
        }
    }
    Ok(steps)
}

fn select<'a>(v: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![v];
    for step in steps {
        let mut next = Vec::new();
        for c in current {
            match step {
                Step::Field(f) => {
                    if let Some(x) = c.get(f.as_str()) {
                        next.push(x);
                    }
                }
                Step::Index(i) => {
                    if let Some(a) = c.as_array() {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::All => match c {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
            }
        }
        current = next;
    }
    current
}

fn render(nodes: &[Node], data: &Value, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Path(steps) => {
                let found = select(data, steps);
                let texts: Vec<String> = found
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(steps, body) => {
                for item in select(data, steps) {
                    render(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tabwriter_pads_like_kubectl() {
        let rows = vec![
            vec!["NAME".into(), "STATUS".into(), "AGE".into()],
            vec!["kube-node-lease".into(), "Active".into(), "2s".into()],
        ];
        assert_eq!(
            tabwrite(&rows),
            "NAME              STATUS   AGE\nkube-node-lease   Active   2s\n"
        );
    }

    #[test]
    fn jsonpath_templates() {
        let d = json!({"items": [
            {"metadata": {"name": "a", "labels": {"app": "x"}}},
            {"metadata": {"name": "b"}}
        ]});
        assert_eq!(jsonpath("{.items[*].metadata.name}", &d).unwrap(), "a b");
        assert_eq!(
            jsonpath("{.items[0].metadata.labels.app}", &d).unwrap(),
            "x"
        );
        assert_eq!(
            jsonpath("{range .items[*]}{.metadata.name}{\"\\n\"}{end}", &d).unwrap(),
            "a\nb\n"
        );
        assert_eq!(jsonpath("n={.items[-1].metadata.name}", &d).unwrap(), "n=b");
        assert_eq!(jsonpath("{.items[0].metadata['name']}", &d).unwrap(), "a");
        assert!(jsonpath("{range .items[*]}", &d).is_err());
    }

    #[test]
    fn yaml_like_go_yaml() {
        let v = json!({"metadata": {"name": "a", "resourceVersion": "5", "creationTimestamp": "2026-11-27T18:42:49Z",
            "annotations": {"x": "{\"a\":1}\n", "y": "*star", "z": "yes", "e": ""}},
            "spec": {"ports": [{"port": 80, "name": "http"}], "list": ["a", "1"], "empty": {}, "none": []}});
        assert_eq!(
            to_yaml(&v).unwrap(),
            "metadata:\n  annotations:\n    e: \"\"\n    x: |\n      {\"a\":1}\n    \"y\": '*star'\n    z: \"yes\"\n  creationTimestamp: \"2026-11-27T18:42:49Z\"\n  name: a\n  resourceVersion: \"5\"\nspec:\n  empty: {}\n  list:\n  - a\n  - \"1\"\n  none: []\n  ports:\n  - name: http\n    port: 80\n"
        );
    }

    #[test]
    fn output_formats_parse() {
        assert_eq!(Output::parse(Some("wide")).unwrap(), Output::Wide);
        assert_eq!(
            Output::parse(Some("jsonpath={.a}")).unwrap(),
            Output::JsonPath("{.a}".into())
        );
        assert!(Output::parse(Some("xml")).is_err());
    }
}
