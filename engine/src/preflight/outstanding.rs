//! What each machine still has to go through to reach the goal, which decides the checks
//! that apply to it: a machine at its goal is not checked.

use crate::model::{Machine, Plan};
use crate::provider::OperationKind;
use crate::provider::facts::Stage;
use crate::span::Spanned;

/// Which operations a machine still needs to reach the goal.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outstanding {
    pub(super) reprotect: bool,
    pub(super) failback: bool,
    pub(super) commit: bool,
    pub(super) reprotect_home: bool,
}

impl Outstanding {
    pub(super) fn new(stage: Stage, goal: Stage) -> Self {
        let needs = |kind: OperationKind| stage <= kind.from_stage() && kind.to_stage() <= goal;
        Self {
            reprotect: needs(OperationKind::Reprotect),
            failback: needs(OperationKind::Failback),
            commit: needs(OperationKind::Commit),
            reprotect_home: needs(OperationKind::ReprotectHome),
        }
    }

    pub(super) fn any(self) -> bool {
        self.reprotect || self.failback || self.commit || self.reprotect_home
    }
}

/// What each selected machine (a contiguous range of the plan's machines: all of them, or
/// one) still has to go through; `None` for a machine the site does not have.
pub(super) struct OutstandingWork {
    pub(super) offset: usize,
    pub(super) list: Vec<Option<Outstanding>>,
}

impl OutstandingWork {
    pub(super) fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.list.len()
    }
}

/// Machines outside the range have nothing pending here.
impl std::ops::Index<usize> for OutstandingWork {
    type Output = Option<Outstanding>;

    fn index(&self, m: usize) -> &Option<Outstanding> {
        m.checked_sub(self.offset)
            .and_then(|i| self.list.get(i))
            .unwrap_or(&None)
    }
}

/// The plan's machines in `range`, with their positions.
pub(super) fn machines_in(
    plan: &Plan,
    range: std::ops::Range<usize>,
) -> impl Iterator<Item = (usize, (&Spanned<String>, &Spanned<Machine>))> + '_ {
    range.map(|m| (m, plan.machines.get_index(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_needs_the_operations_between_its_stage_and_the_goal() {
        let from_failed_over = Outstanding::new(Stage::FailedOver, Stage::FailedBack);
        assert!(from_failed_over.reprotect && from_failed_over.failback);
        assert!(!from_failed_over.commit && !from_failed_over.reprotect_home);

        let reprotected = Outstanding::new(Stage::Reprotected, Stage::Committed);
        assert!(!reprotected.reprotect && reprotected.failback && reprotected.commit);

        let at_goal = Outstanding::new(Stage::Committed, Stage::Committed);
        assert!(!at_goal.any());
        // Ahead of the goal: nothing to do either (the planner reports it, preflight skips it).
        assert!(!Outstanding::new(Stage::Committed, Stage::Reprotected).any());
    }

    #[test]
    fn machines_outside_the_selected_range_have_nothing_outstanding() {
        let one = Outstanding::new(Stage::FailedOver, Stage::Reprotected);
        let work = OutstandingWork {
            offset: 3,
            list: vec![Some(one)],
        };
        assert_eq!(work.range(), 3..4);
        assert!(work[3].is_some());
        assert!(work[2].is_none() && work[4].is_none());
    }
}
