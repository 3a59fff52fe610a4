//! Strategic merge patch, following apimachinery's `strategicpatch.StrategicMergeMapPatch`
//! with the options the API server uses: parallel deletion lists are applied and nulls that
//! match nothing are dropped.

use serde_json::{Map, Value};

use super::schema::{self, FieldMeta};
use super::PatchError;

type Object = Map<String, Value>;
type Ty = Option<&'static str>;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// What merging a patch map into an original map produced.
enum Merged {
    Object(Object),
    /// The patch said `$patch: delete`.
    Deleted,
}

pub(super) fn apply(kind: &str, doc: &Object, patch: &Object) -> Result<Object, PatchError> {
    match merge_map(doc.clone(), patch.clone(), schema::kind_type(kind))? {
        Merged::Object(merged) => Ok(merged),
        Merged::Deleted => Ok(Object::new()),
    }
}

fn merge_map(mut original: Object, mut patch: Object, ty: Ty) -> Result<Merged, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Object::new(), patch, ty),
            Some("delete") => return Ok(Merged::Deleted),
            Some("merge") => {}
            _ => {
                return Err(PatchError::UnknownDirective {
                    directive: directive.to_string(),
                    map: Value::Object(patch).to_string(),
                })
            }
        }
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, ty)?;

    // Deletions from primitive lists come last, so that a value both added and deleted
    // by one patch ends up deleted whatever the keys' order.
    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((field.to_string(), patch_value));
            continue;
        }
        if patch_value.is_null() {
            remove_keeping_order(&mut original, &key);
            continue;
        }
        let meta = schema::field(ty, &key);
        let merged = match original.get_mut(&key) {
            Some(current) => merge_value(std::mem::take(current), patch_value, &meta)?,
            None => new_value(patch_value, &meta)?,
        };
        match merged {
            // Inserting over an existing key keeps its place when maps keep insertion order.
            Some(value) => {
                original.insert(key, value);
            }
            None => {
                remove_keeping_order(&mut original, &key);
            }
        }
    }
    for (field, to_delete) in deletions {
        let Value::Array(to_delete) = to_delete else {
            return Err(PatchError::PrimitiveList(format!(
                "{DELETE_FROM_PRIMITIVE_LIST}{field} is not a list"
            )));
        };
        if let Some(Value::Array(current)) = original.get_mut(&field) {
            current.retain(|v| !to_delete.iter().any(|d| json_eq(v, d)));
        }
    }
    Ok(Merged::Object(original))
}

/// Merges a patch value into the original's value at the same key; `None` removes the key.
fn merge_value(
    current: Value,
    patch: Value,
    meta: &FieldMeta,
) -> Result<Option<Value>, PatchError> {
    match (current, patch) {
        (Value::Object(current), Value::Object(patch)) => {
            Ok(match merge_map(current, patch, meta.ty)? {
                Merged::Object(merged) => Some(Value::Object(merged)),
                Merged::Deleted => None,
            })
        }
        (Value::Array(current), Value::Array(patch)) => {
            Ok(Some(Value::Array(if meta.merges_list() {
                merge_list(current, patch, meta)?
            } else {
                replace_list(patch)
            })))
        }
        (_, patch) => new_value(patch, meta),
    }
}

/// A patch value for a key the original lacks (or holds with another JSON type), with its
/// directives applied and its nulls dropped, as if merged into an empty value.
fn new_value(patch: Value, meta: &FieldMeta) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(patch) => Ok(match merge_map(Object::new(), patch, meta.ty)? {
            Merged::Object(merged) => Some(Value::Object(merged)),
            Merged::Deleted => None,
        }),
        Value::Array(patch) => Ok(Some(Value::Array(if meta.merges_list() {
            merge_list(Vec::new(), patch, meta)?
        } else {
            replace_list(patch)
        }))),
        Value::Null => Ok(None),
        scalar => Ok(Some(scalar)),
    }
}

/// A list that replaces the original's, minus directives (Kubernetes copies it as sent).
fn replace_list(patch: Vec<Value>) -> Vec<Value> {
    patch.into_iter().filter_map(strip_directives).collect()
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// Removes directive keys anywhere in `value`; `None` for a list element that is itself a
/// directive (`{"$patch": "replace"}` and the like), which has no place in a replaced list.
fn strip_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) if map.contains_key(DIRECTIVE) => None,
        Value::Object(map) => Some(Value::Object(
            map.into_iter()
                .filter(|(k, _)| !is_directive_key(k))
                .map(|(k, v)| (k, strip_nested(v)))
                .collect(),
        )),
        other => Some(strip_nested(other)),
    }
}

