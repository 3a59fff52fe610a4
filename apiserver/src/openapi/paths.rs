//! The REST operations of every served resource, in a neutral form that the v2 and v3
//! renderers turn into Swagger 2.0 and OpenAPI 3.0.
//!
//! Each operation carries `x-kubernetes-action` and `x-kubernetes-group-version-kind` as
//! Kubernetes' own documents do: kubectl finds a resource's kind through them
//! (`kubectl explain` reads the GVK off the operations of the resource's paths), and
//! decides whether the server takes `fieldValidation` by looking at the PATCH operations
//! that carry the object's GVK. Every PATCH operation with a given GVK must therefore list
//! the parameter, subresources included: kubectl stops at the first one it meets, in Go map
//! order.

use skiff_api::resource::{ResourceType, Subresource};

use super::schemas::{subresource_kind, Catalog, Gvk, DELETE_OPTIONS, PATCH, STATUS, WATCH_EVENT};
use super::OpenApiError;

/// An HTTP method of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    pub fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum In {
    Path,
    Query,
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
    String,
    Boolean,
    Integer,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Integer => "integer",
        }
    }
}

/// A path or query parameter.
#[derive(Debug, Clone, Copy)]
pub(super) struct Param {
    pub name: &'static str,
    pub location: In,
    pub ty: Type,
    pub description: &'static str,
}

const fn query(name: &'static str, ty: Type, description: &'static str) -> Param {
    Param {
        name,
        location: In::Query,
        ty,
        description,
    }
}

const NAME: Param = Param {
    name: "name",
    location: In::Path,
    ty: Type::String,
    description: "The object's name.",
};
const NAMESPACE: Param = Param {
    name: "namespace",
    location: In::Path,
    ty: Type::String,
    description: "The namespace the objects live in.",
};
const PRETTY: Param = query("pretty", Type::String, "If 'true', the output is indented.");

const LIST_PARAMS: &[Param] = &[
    query(
        "allowWatchBookmarks",
        Type::Boolean,
        "Asks for BOOKMARK events in a watch; the server may send them or not.",
    ),
    query(
        "continue",
        Type::String,
        "The token of the previous page of a chunked list.",
    ),
    query(
        "fieldSelector",
        Type::String,
        "Only objects whose fields match, e.g. `metadata.name=web`.",
    ),
    query(
        "labelSelector",
        Type::String,
        "Only objects whose labels match, e.g. `app=web,tier!=db`.",
    ),
    query(
        "limit",
        Type::Integer,
        "The most items to return; more follow with the `continue` token.",
    ),
    query(
        "resourceVersion",
        Type::String,
        "For a list, how fresh the answer must be; for a watch, the version to start after.",
    ),
    query(
        "resourceVersionMatch",
        Type::String,
        "How `resourceVersion` applies to a list: `Exact` or `NotOlderThan`.",
    ),
    query(
        "sendInitialEvents",
        Type::Boolean,
        "With `watch`, starts with ADDED events for the current objects.",
    ),
    query(
        "timeoutSeconds",
        Type::Integer,
        "Ends a list or watch call after this many seconds.",
    ),
    query(
        "watch",
        Type::Boolean,
        "Streams changes as watch events instead of returning a list.",
    ),
];

const DRY_RUN: Param = query(
    "dryRun",
    Type::String,
    "`All` runs every stage of the request but does not persist it.",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    Type::String,
    "The name of the actor making the change, recorded in managedFields.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    Type::String,
    "What to do with unknown or duplicate fields in the body: `Ignore`, `Warn` or `Strict`.",
);
const FORCE: Param = query(
    "force",
    Type::Boolean,
    "For apply patches: take fields owned by other managers instead of failing on conflict.",
);

const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];

const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    query(
        "gracePeriodSeconds",
        Type::Integer,
        "Seconds to wait before deleting; 0 deletes at once.",
    ),
    query(
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        Type::Boolean,
        "Deletes an object that can no longer be read from storage.",
    ),
    query(
        "orphanDependents",
        Type::Boolean,
        "Deprecated: use propagationPolicy.",
    ),
    query(
        "propagationPolicy",
        Type::String,
        "What happens to dependents: `Orphan`, `Background` or `Foreground`.",
    ),
];

const LOG_PARAMS: &[Param] = &[
    query(
        "container",
        Type::String,
        "The container whose log to read.",
    ),
    query("follow", Type::Boolean, "Streams the log as it grows."),
    query(
        "insecureSkipTLSVerifyBackend",
        Type::Boolean,
        "Skips verifying the kubelet's serving certificate.",
    ),
    query(
        "limitBytes",
        Type::Integer,
        "The most bytes of log to return.",
    ),
    query(
        "previous",
        Type::Boolean,
        "Reads the log of the container's previous instance.",
    ),
    query(
        "sinceSeconds",
        Type::Integer,
        "Only lines from the last this many seconds.",
    ),
    query(
        "sinceTime",
        Type::String,
        "Only lines since this RFC 3339 time.",
    ),
    query(
        "stream",
        Type::String,
        "Which stream to read: `All`, `Stdout` or `Stderr`.",
    ),
    query("tailLines", Type::Integer, "Only the last this many lines."),
    query(
        "timestamps",
        Type::Boolean,
        "Prefixes every line with its RFC 3339 time.",
    ),
];

