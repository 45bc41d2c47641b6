//! Shared test helpers: where `asr-api/` is, and reading its examples and the fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod mock;

use serde_json::{Map, Value, json};

/// `shared/asr-api`, beside the repository root (`<repo>/../shared/asr-api`), as it is in CI
/// and in the worktrees. Missing means the tests cannot check anything: fail, never pass.
pub fn asr_api_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/asr-api");
    assert!(
        dir.join("definitions.json").is_file(),
        "the ASR reference data is missing: expected `{}` (the `shared/asr-api` directory beside the repository root)",
        dir.display()
    );
    dir
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read `{}`: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("`{}` is not JSON: {error}", path.display()))
}

/// The whole official example file `asr-api/examples/NAME`.
pub fn example(name: &str) -> Value {
    read_json(&asr_api_dir().join("examples").join(name))
}

/// The body of the example's response with status `code`.
pub fn example_body(name: &str, code: &str) -> Value {
    let example = example(name);
    example["responses"][code]["body"].clone()
}

/// A constructed fixture under `tests/fixtures/` (see `tests/fixtures/README.md`).
pub fn fixture(name: &str) -> Value {
    read_json(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

pub fn definitions() -> Value {
    read_json(&asr_api_dir().join("definitions.json"))
}

/// The swagger 2.0 definitions as a JSON Schema (2020-12) rooted at `root`.
///
/// Swagger polymorphism has no JSON Schema meaning (`discriminator` is ignored by a
/// validator), so each base with a `discriminator` becomes a dispatcher: `instanceType` must
/// be one of the subtypes' `x-ms-discriminator-value`s, and the object must then match that
/// subtype's definition. The subtypes' `allOf` point at a copy of the base (`NAME__base`) so
/// the dispatch does not recurse. Every definition that is not such a base also gets
/// `unevaluatedProperties: false`, so a misspelt or invented field is refused instead of being
/// silently ignored as ASR would.
pub fn schema_for(root: &str) -> Value {
    let defs = definitions()["definitions"]
        .as_object()
        .expect("`definitions` is an object")
        .clone();
    let bases: Vec<String> = defs
        .iter()
        .filter(|(_, def)| def.get("discriminator").is_some())
        .map(|(name, _)| name.clone())
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
        if def.get("properties").is_some() && !bases.contains(name) {
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
        if subtypes.is_empty() {
            // No subtype kept in `definitions.json`: nothing to dispatch to, keep the base
            // (and point the `__base` copy at it for the rewritten `allOf`s).
            let original = out[base].clone();
            out.insert(format!("{base}__base"), original);
            continue;
        }
        let original = out.remove(base).expect("the base is a definition");
        out.insert(format!("{base}__base"), original);
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
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/definitions/{root}"),
        "definitions": out,
    })
}

pub fn validator(root: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&schema_for(root))
        .expect("the converted definitions are a valid schema")
}

pub fn errors(validator: &jsonschema::Validator, body: &Value) -> Vec<String> {
    validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

pub fn assert_valid(root: &str, body: &Value) {
    let errors = errors(&validator(root), body);
    assert!(
        errors.is_empty(),
        "not a valid `{root}`: {errors:#?}\n{body:#}"
    );
}

pub fn assert_invalid(root: &str, body: &Value) {
    assert!(
        !validator(root).is_valid(body),
        "a broken body passed as `{root}`: {body:#}"
    );
}
