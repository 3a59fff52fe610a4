//! The Swagger 2.0 document as protobuf, the form client-go asks for
//! (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and decodes with
//! gnostic's `openapi_v2.Document`.
//!
//! The messages below are the part of gnostic's `OpenAPIv2.proto` that the document uses,
//! with gnostic's field numbers; fields skiff never sets are left out, which protobuf
//! allows. Extension values and defaults travel as `Any.yaml`, a YAML (here JSON, which is
//! YAML) rendering of the value, as kube-openapi's readers expect.

use serde_json::Value;

use super::OpenApiError;

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "16")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Paths {
    #[prost(message, repeated, tag = "1")]
    pub vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "10")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "2")]
    pub summary: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ParametersItem {
    #[prost(oneof = "parameters_item::Oneof", tags = "1")]
    pub oneof: Option<parameters_item::Oneof>,
}

pub(super) mod parameters_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Parameter(super::Parameter),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    pub oneof: Option<parameter::Oneof>,
}

pub(super) mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, boxed, tag = "1")]
        BodyParameter(Box<super::BodyParameter>),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
    #[prost(message, repeated, tag = "6")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
    pub oneof: Option<non_body_parameter::Oneof>,
}

pub(super) mod non_body_parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "3")]
        QueryParameterSubSchema(super::QueryParameterSubSchema),
        #[prost(message, tag = "4")]
        PathParameterSubSchema(super::PathParameterSubSchema),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "23")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "22")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
    #[prost(message, repeated, tag = "2")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ResponseValue {
    #[prost(oneof = "response_value::Oneof", tags = "1")]
    pub oneof: Option<response_value::Oneof>,
}

pub(super) mod response_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Response(super::Response),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SchemaItem {
    #[prost(oneof = "schema_item::Oneof", tags = "1")]
    pub oneof: Option<schema_item::Oneof>,
}

pub(super) mod schema_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(super::Schema),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalPropertiesItem>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    pub oneof: Option<additional_properties_item::Oneof>,
}

pub(super) mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, boxed, tag = "1")]
        Schema(Box<super::Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

/// Converts the Swagger 2.0 JSON document into gnostic's message.
pub(super) fn document(doc: &Value) -> Result<Document, OpenApiError> {
    let info = doc.get("info").map(|i| Info {
        title: string(i, "title"),
        version: string(i, "version"),
        description: string(i, "description"),
    });
    let mut path = Vec::new();
    for (name, item) in object(doc, "paths")? {
        path.push(NamedPathItem {
            name: name.clone(),
            value: Some(path_item(item)?),
        });
    }
    let mut additional_properties = Vec::new();
    for (name, s) in object(doc, "definitions")? {
        additional_properties.push(NamedSchema {
            name: name.clone(),
            value: Some(schema(s)?),
        });
    }
    Ok(Document {
        swagger: string(doc, "swagger"),
        info,
        paths: Some(Paths {
            vendor_extension: Vec::new(),
            path,
        }),
        definitions: Some(Definitions {
            additional_properties,
        }),
        vendor_extension: extensions(doc),
    })
}

fn invalid(what: impl Into<String>) -> OpenApiError {
    OpenApiError::Protobuf(what.into())
}

fn object<'a>(
    value: &'a Value,
    key: &str,
) -> Result<&'a serde_json::Map<String, Value>, OpenApiError> {
    value
        .get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(format!("`{key}` is not an object")))
}

fn string(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value.get(key).map(string_list).unwrap_or_default()
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn any(value: &Value) -> Any {
    Any {
        yaml: value.to_string(),
    }
}

fn extensions(value: &Value) -> Vec<NamedAny> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("x-"))
                .map(|(k, v)| NamedAny {
                    name: k.clone(),
                    value: Some(any(v)),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn path_item(item: &Value) -> Result<PathItem, OpenApiError> {
    let op = |key: &str| item.get(key).map(operation).transpose();
    Ok(PathItem {
        get: op("get")?,
        put: op("put")?,
        post: op("post")?,
        delete: op("delete")?,
        patch: op("patch")?,
        parameters: parameters(item)?,
        vendor_extension: extensions(item),
    })
}

fn parameters(value: &Value) -> Result<Vec<ParametersItem>, OpenApiError> {
    let Some(list) = value.get("parameters").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|p| {
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            let unique_items = p
                .get("uniqueItems")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let parameter = match p.get("in").and_then(Value::as_str) {
                Some("body") => parameter::Oneof::BodyParameter(Box::new(BodyParameter {
                    description: string(p, "description"),
                    name: string(p, "name"),
                    r#in: "body".into(),
                    required,
                    schema: p.get("schema").map(schema).transpose()?,
                    vendor_extension: extensions(p),
                })),
                Some("query") => parameter::Oneof::NonBodyParameter(NonBodyParameter {
                    oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(
                        QueryParameterSubSchema {
                            required,
                            r#in: "query".into(),
                            description: string(p, "description"),
                            name: string(p, "name"),
                            r#type: string(p, "type"),
                            unique_items,
                            vendor_extension: extensions(p),
                        },
                    )),
                }),
                Some("path") => parameter::Oneof::NonBodyParameter(NonBodyParameter {
                    oneof: Some(non_body_parameter::Oneof::PathParameterSubSchema(
                        PathParameterSubSchema {
                            required,
                            r#in: "path".into(),
                            description: string(p, "description"),
                            name: string(p, "name"),
                            r#type: string(p, "type"),
                            unique_items,
                            vendor_extension: extensions(p),
                        },
                    )),
                }),
                other => return Err(invalid(format!("parameter location {other:?}"))),
            };
            Ok(ParametersItem {
                oneof: Some(parameters_item::Oneof::Parameter(Parameter {
                    oneof: Some(parameter),
                })),
            })
        })
        .collect()
}

