//! Every example plan in `examples/` is valid: examples are documentation that is tested.

use crate::util::{lifeboat, relative, repo_root};

#[test]
fn every_example_plan_validates() {
    let mut found = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).expect("examples/") {
        let plan = entry.expect("entry").path().join("lifeboat.yaml");
        if plan.exists() {
            found += 1;
            let name = relative(&plan);
            let output = lifeboat().args(["validate", &name]).output().expect("runs");
            assert!(
                output.status.success(),
                "{name}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    assert!(found > 0, "no example plans found");
}
