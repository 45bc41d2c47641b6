//! `lifeboat plan` (first version): load and validate the plan, refresh the facts of both
//! sites through the provider, run every preflight check, and show where each machine is
//! against the goal. Building the change DAG and the diff is the planner's job, still to come.

use std::path::Path;

use lifeboat_engine::provider::{OperationKind, Provider, Stage};
use lifeboat_engine::{
    Diagnostic, SourceFile, diagnostic, load, model::Timestamp, preflight, validate,
};

use super::Exit;
use crate::render::diagnostics::{counts, render_human};

pub fn run(plan_path: &Path) -> Exit {
    let file = match super::validate::read_plan(plan_path) {
        Ok(file) => file,
        Err(diagnostic) => {
            let empty = SourceFile::new(plan_path.display().to_string(), plan_path, String::new());
            eprint!("{}", render_human(&[*diagnostic], &empty));
            return Exit::Error;
        }
    };
    let plan = match load::load_plan(&file) {
        Ok(plan) => plan,
        Err(diagnostic) => {
            eprint!("{}", render_human(&[*diagnostic], &file));
            return Exit::Error;
        }
    };
    let validation = validate::validate(&plan);
    if validation.has_errors() {
        eprint!("{}", render_human(&validation.diagnostics, &file));
        eprintln!(
            "`{}` is invalid: {}",
            file.name(),
            counts(&validation.diagnostics)
        );
        return Exit::Error;
    }
    let Ok(provider) = super::provider::open(plan_path, &plan, &file) else {
        return Exit::Error;
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return Exit::Error;
        }
    };
    let request = preflight::refresh_request(&plan);
    let facts = match runtime.block_on(provider.refresh(&request)) {
        Ok(facts) => facts,
        Err(error) => {
            let code = error
                .code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            eprintln!(
                "error: refreshing from `{}` failed{code}: {}",
                provider.describe().identity,
                error.message
            );
            return Exit::Error;
        }
    };

    let mut diagnostics = validation.diagnostics.clone();
    diagnostics.extend(preflight::preflight(
        &plan,
        &validation.assignment,
        &facts,
        Timestamp(jiff::Timestamp::now()),
    ));
    diagnostic::sort(&mut diagnostics);
    eprint!("{}", render_human(&diagnostics, &file));

    // Where each machine is against the goal.
    let goal = Stage::from_goal(plan.goal());
    let (mut at_goal, mut ahead, mut behind) = (0usize, 0usize, 0usize);
    println!("goal: {goal}");
    for (name, _) in plan.machines.iter() {
        let Some(machine) = facts.machines.get(name.value.as_str()) else {
            println!("  machine.{:<24} not found", name.value);
            continue;
        };
        let stage = machine.stage;
        let note = if let Some(running) = &machine.running {
            format!(
                "{} running (operation `{}`)",
                running.kind, running.operation
            )
        } else if stage < goal {
            behind += 1;
            let steps: Vec<&str> = OperationKind::ALL
                .into_iter()
                .filter(|k| k.from_stage() >= stage && k.to_stage() <= goal)
                .map(OperationKind::as_str)
                .collect();
            format!("needs {}", steps.join(", "))
        } else if stage > goal {
            ahead += 1;
            "ahead of the goal; left alone".to_string()
        } else {
            at_goal += 1;
            "at the goal".to_string()
        };
        println!("  machine.{:<24} {:<12} {note}", name.value, stage.as_str());
    }
    println!(
        "{} machines: {behind} behind the goal, {at_goal} at it, {ahead} ahead of it",
        plan.machines.len()
    );
    let preflight_result = if diagnostics.is_empty() {
        "preflight passed".to_string()
    } else {
        format!("preflight: {}", counts(&diagnostics))
    };
    println!("{preflight_result}");
    if diagnostics.iter().any(Diagnostic::is_error) {
        Exit::Error
    } else {
        Exit::Success
    }
}
