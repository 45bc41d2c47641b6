//! The maintenance window must end after it starts.

use crate::diagnostic::{Diagnostic, codes};
use crate::model::Plan;

pub(super) fn check(plan: &Plan, out: &mut Vec<Diagnostic>) {
    let Some(window) = &plan.maintenance_window else {
        return;
    };
    let (start, end) = (&window.start, &window.end);
    if end.value <= start.value {
        let relation = if end.value == start.value {
            "equals"
        } else {
            "is before"
        };
        out.push(
            Diagnostic::error(
                codes::MAINTENANCE_WINDOW_INVALID,
                format!(
                    "the maintenance window ends at {} but starts at {}",
                    end.value, start.value
                ),
            )
            .with_label(end.span, format!("end {relation} start"))
            .with_label(start.span, "start")
            .with_help(
                "set `end` after `start`; times need an offset, e.g. `2026-12-06T04:00:00Z`",
            ),
        );
    }
}
