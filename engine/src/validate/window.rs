//! The maintenance window must end after it starts, and the link speed that times the
//! schedule inside it must be a speed.

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

/// `site.link_gbps` must be a positive, finite number of gigabits per second.
pub(super) fn link_speed(plan: &Plan, out: &mut Vec<Diagnostic>) {
    let Some(link) = &plan.site.value.link_gbps else {
        return;
    };
    if !(link.value.is_finite() && link.value > 0.0) {
        out.push(
            Diagnostic::error(
                codes::PLAN_SCHEMA,
                format!("`site.link_gbps` is {}, not a speed", link.value),
            )
            .with_label(link.span, "must be more than 0")
            .with_help("give the usable bandwidth between Azure and the site in gigabits per second, e.g. `1` or `0.5`"),
        );
    }
}
