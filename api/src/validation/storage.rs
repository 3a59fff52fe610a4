//! PersistentVolumes and PersistentVolumeClaims.

use serde_json::Value;

use super::json::{arr, obj, str_at, str_or_empty};
use super::meta::{immutable, validate_label_selector};
use super::names::is_dns1123_subdomain;
use super::pod::parse_quantity;
use super::{FieldError, Path};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// Sources of a PersistentVolume, in the order Kubernetes checks them.
const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn validate_access_modes(
    spec: &Value,
    path: &Path,
    required_detail: &str,
    errs: &mut Vec<FieldError>,
) {
    let modes = arr(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(
            path.child("accessModes"),
            required_detail,
        ));
    }
    let (mut rwop, mut other) = (false, false);
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(
                path.child("accessModes"),
                &Value::from(m),
                ACCESS_MODES,
            ));
        } else if m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        errs.push(FieldError::forbidden(
            path.child("accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn validate_volume_mode(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(m) = str_at(spec, "volumeMode") {
        if !matches!(m, "Block" | "Filesystem") {
            errs.push(FieldError::not_supported(
                path.child("volumeMode"),
                &Value::from(m),
                &["Block", "Filesystem"],
            ));
        }
    }
}

fn validate_storage_class(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(sc) = str_at(spec, "storageClassName").filter(|s| !s.is_empty()) {
        for m in is_dns1123_subdomain(sc) {
            errs.push(FieldError::invalid_str(
                path.child("storageClassName"),
                sc,
                m,
            ));
        }
    }
}

/// Validates a PersistentVolume; on update its source and volumeMode may not change.
pub(crate) fn validate_persistent_volume(
    obj_value: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    let spec = obj_value.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    validate_access_modes(spec, &path, "", errs);
    let cap = obj(spec, "capacity");
    match cap {
        None => errs.push(FieldError::required(path.child("capacity"), "")),
        Some(c) if c.is_empty() => errs.push(FieldError::required(path.child("capacity"), "")),
        _ => {}
    }
    if let Some(c) = cap {
        if !c.contains_key("storage") || c.len() > 1 {
            errs.push(FieldError::not_supported(
                path.child("capacity"),
                spec.get("capacity").unwrap_or(&Value::Null),
                &["storage"],
            ));
        }
        for (k, v) in c {
            let p = path.child("capacity").key(k);
            if let Some(q) = parse_quantity(v, &p, errs) {
                if q.is_zero() {
                    errs.push(FieldError::invalid_str(
                        &p,
                        &q.canonical(),
                        "must be greater than zero",
                    ));
                }
            }
        }
    }
    if let Some(rp) = str_at(spec, "persistentVolumeReclaimPolicy").filter(|s| !s.is_empty()) {
        if !matches!(rp, "Delete" | "Recycle" | "Retain") {
            errs.push(FieldError::not_supported(
                path.child("persistentVolumeReclaimPolicy"),
                &Value::from(rp),
                &["Delete", "Recycle", "Retain"],
            ));
        }
    }
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|s| spec.get(*s).is_some_and(|v| !v.is_null()))
        .collect();
    if sources.is_empty() {
        errs.push(FieldError::required(&path, "must specify a volume type"));
    }
    for s in sources.iter().skip(1) {
        errs.push(FieldError::forbidden(
            path.child(s),
            "may not specify more than 1 volume type",
        ));
    }
    if let Some(hp) = spec.get("hostPath").filter(|v| !v.is_null()) {
        if str_or_empty(hp, "path").is_empty() {
            errs.push(FieldError::required(
                path.child("hostPath").child("path"),
                "",
            ));
        }
    }
    if let Some(local) = spec.get("local").filter(|v| !v.is_null()) {
        if str_or_empty(local, "path").is_empty() {
            errs.push(FieldError::required(path.child("local").child("path"), ""));
        }
        if spec.get("nodeAffinity").is_none_or(Value::is_null) {
            errs.push(FieldError::required(
                path.child("nodeAffinity"),
                "Local volume requires node affinity",
            ));
        }
    }
    validate_storage_class(spec, &path, errs);
    validate_volume_mode(spec, &path, errs);
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let source = |s: &Value| {
            PV_SOURCES
                .iter()
                .filter_map(|k| {
                    s.get(*k)
                        .filter(|v| !v.is_null())
                        .map(|v| (k.to_string(), v.clone()))
                })
                .collect::<Vec<_>>()
        };
        if source(spec) != source(old_spec) {
            errs.push(FieldError::forbidden(
                path.child("persistentvolumesource"),
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        immutable(
            spec.get("volumeMode"),
            old_spec.get("volumeMode"),
            &Path::new("volumeMode"),
            errs,
        );
    }
}

/// Validates a PersistentVolumeClaim; on update only the storage request of a bound
/// claim (and the volume name, once) may change.
pub(crate) fn validate_persistent_volume_claim(
    obj_value: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    let spec = obj_value.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    validate_claim_spec(spec, &path, errs);
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let bound = obj_value.get("status").and_then(|s| str_at(s, "phase")) == Some("Bound");
        let munge = |s: &Value, volume_name: Option<&Value>| {
            let mut s = s.clone();
            if let Some(m) = s.as_object_mut() {
                if bound {
                    if let Some(req) = m
                        .get_mut("resources")
                        .and_then(|r| r.get_mut("requests"))
                        .and_then(Value::as_object_mut)
                    {
                        req.remove("storage");
                    }
                    m.remove("volumeAttributesClassName");
                }
                match volume_name {
                    Some(v) => m.insert("volumeName".to_string(), v.clone()),
                    None => m.remove("volumeName"),
                };
            }
            s
        };
        // The volume name may be set once, by the binder.
        let old_vn = old_spec
            .get("volumeName")
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
        let vn = if old_vn.is_some() {
            old_vn
        } else {
            spec.get("volumeName")
        };
        let new_m = munge(spec, vn);
        let old_m = munge(old_spec, vn);
        if new_m != old_m {
            errs.push(FieldError::forbidden(
                &path,
                format!(
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                    super::pod::json_diff(&old_m, &new_m, "spec")
                ),
            ));
        }
        let storage = |s: &Value| {
            s.get("resources")
                .and_then(|r| r.get("requests"))
                .and_then(|r| r.get("storage"))
                .and_then(Value::as_str)
                .and_then(|q| super::quantity::Quantity::parse(q).ok())
        };
        let status_size = old
            .get("status")
            .and_then(|s| s.get("capacity"))
            .and_then(|c| c.get("storage"))
            .and_then(Value::as_str)
            .and_then(|q| super::quantity::Quantity::parse(q).ok());
        if let (Some(new_size), Some(old_size)) = (storage(spec), storage(old_spec)) {
            if new_size < old_size && status_size.is_some_and(|s| new_size <= s) {
                errs.push(FieldError::forbidden(
                    path.child("resources").child("requests").child("storage"),
                    "field can not be less than status.capacity",
                ));
            }
        }
        immutable(
            spec.get("volumeMode"),
            old_spec.get("volumeMode"),
            &Path::new("volumeMode"),
            errs,
        );
    }
}

/// Validates a `PersistentVolumeClaimSpec` at `path`.
pub(crate) fn validate_claim_spec(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    validate_access_modes(spec, path, "at least 1 access mode is required", errs);
    if let Some(sel) = spec.get("selector").filter(|v| !v.is_null()) {
        validate_label_selector(sel, &path.child("selector"), errs);
    }
    let sp = path.child("resources").key("storage");
    match spec
        .get("resources")
        .and_then(|r| r.get("requests"))
        .and_then(|r| r.get("storage"))
    {
        None => errs.push(FieldError::required(&sp, "")),
        Some(v) => {
            if let Some(q) = parse_quantity(v, &sp, errs) {
                if q.is_zero() {
                    errs.push(FieldError::invalid_str(
                        &sp,
                        &q.canonical(),
                        "must be greater than zero",
                    ));
                }
            }
        }
    }
    validate_storage_class(spec, path, errs);
    validate_volume_mode(spec, path, errs);
    for f in ["dataSource", "dataSourceRef"] {
        if let Some(ds) = spec.get(f).filter(|v| !v.is_null()) {
            let dp = path.child(f);
            for k in ["name", "kind"] {
                if str_or_empty(ds, k).is_empty() {
                    errs.push(FieldError::required(dp.child(k), ""));
                }
            }
            let group = str_or_empty(ds, "apiGroup");
            let kind = str_or_empty(ds, "kind");
            if group.is_empty() && kind != "PersistentVolumeClaim" {
                errs.push(FieldError::invalid_str(
                    &dp,
                    kind,
                    "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
                ));
            }
        }
    }
}