fn operation(op: &Value) -> Result<Operation, OpenApiError> {
    let mut response_code = Vec::new();
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        for (code, r) in responses {
            response_code.push(NamedResponseValue {
                name: code.clone(),
                value: Some(ResponseValue {
                    oneof: Some(response_value::Oneof::Response(Response {
                        description: string(r, "description"),
                        schema: r
                            .get("schema")
                            .map(|s| {
                                Ok::<_, OpenApiError>(SchemaItem {
                                    oneof: Some(schema_item::Oneof::Schema(schema(s)?)),
                                })
                            })
                            .transpose()?,
                        vendor_extension: extensions(r),
                    })),
                }),
            });
        }
    }
    Ok(Operation {
        tags: strings(op, "tags"),
        summary: string(op, "summary"),
        description: string(op, "description"),
        operation_id: string(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: parameters(op)?,
        responses: Some(Responses {
            response_code,
            vendor_extension: Vec::new(),
        }),
        schemes: strings(op, "schemes"),
        vendor_extension: extensions(op),
    })
}

/// Converts one JSON schema. A keyword the message cannot carry is an error rather than
/// silently dropped: the schemas come from compiled-in types, so the tests see it first.
fn schema(value: &Value) -> Result<Schema, OpenApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| invalid("a schema is not an object"))?;
    let mut out = Schema::default();
    for (key, v) in map {
        match key.as_str() {
            "$ref" => out.r#ref = v.as_str().unwrap_or_default().to_string(),
            "format" => out.format = v.as_str().unwrap_or_default().to_string(),
            "title" => out.title = v.as_str().unwrap_or_default().to_string(),
            "description" => out.description = v.as_str().unwrap_or_default().to_string(),
            "default" => out.default = Some(any(v)),
            "example" => out.example = Some(any(v)),
            "readOnly" => out.read_only = v.as_bool().unwrap_or(false),
            "required" => out.required = string_list(v),
            "enum" => {
                out.r#enum = v
                    .as_array()
                    .map(|a| a.iter().map(any).collect())
                    .unwrap_or_default()
            }
            "type" => {
                let value = match v {
                    Value::String(t) => vec![t.clone()],
                    Value::Array(ts) => ts
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    _ => return Err(invalid("`type` is neither a string nor a list")),
                };
                out.r#type = Some(TypeItem { value });
            }
            "items" => {
                let schemas = match v {
                    Value::Array(items) => items.iter().map(schema).collect::<Result<_, _>>()?,
                    item => vec![schema(item)?],
                };
                out.items = Some(ItemsItem { schema: schemas });
            }
            "allOf" => {
                out.all_of = v
                    .as_array()
                    .map(|a| a.iter().map(schema).collect::<Result<_, _>>())
                    .transpose()?
                    .unwrap_or_default()
            }
            "additionalProperties" => {
                let oneof = match v {
                    Value::Bool(b) => additional_properties_item::Oneof::Boolean(*b),
                    s => additional_properties_item::Oneof::Schema(Box::new(schema(s)?)),
                };
                out.additional_properties = Some(AdditionalPropertiesItem { oneof: Some(oneof) });
            }
            "properties" => {
                let props = v
                    .as_object()
                    .ok_or_else(|| invalid("`properties` is not an object"))?;
                let mut additional_properties = Vec::with_capacity(props.len());
                for (name, s) in props {
                    additional_properties.push(NamedSchema {
                        name: name.clone(),
                        value: Some(schema(s)?),
                    });
                }
                out.properties = Some(Properties {
                    additional_properties,
                });
            }
            k if k.starts_with("x-") => out.vendor_extension.push(NamedAny {
                name: key.clone(),
                value: Some(any(v)),
            }),
            other => return Err(invalid(format!("schema keyword `{other}`"))),
        }
    }
    Ok(out)
}
