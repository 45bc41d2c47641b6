//! Property tests: the loader and the validator never panic, every label they produce points
//! inside the file on character boundaries, and master-target assignment keeps its promises
//! on any estate.

use lifeboat_engine::generate::{EstateShape, plan_yaml};
use lifeboat_engine::{Diagnostic, SourceFile, load, validate};
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../examples/avs-failback/lifeboat.yaml");

fn assert_labels_in_bounds(text: &str, diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        assert!(!d.message.is_empty(), "{} has an empty message", d.code);
        for label in &d.labels {
            assert!(
                label.span.start <= label.span.end,
                "{}: inverted span",
                d.code
            );
            assert!(
                label.span.end <= text.len(),
                "{}: span past the end",
                d.code
            );
            assert!(
                text.is_char_boundary(label.span.start) && text.is_char_boundary(label.span.end),
                "{}: span splits a character",
                d.code
            );
        }
    }
}

/// Loads and (when it loads) validates, checking every diagnostic on the way.
fn check(text: String) {
    let file = SourceFile::new("p.yaml", "p.yaml", text);
    match load::load_plan(&file) {
        Ok(plan) => assert_labels_in_bounds(file.text(), &validate::validate(&plan).diagnostics),
        Err(diagnostic) => {
            assert!(
                diagnostic.code.starts_with("plan::"),
                "load failed with {}",
                diagnostic.code
            );
            assert_labels_in_bounds(file.text(), std::slice::from_ref(&diagnostic));
        }
    }
}

/// Fragments that matter to YAML's grammar, to push mutations into interesting corners.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(":".to_string()),
        Just("- ".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just("  ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("# ".to_string()),
        Just("é".to_string()),
        Just("web-01".to_string()),
        Just("mt-linux-01".to_string()),
        "[a-z_]{1,8}".prop_map(String::from),
        any::<String>(),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), fragment()).prop_map(|(at, text)| Edit::Insert { at, text }),
    ]
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut i = at % (text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for edit in edits {
        match edit {
            Edit::Delete { at, len } => {
                let start = floor_boundary(&text, *at);
                let mut end = (start + len).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(start..end, "");
            }
            Edit::Insert { at, text: fragment } => {
                let at = floor_boundary(&text, *at);
                text.insert_str(at, fragment);
            }
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn mutated_example_never_panics(edits in proptest::collection::vec(edit(), 1..6)) {
        check(apply(EXAMPLE, &edits));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Generated estates with room for every disk are valid, and the assignment puts each
    /// group on one master target of its OS, never over 60 disks, the same way every time.
    #[test]
    fn assignment_keeps_its_promises(
        machines in 1usize..400,
        group_ratio in 2usize..20,
        boot_groups in 0usize..6,
        seed in any::<u64>(),
    ) {
        let shape = EstateShape {
            machines,
            groups: machines / group_ratio,
            master_targets: 4 + machines / 10,
            boot_groups,
            seed,
        };
        let file = SourceFile::new("g.yaml", "g.yaml", plan_yaml(&shape));
        let plan = load::load_plan(&file).expect("generated plans load");
        let validation = validate::validate(&plan);
        prop_assert!(validation.diagnostics.is_empty(), "{:?}", validation.diagnostics);

        let assignment = &validation.assignment;
        for (m, (_, machine)) in plan.machines.iter().enumerate() {
            let target = assignment.machine_target[m].expect("every machine has a master target");
            prop_assert_eq!(plan.master_targets.get_index(target).1.os.value, machine.os.value);
        }
        let index = plan.machines.index();
        for (_, group) in plan.replication_groups.iter() {
            let targets: std::collections::HashSet<_> = group
                .machines
                .value
                .iter()
                .map(|member| assignment.machine_target[index[member.value.as_str()]])
                .collect();
            prop_assert_eq!(targets.len(), 1, "a group spans several master targets");
        }
        prop_assert!(assignment.disks.iter().all(|&d| d <= 60));

        let again = validate::validate(&plan);
        prop_assert_eq!(&again.assignment.machine_target, &assignment.machine_target);
    }
}
