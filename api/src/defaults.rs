//! PLACEHOLDER until the defaults branch lands.
#![allow(missing_docs)]
use serde_json::Value;
pub fn apply_defaults(_kind: &str, _obj: &mut Value) {}
pub fn default_job_selector(_obj: &mut Value, _uid: &str) {}
pub fn apply_limit_range_defaults(_pod: &mut Value, _lr: &[Value]) {}
pub fn limit_range_violations(_pod: &Value, _lr: &[Value]) -> Vec<String> {
    vec![]
}
