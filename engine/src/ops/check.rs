//! `validate` as an operation: the plan's own rules ([`crate::validate`]) and where the files
//! it names may be ([`crate::paths`]), as one list of diagnostics in file order. Loading the
//! file is [`crate::load::load_plan_all`]; the two stay apart so a caller can start on other
//! work (the simulator's world) between them.

use crate::paths::Containment;
use crate::validate::{self, Validation};
use crate::{Plan, diagnostic};

/// Validates `plan`. `containment` is the plan's repository and the directories allowed
/// outside it; `None` when the plan's directory cannot be resolved, which reading the plan
/// reports.
pub fn validate(plan: &Plan, containment: Option<&Containment>) -> Validation {
    let mut validation = validate::validate(plan);
    if let Some(containment) = containment {
        let outside = containment.check_plan(plan);
        if !outside.is_empty() {
            validation.diagnostics.extend(outside);
            diagnostic::sort(&mut validation.diagnostics);
        }
    }
    validation
}
