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
