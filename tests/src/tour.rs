//! docs/tour.md as a test script: its `sh` blocks are the commands, and the HTML
//! comments after a block (invisible to a reader) say what the block's output shows.
//!
//! Directives, one per comment, right after the block's closing fence:
//! - `<!-- expect: TEXT -->` the output (stdout and stderr) contains TEXT;
//! - `<!-- expect-line: TEXT -->` some output line, trimmed, is exactly TEXT;
//! - `<!-- expect-not: TEXT -->` the output does not contain TEXT;
//! - `<!-- expect-error: TEXT -->` the block fails and its output contains TEXT;
//! - `<!-- once -->` run it once: it changes something, so it is not retried;
//! - `<!-- within: 180 -->` seconds to keep retrying (default 120);
//! - `<!-- skip: WHY -->` the test does this itself (bringing the lab up).
//!
//! A block without `once` is retried until its expectations hold, so it must only
//! look at the cluster (the lab converges while the tour goes on).

use std::time::Duration;

/// One `sh` block of the tour and what its output must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The `## ` heading the block is under.
    pub step: String,
    /// Line number (1-based) of the block's first command, for messages.
    pub line: usize,
    /// The commands, as written.
    pub script: String,
    /// Substrings the output must contain.
    pub expect: Vec<String>,
    /// Lines the output must contain exactly (trimmed).
    pub expect_lines: Vec<String>,
    /// Substrings the output must not contain.
    pub expect_not: Vec<String>,
    /// The block must fail, and its output contain this.
    pub expect_error: Option<String>,
    /// Run once, never retried.
    pub once: bool,
    /// How long to keep retrying.
    pub within: Duration,
    /// Why the test skips this block, if it does.
    pub skip: Option<String>,
}

/// Why the tour's text cannot be run.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tour's `sh` blocks in order, with their directives.
pub fn parse(markdown: &str) -> Result<Vec<Block>, ParseError> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut step = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(h) = line.strip_prefix("## ") {
            step = h.trim().to_string();
        }
        let fence = line.trim_start();
        if !fence.starts_with("```") {
            i += 1;
            continue;
        }
        let is_sh = fence.trim_start_matches('`').trim() == "sh";
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && !lines[end].trim_start().starts_with("```") {
            end += 1;
        }
        if end == lines.len() {
            return Err(ParseError(format!(
                "line {}: a code block is never closed",
                start
            )));
        }
        i = end + 1;
        if !is_sh {
            continue;
        }
        let mut block = Block {
            step: step.clone(),
            line: start + 1,
            script: lines[start..end].join("\n"),
            expect: Vec::new(),
            expect_lines: Vec::new(),
            expect_not: Vec::new(),
            expect_error: None,
            once: false,
            within: Duration::from_secs(120),
            skip: None,
        };
        // Directives: the comment lines that follow, blank lines between allowed.
        while i < lines.len() {
            let l = lines[i].trim();
            if l.is_empty() {
                i += 1;
                continue;
            }
            let Some(body) = l
                .strip_prefix("<!--")
                .and_then(|r| r.strip_suffix("-->"))
                .map(str::trim)
            else {
                break;
            };
            directive(&mut block, body).map_err(|e| ParseError(format!("line {}: {e}", i + 1)))?;
            i += 1;
        }
        blocks.push(block);
    }
    Ok(blocks)
}

fn directive(block: &mut Block, body: &str) -> Result<(), String> {
    let (key, value) = body
        .split_once(':')
        .map_or((body, ""), |(k, v)| (k, v.trim()));
    match key.trim() {
        "expect" => block.expect.push(value.to_string()),
        "expect-line" => block.expect_lines.push(value.to_string()),
        "expect-not" => block.expect_not.push(value.to_string()),
        "expect-error" => block.expect_error = Some(value.to_string()),
        "once" => block.once = true,
        "within" => {
            let secs: u64 = value
                .parse()
                .map_err(|_| format!("`within: {value}` is not a number of seconds"))?;
            block.within = Duration::from_secs(secs);
        }
        "skip" => block.skip = Some(value.to_string()),
        other => {
            return Err(format!(
                "unknown tour directive {other:?} in <!-- {body} -->"
            ))
        }
    }
    Ok(())
}

impl Block {
    /// Whether a run that exited with `success` and printed `output` shows what the
    /// block says; if not, what is missing.
    pub fn check(&self, success: bool, output: &str) -> Result<(), String> {
        match (&self.expect_error, success) {
            (Some(_), true) => return Err("it succeeded, and the tour says it fails".into()),
            (None, false) => return Err("it failed".into()),
            (Some(text), false) if !output.contains(text.as_str()) => {
                return Err(format!("its error does not say {text:?}"))
            }
            _ => {}
        }
        if let Some(text) = self.expect.iter().find(|t| !output.contains(t.as_str())) {
            return Err(format!("the output does not contain {text:?}"));
        }
        if let Some(text) = self
            .expect_lines
            .iter()
            .find(|t| !output.lines().any(|l| l.trim() == t.as_str()))
        {
            return Err(format!("no output line is {text:?}"));
        }
        if let Some(text) = self.expect_not.iter().find(|t| output.contains(t.as_str())) {
            return Err(format!("the output contains {text:?}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Tour\n\n## 1. Start\n\n```sh\nmake lab\n```\n<!-- skip: the test does it -->\n\n\
        ```text\nnot run\n```\n\n## 2. Look\n\n```sh\nkubectl get nodes\necho done\n```\n\n\
        <!-- expect: Ready -->\n<!-- expect-line: done -->\n<!-- expect-not: NotReady -->\n<!-- within: 30 -->\nYou see nodes.\n\n\
        ```sh\nkubectl delete x\n```\n<!-- once -->\n<!-- expect-error: NotFound -->\n";

    #[test]
    fn parses_sh_blocks_with_their_directives_and_headings() {
        let blocks = parse(DOC).unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].skip.as_deref(), Some("the test does it"));
        assert_eq!(blocks[0].step, "1. Start");
        assert_eq!(blocks[1].step, "2. Look");
        assert_eq!(blocks[1].script, "kubectl get nodes\necho done");
        assert_eq!(blocks[1].expect, vec!["Ready"]);
        assert_eq!(blocks[1].expect_lines, vec!["done"]);
        assert_eq!(blocks[1].expect_not, vec!["NotReady"]);
        assert_eq!(blocks[1].within, Duration::from_secs(30));
        assert!(!blocks[1].once);
        assert!(blocks[2].once);
        assert_eq!(blocks[2].expect_error.as_deref(), Some("NotFound"));
    }

    #[test]
    fn refuses_unknown_directives_and_open_blocks() {
        assert!(parse("```sh\nls\n```\n<!-- expct: x -->\n")
            .unwrap_err()
            .0
            .contains("unknown tour directive"));
        assert!(parse("```sh\nls\n").unwrap_err().0.contains("never closed"));
        assert!(parse("```sh\nls\n```\n<!-- within: soon -->\n").is_err());
    }

    #[test]
    fn checks_output_status_and_lines() {
        let blocks = parse(DOC).unwrap();
        let look = &blocks[1];
        assert!(look.check(true, "w1 Ready\ndone\n").is_ok());
        assert!(look.check(false, "w1 Ready\ndone\n").is_err());
        assert!(look.check(true, "w1 NotReady\ndone\n").is_err());
        assert!(look.check(true, "Ready\nnot done\n").is_err());
        let delete = &blocks[2];
        assert!(delete.check(false, "Error: NotFound").is_ok());
        assert!(delete.check(true, "deleted").is_err());
        assert!(delete.check(false, "Forbidden").is_err());
    }
}
