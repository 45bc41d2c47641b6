//! Whether failback and commit may run now: the maintenance window.

use super::outstanding::OutstandingWork;
use crate::diagnostic::{Diagnostic, codes};
use crate::model::{Plan, Timestamp};

pub(super) fn maintenance_window(
    plan: &Plan,
    pending: &OutstandingWork,
    now: Timestamp,
    out: &mut Vec<Diagnostic>,
) {
    let Some(window) = &plan.maintenance_window else {
        return;
    };
    let count = pending
        .list
        .iter()
        .flatten()
        .filter(|p| p.failback || p.commit)
        .count();
    let machines = if count == 1 {
        "1 machine".to_string()
    } else {
        format!("{count} machines")
    };
    if now >= window.end.value {
        out.push(
            Diagnostic::error(
                codes::PREFLIGHT_MAINTENANCE_WINDOW,
                format!("the maintenance window ended at {}; failback and commit of {machines} cannot run", window.end.value),
            )
            .with_label(window.end.span, "this window has passed")
            .with_help("agree a new window for the downtime and set `maintenance_window` to it"),
        );
    } else if now < window.start.value {
        out.push(
            Diagnostic::warning(
                codes::PREFLIGHT_MAINTENANCE_WINDOW,
                format!(
                    "the maintenance window opens at {}; failback and commit of {machines} will not run before then",
                    window.start.value
                ),
            )
            .with_label(window.start.span, "not open yet")
            .with_help("run `apply` inside the window, or set `goal: reprotected` to replicate now and fail back later"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::outstanding::Outstanding;
    use super::super::testkit::Estate;
    use super::*;
    use crate::diagnostic::Severity;
    use crate::provider::facts::Stage;

    fn work(stage: Stage) -> OutstandingWork {
        OutstandingWork {
            offset: 0,
            list: vec![Some(Outstanding::new(stage, Stage::Committed)); 2],
        }
    }

    fn at(text: &str) -> Timestamp {
        Timestamp(text.parse().expect("a timestamp"))
    }

    #[test]
    fn before_the_window_is_a_warning_at_its_start_and_after_it_an_error_at_its_end() {
        let estate = Estate::new();
        let mut out = Vec::new();
        maintenance_window(
            &estate.plan,
            &work(Stage::Reprotected),
            at("2026-12-05T21:00:00Z"),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Warning);
        assert_eq!(estate.labelled(&out[0]), "2026-12-05T22:00:00Z");
        assert!(out[0].message.contains("2 machines"), "{}", out[0].message);

        let mut out = Vec::new();
        maintenance_window(
            &estate.plan,
            &work(Stage::Reprotected),
            at("2026-12-06T04:00:00Z"),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Error);
        assert_eq!(estate.labelled(&out[0]), "2026-12-06T04:00:00Z");
    }

    #[test]
    fn inside_the_window_nothing_is_said() {
        let estate = Estate::new();
        let mut out = Vec::new();
        maintenance_window(
            &estate.plan,
            &work(Stage::Reprotected),
            at("2026-12-05T22:00:00Z"),
            &mut out,
        );
        assert!(out.is_empty(), "{out:#?}");
    }
}