const EXEC_PARAMS: &[Param] = &[
    query(
        "command",
        Type::String,
        "The command to run, one argument per repetition of the parameter.",
    ),
    query("container", Type::String, "The container to run it in."),
    query("stderr", Type::Boolean, "Attaches the command's stderr."),
    query("stdin", Type::Boolean, "Attaches the command's stdin."),
    query("stdout", Type::Boolean, "Attaches the command's stdout."),
    query("tty", Type::Boolean, "Runs the command in a terminal."),
];

const ATTACH_PARAMS: &[Param] = &[
    query("container", Type::String, "The container to attach to."),
    query("stderr", Type::Boolean, "Attaches the container's stderr."),
    query("stdin", Type::Boolean, "Attaches the container's stdin."),
    query("stdout", Type::Boolean, "Attaches the container's stdout."),
    query("tty", Type::Boolean, "The container runs in a terminal."),
];

const PORTFORWARD_PARAMS: &[Param] = &[query("ports", Type::Integer, "The pod ports to forward.")];

/// The bodies PATCH accepts, in the order Kubernetes lists them.
pub(super) const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// A request body.
#[derive(Debug, Clone)]
pub(super) struct Body {
    /// The schema name.
    pub schema: String,
    /// The content types it may be sent as.
    pub content_types: &'static [&'static str],
    pub required: bool,
}

/// What a response carries.
#[derive(Debug, Clone)]
pub(super) enum Payload {
    /// A JSON object of this schema name.
    Object(String),
    /// A list: the list schema as JSON, or watch events when `watch` is set.
    List(String),
    /// Plain text or a stream upgrade (logs, exec, port forwarding).
    Text,
}

/// One operation on a path.
#[derive(Debug, Clone)]
pub(super) struct Operation {
    pub method: Method,
    pub operation_id: String,
    pub description: String,
    pub action: &'static str,
    pub gvk: Gvk,
    pub params: Vec<Param>,
    pub body: Option<Body>,
    /// Status codes and what each carries.
    pub responses: Vec<(u16, Payload)>,
}