fn strip_nested(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !is_directive_key(k))
                .map(|(k, v)| (k, strip_nested(v)))
                .collect(),
        ),
        Value::Array(list) => Value::Array(list.into_iter().filter_map(strip_directives).collect()),
        other => other,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Primitive,
    Object,
}

/// The JSON type shared by the elements of both lists, which must not be lists.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<ElementKind, PatchError> {
    let mut first: Option<&Value> = None;
    for value in original.iter().chain(patch) {
        if value.is_array() {
            return Err(PatchError::ListOfLists);
        }
        match first {
            None => first = Some(value),
            Some(first) if std::mem::discriminant(first) != std::mem::discriminant(value) => {
                return Err(PatchError::MixedList(format!(
                    "{} and {}",
                    Value::Array(original.to_vec()),
                    Value::Array(patch.to_vec())
                )))
            }
            Some(_) => {}
        }
    }
    Ok(if first.is_some_and(Value::is_object) {
        ElementKind::Object
    } else {
        ElementKind::Primitive
    })
}

/// Merges a list tagged `patchStrategy:"merge"`.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    match element_kind(&original, &patch)? {
        ElementKind::Primitive => {
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for value in original.iter().chain(&patch) {
                if !merged.iter().any(|m| json_eq(m, value)) {
                    merged.push(value.clone());
                }
            }
            Ok(order(merged, &patch, &original, None))
        }
        ElementKind::Object => {
            let Some(key) = meta.merge_key else {
                return Err(PatchError::NoDeclaredMergeKey(
                    Value::Array(patch).to_string(),
                ));
            };
            let (server, patch) = apply_special_elements(original, patch, key, meta.ty)?;
            let merged = merge_elements(server.clone(), &patch, key, meta.ty)?;
            Ok(order(merged, &patch, &server, Some(key)))
        }
    }
}

/// Applies the list elements that carry `$patch`; returns the original list left after
/// deletions (or the patch's elements, for `replace`) and the patch's other elements.
fn apply_special_elements(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    ty: Ty,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut server = original;
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Value::Object(mut map) = element else {
            rest.push(element);
            continue;
        };
        let Some(directive) = map.get(DIRECTIVE).cloned() else {
            rest.push(Value::Object(map));
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = map.get(key) else {
                    return Err(no_merge_key(&map, key));
                };
                server.retain(|e| !has_key_value(e, key, value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                map.remove(DIRECTIVE);
                if map.contains_key(key) {
                    rest.push(Value::Object(map));
                }
            }
            _ => {
                return Err(PatchError::UnknownDirective {
                    directive: directive.to_string(),
                    map: Value::Object(map).to_string(),
                })
            }
        }
    }
    if replace {
        let mut replaced = Vec::with_capacity(rest.len());
        for element in rest {
            replaced.extend(new_element(element, ty)?);
        }
        return Ok((replaced, Vec::new()));
    }
    Ok((server, rest))
}

/// Merges each patch element into the original element with the same merge key value,
/// or appends it.
fn merge_elements(
    mut server: Vec<Value>,
    patch: &[Value],
    key: &str,
    ty: Ty,
) -> Result<Vec<Value>, PatchError> {
    for element in patch {
        let Some(map) = element.as_object() else {
            continue;
        };
        let Some(value) = map.get(key) else {
            return Err(no_merge_key(map, key));
        };
        match server.iter().position(|e| has_key_value(e, key, value)) {
            Some(i) => {
                // has_key_value matched, so the element is an object.
                if let Value::Object(current) = std::mem::take(&mut server[i]) {
                    match merge_map(current, map.clone(), ty)? {
                        Merged::Object(merged) => server[i] = Value::Object(merged),
                        Merged::Deleted => {
                            server.remove(i);
                        }
                    }
                }
            }
            None => server.extend(new_element(element.clone(), ty)?),
        }
    }
    Ok(server)
}

fn new_element(element: Value, ty: Ty) -> Result<Option<Value>, PatchError> {
    match element {
        Value::Object(map) => Ok(match merge_map(Object::new(), map, ty)? {
            Merged::Object(merged) => Some(Value::Object(merged)),
            Merged::Deleted => None,
        }),
        other => Ok(Some(other)),
    }
}

