//! The swagger 2.0 definitions of `asr-api/definitions.json` as JSON Schemas (2020-12), so the
//! emulator can refuse a body ASR would refuse and the tests can check every body it answers.
//!
//! Swagger polymorphism has no JSON Schema meaning (`discriminator` is ignored by a
//! validator), so each base with a `discriminator` becomes a dispatcher: `instanceType` must
//! be one of the subtypes' `x-ms-discriminator-value`s, and the object must then match that
//! subtype's definition. The subtypes' `allOf` point at a copy of the base (`NAME__base`) so
//! the dispatch does not recurse. Every definition that is not such a base also gets
//! `unevaluatedProperties: false`, so a misspelt or invented field is refused instead of being
//! silently ignored, except in a definition others extend through `allOf` (`Resource`), whose
//! extensions refuse unknown fields themselves. (The same conversion as `providers/azure/tests/requests.rs`; the emulator
//! keeps its own copy so that neither side is tested against the other's code.)

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// The copy of `shared/asr-api/definitions.json` the emulator is built from (a test checks
/// that it is byte-identical to the shared one).
pub const DEFINITIONS: &str = include_str!("../asr-api/definitions.json");

/// The parsed definitions; `None` if the embedded copy is not JSON (a test makes sure it is).
fn definitions() -> Option<&'static Value> {
    static PARSED: OnceLock<Option<Value>> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(DEFINITIONS).ok())
        .as_ref()
}

/// The definitions converted to JSON Schema, rooted at `root`. `extra` definitions are added
/// beside them (for shapes the kept definitions lack, such as `PolicyCollection`).
pub fn schema_for(definitions: &Value, root: &str, extra: &[(&str, Value)]) -> Value {
    let defs = definitions["definitions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let bases: Vec<String> = defs
        .iter()
        .filter(|(_, def)| def.get("discriminator").is_some())
        .map(|(name, _)| name.clone())
        .collect();
    // Definitions that others extend through `allOf` (`Resource`, `ProxyResource`) must not
    // refuse the extending definition's fields: the extending one refuses unknown fields,
    // and sees the parent's as evaluated.
    let parents: Vec<String> = defs
        .values()
        .filter_map(|def| def["allOf"].as_array())
        .flatten()
        .filter_map(|part| part["$ref"].as_str()?.strip_prefix("#/definitions/"))
        .map(str::to_string)
        .collect();
    let mut out = Map::new();
    for (name, def) in &defs {
        let mut def = def.clone();
        if let Some(all_of) = def.get_mut("allOf").and_then(Value::as_array_mut) {
            for part in all_of {
                if let Some(target) = part["$ref"].as_str()
                    && let Some(base) = target.strip_prefix("#/definitions/")
                    && bases.iter().any(|b| b == base)
                {
                    part["$ref"] = json!(format!("#/definitions/{base}__base"));
                }
            }
        }
        if def.get("properties").is_some() && !bases.contains(name) && !parents.contains(name) {
            def["unevaluatedProperties"] = json!(false);
        }
        out.insert(name.clone(), def);
    }
    for base in &bases {
        let subtypes: Vec<(String, String)> = defs
            .iter()
            .filter(|(_, def)| {
                def["allOf"].as_array().is_some_and(|all_of| {
                    all_of
                        .iter()
                        .any(|part| part["$ref"] == json!(format!("#/definitions/{base}")))
                })
            })
            .filter_map(|(name, def)| {
                def["x-ms-discriminator-value"]
                    .as_str()
                    .map(|value| (value.to_string(), name.clone()))
            })
            .collect();
        let Some(original) = out.remove(base) else {
            continue;
        };
        out.insert(format!("{base}__base"), original.clone());
        if subtypes.is_empty() {
            // No subtype kept in `definitions.json`: nothing to dispatch to, keep the base.
            out.insert(base.clone(), original);
            continue;
        }
        let dispatch: Vec<Value> = subtypes
            .iter()
            .map(|(value, name)| {
                json!({
                    "if": {"properties": {"instanceType": {"const": value}}, "required": ["instanceType"]},
                    "then": {"$ref": format!("#/definitions/{name}")}
                })
            })
            .collect();
        let values: Vec<&String> = subtypes.iter().map(|(value, _)| value).collect();
        out.insert(
            base.clone(),
            json!({
                "type": "object",
                "required": ["instanceType"],
                "properties": {"instanceType": {"enum": values}},
                "allOf": dispatch,
            }),
        );
    }
    for (name, def) in extra {
        out.insert((*name).to_string(), def.clone());
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/definitions/{root}"),
        "definitions": out,
    })
}

/// An ARM collection of `item` (`{"value": [...], "nextLink": "..."}`), for the collections
/// `definitions.json` does not keep.
pub fn collection_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["value"],
        "properties": {
            "value": {"type": "array", "items": {"$ref": format!("#/definitions/{item}")}},
            "nextLink": {"type": "string"},
        },
        "additionalProperties": false,
    })
}

/// A validator for the embedded definition `root`. `PolicyCollection`, which the kept
/// definitions lack, is built as an ARM collection of `Policy`.
pub fn validator(root: &str) -> Result<jsonschema::Validator, String> {
    let definitions = definitions().ok_or("the embedded `definitions.json` is not JSON")?;
    let extra = [("PolicyCollection", collection_of("Policy"))];
    jsonschema::validator_for(&schema_for(definitions, root, &extra))
        .map_err(|error| format!("the definitions of `{root}` are not a valid schema: {error}"))
}

/// Every way `body` fails `validator`, each with the JSON pointer of the failing value.
pub fn errors(validator: &jsonschema::Validator, body: &Value) -> Vec<String> {
    validator
        .iter_errors(body)
        .map(|error| {
            let at = error.instance_path.to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("{error} at `{at}`")
        })
        .collect()
}
