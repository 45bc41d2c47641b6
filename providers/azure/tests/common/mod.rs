//! Shared test helpers: where `asr-api/` is, and reading its examples and the fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod mock;

use serde_json::Value;

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

/// The swagger definitions as a JSON Schema rooted at `root`, by the converter `sim serve`
/// validates request bodies with (one converter, so the two cannot drift apart), fed here with
/// `shared/asr-api/definitions.json` itself. Discriminated bases dispatch on `instanceType` to
/// the subtype's definition, and unknown fields are refused (see `lifeboat_sim_serve::swagger`).
pub fn validator(root: &str) -> jsonschema::Validator {
    let schema = lifeboat_sim_serve::swagger::schema_for(&definitions(), root, &[]);
    jsonschema::validator_for(&schema).expect("the converted definitions are a valid schema")
}

pub use lifeboat_sim_serve::swagger::errors;

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