/// A path and its operations.
#[derive(Debug, Clone)]
pub(super) struct PathItem {
    pub path: String,
    /// Parameters shared by every operation of the path.
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

/// The paths of one group-version.
#[derive(Debug)]
pub(super) struct GroupVersion {
    pub group: &'static str,
    pub version: &'static str,
    /// `api/v1` or `apis/<group>/<version>`: the key in the v3 index.
    pub key: String,
    /// The tag Kubernetes gives its operations (`core_v1`, `apps_v1`).
    pub tag: String,
    pub paths: Vec<PathItem>,
}

/// Every served group-version with its paths, core first, then in discovery order.
pub(super) fn group_versions(catalog: &Catalog) -> Result<Vec<GroupVersion>, OpenApiError> {
    let mut gvs: Vec<(&'static str, &'static str)> = vec![("", "v1")];
    for (group, versions) in skiff_api::resource::groups() {
        for version in versions {
            gvs.push((group, version));
        }
    }
    gvs.into_iter()
        .map(|(group, version)| {
            let mut paths = Vec::new();
            for r in skiff_api::resource::in_group_version(group, version) {
                paths.extend(resource_paths(catalog, r)?);
            }
            Ok(GroupVersion {
                group,
                version,
                key: gv_key(group, version),
                tag: format!("{}_{}", group_word(group), version),
                paths,
            })
        })
        .collect()
}

/// The index key of a group-version: `api/v1` or `apis/<group>/<version>`.
pub(super) fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The first label of a group, as Kubernetes names operations and tags (`networking`
/// for `networking.k8s.io`, `core` for the legacy group).
fn group_word(group: &str) -> &str {
    if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    }
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Names operations the way Kubernetes does (`patchCoreV1NamespacedPodStatus`), which
/// makes the documents familiar to generated clients and to people reading them.
struct Namer {
    prefix: String,
    namespaced: &'static str,
    kind: &'static str,
}

impl Namer {
    fn id(&self, verb: &str, suffix: &str) -> String {
        format!(
            "{verb}{}{}{}{suffix}",
            self.prefix, self.namespaced, self.kind
        )
    }

    fn collection_id(&self, verb: &str) -> String {
        format!(
            "{verb}{}Collection{}{}",
            self.prefix, self.namespaced, self.kind
        )
    }
}

fn resource_paths(catalog: &Catalog, r: &ResourceType) -> Result<Vec<PathItem>, OpenApiError> {
    let kind_schema = catalog.name_of(r.group, r.kind)?.to_string();
    let list_schema = catalog.list_name_of(r)?;
    let gvk = Gvk::new(r.group, r.version, r.kind);
    let root = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let namer = Namer {
        prefix: format!(
            "{}{}",
            upper_first(group_word(r.group)),
            upper_first(r.version)
        ),
        namespaced: if r.namespaced { "Namespaced" } else { "" },
        kind: r.kind,
    };
    let (collection, scope_params) = if r.namespaced {
        (
            format!("{root}/namespaces/{{namespace}}/{}", r.plural),
            vec![NAMESPACE, PRETTY],
        )
    } else {
        (format!("{root}/{}", r.plural), vec![PRETTY])
    };
    let object = format!("{collection}/{{name}}");
    let mut object_params = vec![NAME];
    object_params.extend(scope_params.iter().copied());

    let json_body = |schema: &str| Body {
        schema: schema.to_string(),
        content_types: &["application/json"],
        required: true,
    };
    let patch_body = || Body {
        schema: PATCH.to_string(),
        content_types: PATCH_CONTENT_TYPES,
        required: true,
    };
    let delete_body = || Body {
        schema: DELETE_OPTIONS.to_string(),
        content_types: &["application/json"],
        required: false,
    };
    let object_payload = || Payload::Object(kind_schema.clone());
    let op = |method, id: String, description: String, action, gvk: &Gvk| Operation {
        method,
        operation_id: id,
        description,
        action,
        gvk: gvk.clone(),
        params: Vec::new(),
        body: None,
        responses: Vec::new(),
    };

    let mut list = op(
        Method::Get,
        namer.id("list", ""),
        format!("Lists or watches {} objects.", r.kind),
        "list",
        &gvk,
    );
    list.params = LIST_PARAMS.to_vec();
    list.responses = vec![(200, Payload::List(list_schema.clone()))];

    let mut create = op(
        Method::Post,
        namer.id("create", ""),
        format!("Creates a {}.", r.kind),
        "post",
        &gvk,
    );
    create.params = WRITE_PARAMS.to_vec();
    create.body = Some(json_body(&kind_schema));
    create.responses = vec![
        (200, object_payload()),
        (201, object_payload()),
        (202, object_payload()),
    ];

    let mut delete_collection = op(
        Method::Delete,
        namer.collection_id("delete"),
        format!("Deletes a collection of {} objects.", r.kind),
        "deletecollection",
        &gvk,
    );
    delete_collection.params = DELETE_PARAMS
        .iter()
        .chain(LIST_PARAMS.iter())
        .copied()
        .collect();
    delete_collection.body = Some(delete_body());
    delete_collection.responses = vec![(200, Payload::Object(STATUS.to_string()))];

    let mut paths = vec![PathItem {
        path: collection.clone(),
        params: scope_params.clone(),
        operations: vec![list, create, delete_collection],
    }];

    if r.namespaced {
        let mut all = op(
            Method::Get,
            format!("list{}{}ForAllNamespaces", namer.prefix, r.kind),
            format!("Lists or watches {} objects in every namespace.", r.kind),
            "list",
            &gvk,
        );
        all.params = LIST_PARAMS.to_vec();
        all.responses = vec![(200, Payload::List(list_schema.clone()))];
        paths.push(PathItem {
            path: format!("{root}/{}", r.plural),
            params: vec![PRETTY],
            operations: vec![all],
        });
    }

    let mut read = op(
        Method::Get,
        namer.id("read", ""),
        format!("Reads the {}.", r.kind),
        "get",
        &gvk,
    );
    read.responses = vec![(200, object_payload())];
    let mut replace = op(
        Method::Put,
        namer.id("replace", ""),
        format!("Replaces the {}.", r.kind),
        "put",
        &gvk,
    );
    replace.params = WRITE_PARAMS.to_vec();
    replace.body = Some(json_body(&kind_schema));
    replace.responses = vec![(200, object_payload()), (201, object_payload())];
    let mut patch = op(
        Method::Patch,
        namer.id("patch", ""),
        format!("Partially updates the {}.", r.kind),
        "patch",
        &gvk,
    );
    patch.params = PATCH_PARAMS.to_vec();
    patch.body = Some(patch_body());
    patch.responses = vec![(200, object_payload()), (201, object_payload())];
    let mut delete = op(
        Method::Delete,
        namer.id("delete", ""),
        format!("Deletes the {}.", r.kind),
        "delete",
        &gvk,
    );
    delete.params = DELETE_PARAMS.to_vec();
    delete.body = Some(delete_body());
    delete.responses = vec![(200, object_payload()), (202, object_payload())];
    paths.push(PathItem {
        path: object.clone(),
        params: object_params.clone(),
        operations: vec![read, replace, patch, delete],
    });

    for sub in r.subresources {
        let suffix = upper_first(sub.name());
        let path = format!("{object}/{}", sub.name());
        let operations = match sub {
            Subresource::Status | Subresource::Scale => {
                let (schema, sub_gvk) = match subresource_kind(*sub) {
                    Some((group, version, kind)) => {
                        let schema = catalog.name_of(group, kind)?.to_string();
                        (schema, Gvk::new(group, version, kind))
                    }
                    None => (kind_schema.clone(), gvk.clone()),
                };
                let payload = || Payload::Object(schema.clone());
                let mut read = op(
                    Method::Get,
                    namer.id("read", &suffix),
                    format!("Reads the {} of the {}.", sub.name(), r.kind),
                    "get",
                    &sub_gvk,
                );
                read.responses = vec![(200, payload())];
                let mut replace = op(
                    Method::Put,
                    namer.id("replace", &suffix),
                    format!("Replaces the {} of the {}.", sub.name(), r.kind),
                    "put",
                    &sub_gvk,
                );
                replace.params = WRITE_PARAMS.to_vec();
                replace.body = Some(json_body(&schema));
                replace.responses = vec![(200, payload()), (201, payload())];
                let mut patch = op(
                    Method::Patch,
                    namer.id("patch", &suffix),
                    format!("Partially updates the {} of the {}.", sub.name(), r.kind),
                    "patch",
                    &sub_gvk,
                );
                patch.params = PATCH_PARAMS.to_vec();
                patch.body = Some(patch_body());
                patch.responses = vec![(200, payload()), (201, payload())];
                vec![read, replace, patch]
            }
            Subresource::Finalize => {
                let mut replace = op(
                    Method::Put,
                    namer.id("replace", &suffix),
                    format!("Replaces the finalizers of the {}.", r.kind),
                    "put",
                    &gvk,
                );
                replace.params = WRITE_PARAMS.to_vec();
                replace.body = Some(json_body(&kind_schema));
                replace.responses = vec![(200, object_payload()), (201, object_payload())];
                vec![replace]
            }
            Subresource::Binding | Subresource::Eviction | Subresource::Token => {
                let (group, version, kind) =
                    subresource_kind(*sub).unwrap_or((r.group, r.version, r.kind));
                let schema = catalog.name_of(group, kind)?.to_string();
                let sub_gvk = Gvk::new(group, version, kind);
                let mut create = op(
                    Method::Post,
                    namer.id("create", &suffix),
                    format!("Creates a {kind} of the {}.", r.kind),
                    "post",
                    &sub_gvk,
                );
                create.params = WRITE_PARAMS.to_vec();
                create.body = Some(json_body(&schema));
                create.responses = vec![
                    (200, Payload::Object(schema.clone())),
                    (201, Payload::Object(schema.clone())),
                    (202, Payload::Object(schema.clone())),
                ];
                vec![create]
            }
            Subresource::Log => {
                let mut read = op(
                    Method::Get,
                    namer.id("read", &suffix),
                    format!("Reads the log of a container of the {}.", r.kind),
                    "get",
                    &gvk,
                );
                read.params = LOG_PARAMS.to_vec();
                read.responses = vec![(200, Payload::Text)];
                vec![read]
            }
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                let (options_kind, params, what) = match sub {
                    Subresource::Exec => (
                        "PodExecOptions",
                        EXEC_PARAMS,
                        "Runs a command in a container of",
                    ),
                    Subresource::Attach => (
                        "PodAttachOptions",
                        ATTACH_PARAMS,
                        "Attaches to a container of",
                    ),
                    _ => (
                        "PodPortForwardOptions",
                        PORTFORWARD_PARAMS,
                        "Forwards ports of",
                    ),
                };
                let sub_gvk = Gvk::new(r.group, r.version, options_kind);
                [Method::Get, Method::Post]
                    .into_iter()
                    .map(|method| {
                        let verb = format!("connect{}", upper_first(method.key()));
                        let mut connect = op(
                            method,
                            namer.id(&verb, &suffix),
                            format!("{what} the {} (WebSocket upgrade).", r.kind),
                            "connect",
                            &sub_gvk,
                        );
                        connect.params = params.to_vec();
                        connect.responses = vec![(200, Payload::Text)];
                        connect
                    })
                    .collect()
            }
        };
        paths.push(PathItem {
            path,
            params: object_params.clone(),
            operations,
        });
    }
    Ok(paths)
}

/// The content types a list answers with, and the schema of each.
pub(super) fn list_content(list_schema: &str) -> [(&'static str, String); 2] {
    [
        ("application/json", list_schema.to_string()),
        ("application/json;stream=watch", WATCH_EVENT.to_string()),
    ]
}
