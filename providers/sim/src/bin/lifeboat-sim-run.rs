//! Runs one operation against a world file and waits for it: a driver for tests (the crash
//! test kills it mid-operation) and for poking at a world by hand.
//!
//! Usage: `lifeboat-sim-run WORLD MACHINE KIND OPERATION_ID [MASTER_TARGET PROCESS_SERVER
//! DATASTORE RETENTION_DRIVE original|alternate]`

use std::process::ExitCode;

use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::{OperationKind, OperationRequest, Provider, ReprotectSettings};
use lifeboat_provider_sim::SimProvider;

fn usage() -> ExitCode {
    eprintln!(
        "usage: lifeboat-sim-run WORLD MACHINE KIND OPERATION_ID [MASTER_TARGET PROCESS_SERVER DATASTORE RETENTION_DRIVE original|alternate]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (world, machine, kind, id) = match args.as_slice() {
        [w, m, k, i, ..] => (w, m, k, i),
        _ => return usage(),
    };
    let Some(kind) = OperationKind::ALL.into_iter().find(|k| k.as_str() == kind) else {
        return usage();
    };
    let reprotect = match &args[4..] {
        [] => None,
        [mt, ps, ds, rd, recovery] => Some(ReprotectSettings {
            master_target: mt.clone(),
            process_server: ps.clone(),
            datastore: ds.clone(),
            retention_drive: rd.clone(),
            recovery: if recovery == "alternate" {
                Recovery::Alternate
            } else {
                Recovery::Original
            },
            failback_policy: "auto".to_string(),
            home: None,
        }),
        _ => return usage(),
    };
    let provider = match SimProvider::open(world) {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let request = OperationRequest {
        id: id.as_str().into(),
        machine: machine.clone(),
        kind,
        reprotect,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(provider.run(&request)) {
        Ok(outcome) => {
            println!("{} is {}", machine, outcome.stage);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "error: {} ({})",
                error.message,
                error.code.as_deref().unwrap_or("no code")
            );
            ExitCode::FAILURE
        }
    }
}
