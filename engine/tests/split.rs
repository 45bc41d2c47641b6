//! A large plan is parsed in two halves at once (`load::split`); the result must be exactly
//! what one parse gives, and any problem must be reported by the whole parse, as before.

use lifeboat_engine::generate::{EstateShape, plan_yaml};
use lifeboat_engine::load::{self, Duplicates, split};
use lifeboat_engine::{Plan, SourceFile};

fn file(text: String) -> SourceFile {
    SourceFile::new("lifeboat.yaml", "lifeboat.yaml", text)
}

fn large_plan() -> String {
    let text = plan_yaml(&EstateShape {
        master_targets: 480,
        ..EstateShape::design_bar()
    });
    assert!(text.len() > split::MIN_BYTES, "{} bytes", text.len());
    text
}

fn whole(text: &str) -> Result<Plan, Box<lifeboat_engine::diagnostic::Diagnostic>> {
    load::parse_document(&file(text.to_string()), "plan", Duplicates::PassThrough)
}

#[test]
fn a_large_plan_loads_the_same_in_two_halves() {
    let text = large_plan();
    // The fast path is taken: the file has the shape it understands.
    assert!(split::find_cut(&text, "machines").is_some());
    let halves = load::load_plan(&file(text.clone())).expect("a valid plan");
    let one = whole(&text).expect("a valid plan");
    assert_eq!(halves.machines.value.len(), 10_000);
    assert_eq!(halves, one);
    assert_eq!(halves.machines.span, one.machines.span);
    // `Spanned` compares values only; the spans must point into the real file too.
    let spans = |plan: &Plan| -> Vec<_> {
        plan.machines
            .value
            .iter()
            .map(|(name, machine)| (name.span, machine.span, machine.value.os.span))
            .collect()
    };
    assert_eq!(spans(&halves), spans(&one));
}

#[test]
fn a_duplicate_across_the_halves_is_kept_for_validation_to_report() {
    let text = large_plan();
    let last = text.rfind("\n  vm-").expect("a machine") + 1;
    let name_end = last + text[last..].find(':').expect("a key");
    let renamed = format!("{}  vm-000000{}", &text[..last], &text[name_end..]);
    let halves = load::load_plan(&file(renamed.clone())).expect("loads");
    assert_eq!(halves, whole(&renamed).expect("loads"));
    let names: Vec<&str> = halves.machines.value.names().collect();
    assert_eq!(names.iter().filter(|n| **n == "vm-000000").count(), 2);
}

#[test]
fn a_broken_half_is_reported_by_the_whole_parse() {
    let text = large_plan();
    let late = text.rfind("\n  vm-").expect("a machine") + 1;
    let broken = [
        // a type error late in the second half
        format!("{}  vm-x: {{os: beos}}\n{}", &text[..late], &text[late..]),
        // a syntax error early in the first half
        text.replacen("\n  vm-000001:", "\n  vm-000001: [", 1),
    ];
    for (i, broken) in broken.into_iter().enumerate() {
        assert_ne!(broken, text, "case {i} breaks nothing");
        let from_halves = load::load_plan(&file(broken.clone())).expect_err("invalid");
        let from_whole = whole(&broken).expect_err("invalid");
        assert_eq!(from_halves, from_whole, "case {i}");
    }
}

mod mutations {
    use proptest::prelude::*;

    use super::{file, large_plan, whole};
    use lifeboat_engine::load;

    /// Bits of YAML that change structure: the fast path must never answer differently from
    /// the whole parse, whatever they break.
    const SNIPPETS: &[&str] = &[
        "\n",
        ": ",
        "- ",
        "  ",
        " ",
        "#",
        "\"",
        "'",
        "{",
        "}",
        "[",
        "&a ",
        "*a",
        "\t",
        "?",
        "machines:\n",
        "---\n",
        "\n  vm-000001:\n    os: linux\n",
        "\nboot_order: []\n",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        #[test]
        fn the_halves_agree_with_the_whole_parse(
            edits in proptest::collection::vec((0.0f64..1.0, 0..SNIPPETS.len()), 1..4)
        ) {
            let mut text = large_plan();
            for (at, snippet) in edits {
                // Anywhere in the file, on a character boundary.
                let mut at = (text.len() as f64 * at) as usize;
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, SNIPPETS[snippet]);
            }
            let halves = load::load_plan(&file(text.clone()));
            let one = whole(&text);
            match (&halves, &one) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a, b);
                    let spans = |p: &lifeboat_engine::Plan| -> Vec<_> {
                        p.machines.value.iter().map(|(n, m)| (n.span, m.span)).collect()
                    };
                    prop_assert_eq!(spans(a), spans(b));
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                _ => prop_assert!(false, "one parse failed and the other did not"),
            }
        }
    }
}
