//! What skiff's kubelet cannot honour. Kubernetes would accept these fields, but a pod
//! using them would not get what it asked for on skiff, so they are rejected with
//! `Unsupported value` naming the field instead of being silently ignored. The lists
//! below are the one place to extend when the kubelet learns more.

use serde_json::Value;

use super::json::{arr, str_at};
use super::pod::volume_sources;
use super::{go_quote, FieldError, Path};

/// Volume sources skiff's kubelet mounts.
pub const SUPPORTED_VOLUME_SOURCES: &[&str] = &[
    "configMap",
    "downwardAPI",
    "emptyDir",
    "hostPath",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sources of a `projected` volume skiff's kubelet fills.
pub const SUPPORTED_PROJECTED_SOURCES: &[&str] =
    &["configMap", "downwardAPI", "secret", "serviceAccountToken"];

/// Pod spec fields skiff's kubelet cannot honour at all, with why.
pub const UNSUPPORTED_POD_SPEC_FIELDS: &[(&str, &str)] = &[(
    "resourceClaims",
    "skiff's kubelet does not support dynamic resource allocation",
)];

/// Container fields skiff's kubelet cannot honour at all, with why.
pub const UNSUPPORTED_CONTAINER_FIELDS: &[(&str, &str)] = &[(
    "volumeDevices",
    "skiff's kubelet does not support raw block volumes",
)];

/// Operating systems skiff's kubelet runs pods on.
pub const SUPPORTED_POD_OS: &[&str] = &["linux"];

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| go_quote(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rejects what skiff's kubelet cannot honour in a pod spec (of a pod or a template).
pub(crate) fn check_pod_spec(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    for (i, vol) in arr(spec, "volumes").iter().enumerate() {
        let vp = path.child("volumes").index(i);
        for source in volume_sources(vol) {
            if !SUPPORTED_VOLUME_SOURCES.contains(&source) {
                errs.push(FieldError {
                    kind: super::FieldErrorKind::NotSupported,
                    field: vp.child(source).into(),
                    detail: format!(
                        "skiff's kubelet does not support {} volumes; supported volume types: {}",
                        source,
                        quoted_list(SUPPORTED_VOLUME_SOURCES)
                    ),
                    value: Some(go_quote(source)),
                });
            }
        }
        if let Some(projected) = vol.get("projected") {
            for (j, src) in arr(projected, "sources").iter().enumerate() {
                let Some(map) = src.as_object() else { continue };
                for (k, v) in map {
                    if !v.is_null() && !SUPPORTED_PROJECTED_SOURCES.contains(&k.as_str()) {
                        errs.push(FieldError {
                            kind: super::FieldErrorKind::NotSupported,
                            field: vp.child("projected").child("sources").index(j).child(k).into(),
                            detail: format!(
                                "skiff's kubelet does not support {} projections; supported projections: {}",
                                k,
                                quoted_list(SUPPORTED_PROJECTED_SOURCES)
                            ),
                            value: Some(go_quote(k)),
                        });
                    }
                }
            }
        }
    }
    for (field, why) in UNSUPPORTED_POD_SPEC_FIELDS {
        if !arr(spec, field).is_empty() {
            errs.push(
                FieldError::not_supported(path.child(field), &Value::from(*field), &[])
                    .with_detail(*why),
            );
        }
    }
    for list in ["containers", "initContainers"] {
        for (i, c) in arr(spec, list).iter().enumerate() {
            for (field, why) in UNSUPPORTED_CONTAINER_FIELDS {
                if !arr(c, field).is_empty() {
                    errs.push(
                        FieldError::not_supported(
                            path.child(list).index(i).child(field),
                            &Value::from(*field),
                            &[],
                        )
                        .with_detail(*why),
                    );
                }
            }
        }
    }
    if let Some(os) = spec.get("os").and_then(|o| str_at(o, "name")) {
        if !SUPPORTED_POD_OS.contains(&os) {
            errs.push(
                FieldError::not_supported(
                    path.child("os").child("name"),
                    &Value::from(os),
                    SUPPORTED_POD_OS,
                )
                .with_detail(format!(
                    "skiff's kubelet runs only Linux pods; supported values: {}",
                    quoted_list(SUPPORTED_POD_OS)
                )),
            );
        }
    }
}

impl FieldError {
    /// The same error with another detail.
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> FieldError {
        self.detail = detail.into();
        self
    }
}
