//! Names: the format version, names defined twice, lists that repeat an entry, and
//! references to names that are not defined.

use std::collections::HashMap;

use super::PlanIndex;
use crate::diagnostic::{Diagnostic, Suggestions, codes};
use crate::model::{FORMAT_VERSION, NamedMap, Plan};
use crate::span::Spanned;

pub(super) fn check(plan: &Plan, index: &PlanIndex<'_>, out: &mut Vec<Diagnostic>) {
    if plan.version.value != FORMAT_VERSION {
        out.push(
            Diagnostic::error(
                codes::PLAN_SCHEMA,
                format!("unsupported plan format version `{}`", plan.version.value),
            )
            .with_label(plan.version.span, "unsupported version")
            .with_help(format!(
                "this lifeboat reads plan format version {FORMAT_VERSION}"
            )),
        );
    }

    // The leg home needs names the failback leg does not (ASR's reprotect to Azure names its
    // process server, run-as account and policy); without them `reprotect-home` cannot be
    // sent, so a plan that goes that far must give them.
    if let Some(goal) = &plan.goal
        && goal.value == crate::model::Goal::Protected
        && plan.site.value.home.is_none()
    {
        out.push(
            Diagnostic::error(
                codes::PLAN_SCHEMA,
                "goal `protected` needs `site.home`: the names of the leg back to Azure",
            )
            .with_label(goal.span, "reprotects the machines to Azure")
            .with_label(plan.site.span, "no `home` here")
            .with_help(
                "add `home: {process_server: …, run_as_account: …}` under `site` (the process server on the VMware site and the configuration server's run-as account; `policy` defaults to `auto`)",
            ),
        );
    }

    duplicate_keys(&plan.machines, "machine", out);
    duplicate_keys(&plan.master_targets, "master target", out);
    duplicate_keys(&plan.replication_groups, "replication group", out);
    duplicate_entries(
        plan.boot_order.iter().map(|g| &g.name),
        "boot group",
        "boot order",
        out,
    );

    // Built on the first unknown reference, once per set: a valid plan pays nothing, and a
    // plan with every reference misspelt pays one index, not one scan per reference.
    let machine_index = std::cell::OnceCell::new();
    let target_index = std::cell::OnceCell::new();
    let machine_names = || machine_index.get_or_init(|| Suggestions::new(plan.machines.names()));
    let target_names =
        || target_index.get_or_init(|| Suggestions::new(plan.master_targets.names()));

    for (name, machine) in plan.machines.iter() {
        let context = format!("`depends_on` of machine `{}`", name.value);
        duplicate_entries(machine.depends_on.iter(), "machine", &context, out);
        for dep in &machine.depends_on {
            if index.machine(&dep.value).is_none() {
                out.push(unknown(dep, "machine", machine_names()));
            }
        }
        if let Some(mt) = &machine.master_target
            && index.master_target(&mt.value).is_none()
        {
            out.push(unknown(mt, "master target", target_names()));
        }
    }

    for (name, target) in plan.master_targets.iter() {
        let context = format!("`datastores` of master target `{}`", name.value);
        duplicate_entries(target.datastores.iter(), "datastore", &context, out);
    }

    for (name, group) in plan.replication_groups.iter() {
        let context = format!("replication group `{}`", name.value);
        duplicate_entries(group.machines.value.iter(), "machine", &context, out);
        for member in &group.machines.value {
            if index.machine(&member.value).is_none() {
                out.push(unknown(member, "machine", machine_names()));
            }
        }
        if let Some(mt) = &group.master_target
            && index.master_target(&mt.value).is_none()
        {
            out.push(unknown(mt, "master target", target_names()));
        }
    }

    for group in plan.boot_order.iter() {
        let context = format!("boot group `{}`", group.name.value);
        duplicate_entries(group.machines.value.iter(), "machine", &context, out);
        for member in &group.machines.value {
            if index.machine(&member.value).is_none() {
                out.push(unknown(member, "machine", machine_names()));
            }
        }
    }
}

/// A reference to a name that no entry defines, with the closest defined name as a hint.
fn unknown(reference: &Spanned<String>, kind: &str, defined: &Suggestions<'_>) -> Diagnostic {
    let name = &reference.value;
    let help = match defined.best(name) {
        Some(suggestion) => format!("did you mean `{suggestion}`?"),
        None => format!("define {kind} `{name}` or remove the reference"),
    };
    Diagnostic::error(
        codes::PLAN_UNKNOWN_REFERENCE,
        format!("unknown {kind} `{name}`"),
    )
    .with_label(reference.span, format!("no {kind} is named `{name}`"))
    .with_help(help)
}

fn duplicate_keys<T>(map: &NamedMap<T>, kind: &str, out: &mut Vec<Diagnostic>) {
    let mut first: HashMap<&str, &Spanned<String>> = HashMap::with_capacity(map.len());
    for (name, _) in map.iter() {
        if let Some(original) = first.get(name.value.as_str()) {
            out.push(
                Diagnostic::error(
                    codes::PLAN_DUPLICATE,
                    format!("{kind} `{}` is defined twice", name.value),
                )
                .with_label(name.span, "defined again here")
                .with_label(original.span, "first defined here")
                .with_help(format!(
                    "rename or remove one of the two definitions of `{}`",
                    name.value
                )),
            );
        } else {
            first.insert(&name.value, name);
        }
    }
}

fn duplicate_entries<'a>(
    entries: impl Iterator<Item = &'a Spanned<String>>,
    kind: &str,
    context: &str,
    out: &mut Vec<Diagnostic>,
) {
    let mut first: HashMap<&str, &Spanned<String>> = HashMap::new();
    for entry in entries {
        if let Some(original) = first.get(entry.value.as_str()) {
            out.push(
                Diagnostic::error(
                    codes::PLAN_DUPLICATE,
                    format!("{kind} `{}` is listed twice in {context}", entry.value),
                )
                .with_label(entry.span, "listed again here")
                .with_label(original.span, "first listed here")
                .with_help("remove the second entry"),
            );
        } else {
            first.insert(&entry.value, entry);
        }
    }
}