/// Orders a merged list as Kubernetes does: the items named in `patch_order` keep that
/// order, the others keep their order in `server_order`, and the two are interleaved by
/// their places in `server_order`, an item the server lacks going before the next
/// server-only item.
fn order(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let (mut patch_items, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position(patch_order, v, key).is_some());
    sort_by_position(&mut patch_items, patch_order, key);
    sort_by_position(&mut server_only, server_order, key);

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, key), position(server_order, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

/// What identifies a list item: its merge key's value, or the item itself for primitives.
fn identity<'a>(value: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(key) => value.as_object().and_then(|m| m.get(key)),
        None => Some(value),
    }
}

fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter()
        .position(|e| identity(e, key).is_some_and(|other| json_eq(other, id)))
}

fn sort_by_position(items: &mut [Value], order: &[Value], key: Option<&str>) {
    // Stable, so items missing from `order` keep their relative order at the end.
    items.sort_by_cached_key(|v| position(order, v, key).unwrap_or(usize::MAX));
}

fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::RetainKeys(format!("{retain} is not a list")));
    };
    let retained = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained(key) {
            return Err(PatchError::RetainKeys(format!(
                "the patch sets {key} but $retainKeys does not list it"
            )));
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// Merges each list that has a `$setElementOrder/<field>` directive and puts it in that order.
fn apply_set_element_order(
    original: &mut Object,
    patch: &mut Object,
    ty: Ty,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(order_list) = patch.remove(&directive) else {
            continue;
        };
        let field = directive[SET_ELEMENT_ORDER.len()..].to_string();
        let Value::Array(order_list) = order_list else {
            return Err(PatchError::SetElementOrder(format!(
                "{directive} is not a list"
            )));
        };
        let meta = schema::field(ty, &field);
        let current = match original.get(&field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => {
                return Err(PatchError::SetElementOrder(format!(
                    "{field} is not a list but {other}"
                )))
            }
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            // A null or a scalar replaces the field in the main merge; there is nothing to order.
            Some(_) => continue,
        };
        check_order(
            patch_list.as_deref().unwrap_or_default(),
            &order_list,
            meta.merge_key,
        )?;
        let merged = match (current.clone(), patch_list) {
            (Some(current), None) => current,
            (None, Some(patch_list)) if meta.merges_list() => {
                merge_list(Vec::new(), patch_list, &meta)?
            }
            (Some(current), Some(patch_list)) if meta.merges_list() => {
                merge_list(current, patch_list, &meta)?
            }
            (_, Some(patch_list)) => replace_list(patch_list),
            (None, None) => continue,
        };
        // Objects without a merge key cannot be matched to the order list; leave them be.
        let ordered = if meta.merge_key.is_none() && merged.iter().any(Value::is_object) {
            merged
        } else {
            order(
                merged,
                &order_list,
                current.as_deref().unwrap_or_default(),
                meta.merge_key,
            )
        };
        original.insert(field.clone(), Value::Array(ordered));
        patch.remove(&field);
    }
    Ok(())
}

/// Checks that the patch list's items appear in the order list, in the same relative order.
fn check_order(
    patch_list: &[Value],
    order_list: &[Value],
    key: Option<&str>,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order_list.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|v| !v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE)))
        .collect();
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order_list.len() {
        let same = match key {
            Some(key) => {
                let mine = items[p]
                    .get(key)
                    .ok_or_else(|| no_merge_key_value(items[p], key))?;
                let theirs = order_list[o]
                    .get(key)
                    .ok_or_else(|| no_merge_key_value(&order_list[o], key))?;
                json_eq(mine, theirs)
            }
            None => json_eq(items[p], &order_list[o]),
        };
        if same {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: Value::Array(patch_list.to_vec()).to_string(),
            order: Value::Array(order_list.to_vec()).to_string(),
        });
    }
    Ok(())
}

/// Removes a key without moving the others: with serde_json's `preserve_order` (which
/// another crate of the build may turn on), `Map::remove` swaps the last key into the hole.
fn remove_keeping_order(map: &mut Object, key: &str) {
    if map.contains_key(key) {
        map.retain(|k, _| k != key);
    }
}

fn has_key_value(element: &Value, key: &str, value: &Value) -> bool {
    element
        .as_object()
        .and_then(|m| m.get(key))
        .is_some_and(|v| json_eq(v, value))
}

/// JSON equality where numbers compare by value, as Go's decoded float64s do (80 == 80.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn no_merge_key(map: &Object, key: &str) -> PatchError {
    PatchError::NoMergeKey {
        map: Value::Object(map.clone()).to_string(),
        key: key.to_string(),
    }
}

fn no_merge_key_value(value: &Value, key: &str) -> PatchError {
    PatchError::NoMergeKey {
        map: value.to_string(),
        key: key.to_string(),
    }
}
