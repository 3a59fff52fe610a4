//! PLACEHOLDER until the validation branch lands.
#![allow(missing_docs)]
use serde_json::Value;
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}
impl FieldError {
    pub fn required(field: &str, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            detail: detail.into(),
        }
    }
    pub fn invalid(field: &str, _value: &str, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            detail: detail.into(),
        }
    }
    pub fn reason(&self) -> &'static str {
        "FieldValueInvalid"
    }
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.detail)
    }
}
pub fn invalid_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    format!(
        "{kind} \"{name}\" is invalid: {}",
        errors
            .iter()
            .map(|e| e.message())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
pub fn validate_create(_kind: &str, _obj: &Value) -> Vec<FieldError> {
    vec![]
}
pub fn validate_update(_kind: &str, _obj: &Value, _old: &Value) -> Vec<FieldError> {
    vec![]
}
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}
pub mod quantity {
    pub fn parse_milli(s: &str) -> Option<i128> {
        let (num, mult): (&str, i128) = if let Some(n) = s.strip_suffix("Gi") {
            (n, 1000 << 30)
        } else if let Some(n) = s.strip_suffix("Mi") {
            (n, 1000 << 20)
        } else if let Some(n) = s.strip_suffix("Ki") {
            (n, 1000 << 10)
        } else if let Some(n) = s.strip_suffix('m') {
            (n, 1)
        } else {
            (s, 1000)
        };
        num.parse::<i128>().ok().map(|n| n * mult)
    }
}
