//! PLACEHOLDER until the selector branch lands: the shape the apiserver codes against.
#![allow(missing_docs)]
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<(String, String)>);
impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| SelectorError(part.into()))?;
            out.push((k.into(), v.into()));
        }
        Ok(LabelSelector(out))
    }
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, String)>);
impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| SelectorError(part.into()))?;
            out.push((k.into(), v.into()));
        }
        Ok(FieldSelector(out))
    }
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
    pub fn matches(&self, get: &impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|(k, v)| get(k).unwrap_or_default() == *v)
    }
}
