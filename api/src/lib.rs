//! Kubernetes API object logic over k8s-openapi types: which resources exist, where they
//! are stored, how they are validated, defaulted, selected, patched and shown as tables.
//! Pure functions only; the apiserver does the I/O.

pub mod defaults;
pub mod patch;
pub mod resource;
pub mod selector;
pub mod table;
pub mod validation;

pub use resource::{ResourceType, Subresource, RESOURCES};
