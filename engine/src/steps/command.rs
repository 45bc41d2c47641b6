//! `command: [PROGRAM, ARGS…]`: the program (relative to the plan's directory) runs with the
//! plan's directory as working directory, `LIFEBOAT_BOOT_GROUP`, `LIFEBOAT_MACHINES` and
//! `LIFEBOAT_RUN_ID` in its environment, in a process group of its own. A timeout kills the
//! whole group, so a script's children (a `sleep`, a hung `curl`) die with it. What it
//! prints is passed on line by line, capped per stream so a chatty script cannot flood the
//! apply's log.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Runner, failed, timed_out};
use crate::apply::StepOutput;
use crate::model::human_duration;
use crate::planner::PlannedStep;
use crate::provider::ProviderError;

/// Lines passed on per stream; the rest are counted.
const MAX_LINES: usize = 200;
/// Bytes of one line passed on; the rest of the line is cut.
const MAX_LINE_BYTES: usize = 4096;
/// How often the runner looks whether the command has ended.
const WAIT_EVERY: Duration = Duration::from_millis(20);
/// How long the output readers may take after the command ended (a background process it
/// left may hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

pub(super) async fn run(
    runner: &Runner,
    step: &PlannedStep,
    argv: &[String],
    timeout: Duration,
    output: &(dyn Fn(StepOutput) + Send + Sync),
) -> Result<(), ProviderError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(failed(format!("`{}` has an empty command", step.id)));
    };
    let mut command = Command::new(runner.plan_dir.join(program));
    command
        .args(args)
        .current_dir(&runner.plan_dir)
        .env("LIFEBOAT_BOOT_GROUP", &step.boot_group)
        .env("LIFEBOAT_MACHINES", step.machines.join(","))
        .env("LIFEBOAT_RUN_ID", &runner.run_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    let id = step.id.clone();
    let shown = format!("`{}`", argv.join(" "));
    let (lines, receive) = std::sync::mpsc::channel::<StepOutput>();
    let blocking = tokio::task::spawn_blocking(move || {
        let mut child = command
            .spawn()
            .map_err(|e| failed(format!("`{id}`: {shown} cannot start: {e}")))?;
        let readers = [
            child
                .stdout
                .take()
                .map(|out| read_lines(&id, "stdout", out, lines.clone())),
            child
                .stderr
                .take()
                .map(|err| read_lines(&id, "stderr", err, lines.clone())),
        ];
        drop(lines);
        let ended = wait(&mut child, timeout);
        for reader in readers.into_iter().flatten() {
            let started = Instant::now();
            while !reader.is_finished() && started.elapsed() < DRAIN {
                std::thread::sleep(WAIT_EVERY);
            }
        }
        match ended {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(failed(format!("`{id}`: {shown} failed ({status})"))),
            None => Err(timed_out(format!(
                "`{id}`: {shown} did not finish within {}; its process group was killed",
                human_duration(timeout)
            ))),
        }
    });
    // Lines arrive while the command runs; they are passed on from here, on the executor's
    // side, in the order they were read.
    let forward = Arc::new(std::sync::Mutex::new(receive));
    let result = loop {
        let receive = forward.clone();
        let batch: Vec<StepOutput> = {
            let receive = receive
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            receive.try_iter().collect()
        };
        for line in batch {
            output(line);
        }
        if blocking.is_finished() {
            break blocking
                .await
                .unwrap_or_else(|e| Err(failed(format!("the command was interrupted: {e}"))));
        }
        tokio::time::sleep(WAIT_EVERY).await;
    };
    let receive = forward
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for line in receive.try_iter() {
        output(line);
    }
    result
}

/// Waits for the command until `timeout`; then kills its process group and returns `None`.
fn wait(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(WAIT_EVERY),
            _ => {
                kill_group(child);
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Kills the command and everything it started in its process group.
fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    {
        // The group's id is the command's pid (`process_group(0)`).
        if let Some(group) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
    let _ = child.kill();
}

/// Reads one stream line by line into `lines`, capped; runs until the stream closes.
fn read_lines(
    step: &str,
    stream: &'static str,
    pipe: impl Read + Send + 'static,
    lines: std::sync::mpsc::Sender<StepOutput>,
) -> std::thread::JoinHandle<()> {
    let step = step.to_string();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        let mut passed = 0usize;
        let mut dropped = 0usize;
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if passed >= MAX_LINES {
                dropped += 1;
                continue;
            }
            passed += 1;
            let mut line = String::from_utf8_lossy(&buffer).trim_end().to_string();
            if line.len() > MAX_LINE_BYTES {
                let mut cut = MAX_LINE_BYTES;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push_str(" …");
            }
            let _ = lines.send(StepOutput {
                step: step.clone(),
                stream,
                line,
            });
        }
        if dropped > 0 {
            let _ = lines.send(StepOutput {
                step,
                stream,
                line: format!("… {dropped} more lines not shown"),
            });
        }
    })
}
