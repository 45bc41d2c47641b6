//! One plugin process: started in its own process group, requests written to its stdin as
//! JSON lines, answers matched by id from its stdout, its stderr passed to lifeboat's with the
//! plugin's name in front. Everything the plugin writes on stdout is checked: a line that is
//! not a protocol message ends the connection with an error naming the plugin and quoting the
//! line, because a plugin that mixes logs into stdout cannot be trusted to frame answers.
//!
//! Every request has a deadline. `run` and `refresh` may take longer than one, as long as the
//! plugin sends `progress` within each; a plugin that says nothing for a whole deadline is
//! hung, and is killed (its whole process group) with an error saying which request it
//! left unanswered.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use crate::protocol::{self, ErrorObject, ProgressParams, Request, Response};

/// The longest line lifeboat reads from a plugin: the refresh of a 100,000-machine estate
/// is tens of megabytes; anything beyond the input cap is refused, not buffered.
pub const MAX_LINE_BYTES: usize = lifeboat_engine::input::MAX_INPUT_BYTES as usize;

/// How many of the plugin's last stderr lines are kept to explain a crash.
const STDERR_TAIL: usize = 20;

/// How to start a plugin.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The executable, resolved and allowed.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The working directory: the plan's directory, so that relative arguments mean what
    /// they mean in the plan.
    pub dir: PathBuf,
    /// Passed in `initialize`.
    pub config: serde_json::Value,
    /// How long a request may go unanswered (and `run`/`refresh` without progress).
    pub timeout: Duration,
}

impl Spec {
    /// The name used before the plugin has said its own: the executable's file name.
    pub fn program_name(&self) -> String {
        self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with a JSON-RPC error.
    #[error("{}", .0.message)]
    Rpc(ErrorObject),
    /// The process is gone (it exited, or closed its stdout): a new one may be started.
    #[error("{0}")]
    Gone(String),
    /// The plugin broke the protocol (garbage on stdout, an answer to nothing): starting it
    /// again would only do the same.
    #[error("{0}")]
    Protocol(String),
    /// No answer, and no progress, within the timeout; the plugin was killed.
    #[error("{0}")]
    Hung(String),
}

/// How long to wait for an answer.
#[derive(Debug, Clone, Copy)]
pub enum Wait<'a> {
    /// At most this long.
    Within(Duration),
    /// At most this long without a `progress` notification for this key (an operation id,
    /// or `""` for a refresh).
    Progressing(Duration, &'a str),
}

type Answer = Result<serde_json::Value, CallError>;

/// What the reader tasks and the callers share.
#[derive(Debug)]
struct Shared {
    /// The name shown in messages and in front of stderr lines: the executable's until the
    /// plugin says its own in `initialize`.
    name: Mutex<String>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// Set once, when the connection is over, with the reason every later call gets.
    over: Mutex<Option<CallError>>,
    /// When the last `progress` for each key came.
    progress: Mutex<HashMap<String, Instant>>,
    stderr_tail: Mutex<VecDeque<String>>,
    pgid: Option<rustix::process::Pid>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn name(&self) -> String {
        lock(&self.name).clone()
    }

    /// Ends the connection: every waiting and later call gets `reason`; the process group is
    /// killed so that nothing of it is left running.
    fn end(&self, reason: CallError) {
        {
            let mut over = lock(&self.over);
            if over.is_none() {
                *over = Some(reason.clone());
            }
        }
        let reason = lock(&self.over).clone().unwrap_or(reason);
        for (_, waiting) in lock(&self.pending).drain() {
            let _ = waiting.send(Err(reason.clone()));
        }
        self.kill();
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH when the group is already gone, which is what is wanted.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }

    fn over(&self) -> Option<CallError> {
        lock(&self.over).clone()
    }

    fn last_words(&self) -> String {
        let tail = lock(&self.stderr_tail);
        if tail.is_empty() {
            String::new()
        } else {
            let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
            format!("; its last lines on stderr:\n    {}", lines.join("\n    "))
        }
    }
}

/// A running plugin process.
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    child: Arc<tokio::sync::Mutex<Child>>,
    next_id: AtomicU64,
}

impl Connection {
    /// Starts the plugin in its own process group (so a Ctrl-C at the terminal reaches
    /// lifeboat alone, which then decides when the plugin stops), with its stdin and stdout
    /// for the protocol and its stderr passed through. Must run inside a tokio runtime.
    pub fn spawn(spec: &Spec) -> Result<Self, String> {
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .current_dir(&spec.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command.spawn().map_err(|error| {
            format!(
                "cannot start the plugin `{}`: {error}",
                spec.program.display()
            )
        })?;
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(rustix::process::Pid::from_raw);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the plugin's standard streams could not be opened".to_string());
        };
        let shared = Arc::new(Shared {
            name: Mutex::new(spec.program_name()),
            pending: Mutex::default(),
            over: Mutex::default(),
            progress: Mutex::default(),
            stderr_tail: Mutex::default(),
            pgid,
        });
        if let Some(pgid) = pgid {
            live::add(pgid);
        }
        let child = Arc::new(tokio::sync::Mutex::new(child));
        tokio::spawn(read_stderr(shared.clone(), BufReader::new(stderr)));
        tokio::spawn(read_stdout(
            shared.clone(),
            child.clone(),
            BufReader::new(stdout),
        ));
        Ok(Self {
            shared,
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            child,
            next_id: AtomicU64::new(1),
        })
    }

    pub fn name(&self) -> String {
        self.shared.name()
    }

    /// The name the plugin gave itself, for every later message and log line.
    pub fn set_name(&self, name: &str) {
        *lock(&self.shared.name) = name.to_string();
    }

    /// Whether the connection is over (the process died, broke the protocol or hung).
    pub fn is_over(&self) -> bool {
        self.shared.over().is_some()
    }

    /// Why the connection is over, if it is.
    pub fn over_reason(&self) -> Option<CallError> {
        self.shared.over()
    }

    /// Sends a request and waits for its answer.
    pub async fn call(
        &self,
        method: &str,
        params: Option<serde_json::Value>,
        wait: Wait<'_>,
    ) -> Answer {
        if let Some(over) = self.shared.over() {
            return Err(over);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        lock(&self.shared.pending).insert(id, reply);
        let request = Request {
            jsonrpc: protocol::JSONRPC.to_string(),
            id,
            method: method.to_string(),
            params,
        };
        let mut line = serde_json::to_string(&request).map_err(|e| {
            CallError::Protocol(format!("`{method}` params cannot be written as JSON: {e}"))
        })?;
        line.push('\n');
        if let Err(error) = self.write(&line).await {
            lock(&self.shared.pending).remove(&id);
            let gone = CallError::Gone(format!(
                "the plugin `{}` stopped reading its stdin ({error})",
                self.name()
            ));
            self.shared.end(gone.clone());
            return Err(self.shared.over().unwrap_or(gone));
        }
        let (limit, key) = match wait {
            Wait::Within(limit) => (limit, None),
            Wait::Progressing(limit, key) => (limit, Some(key)),
        };
        let mut since = Instant::now();
        loop {
            let left = limit.saturating_sub(since.elapsed());
            match tokio::time::timeout(left, &mut answer).await {
                Ok(Ok(result)) => return result,
                Ok(Err(_)) => {
                    return Err(self.shared.over().unwrap_or_else(|| {
                        CallError::Gone(format!("the plugin `{}` went away", self.name()))
                    }));
                }
                Err(_) => {
                    let progressed =
                        key.and_then(|key| lock(&self.shared.progress).get(key).copied());
                    if let Some(at) = progressed.filter(|at| *at > since) {
                        since = at;
                        continue;
                    }
                    lock(&self.shared.pending).remove(&id);
                    let what = if key.is_some() {
                        "and sent no progress"
                    } else {
                        ""
                    };
                    let hung = CallError::Hung(format!(
                        "the plugin `{}` did not answer `{method}` within {} {what}; it is taken for hung and was stopped",
                        self.name(),
                        humanize(limit),
                    ).replace("  ", " ").replace(" ;", ";"));
                    self.shared.end(hung.clone());
                    return Err(hung);
                }
            }
        }
    }

    async fn write(&self, line: &str) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "stdin already closed",
            ));
        };
        pipe.write_all(line.as_bytes()).await?;
        pipe.flush().await
    }

    /// Ends the process: `shutdown`, then the end of its stdin, then, after `grace`, a kill of
    /// its whole process group (helpers it started included).
    pub async fn close(&self, grace: Duration) -> Option<ExitStatus> {
        self.end(grace, true).await
    }

    /// Like [`Self::close`]; without `shutdown` when `send_shutdown` is false, so the end of
    /// stdin alone must make the plugin exit. The exit status, if it exited within `grace`.
    pub async fn end(&self, grace: Duration, send_shutdown: bool) -> Option<ExitStatus> {
        if send_shutdown && self.shared.over().is_none() {
            let _ = self
                .call(protocol::method::SHUTDOWN, None, Wait::Within(grace))
                .await;
        }
        drop(self.stdin.lock().await.take());
        let status = {
            let mut child = self.child.lock().await;
            tokio::time::timeout(grace, child.wait())
                .await
                .ok()
                .and_then(Result::ok)
        };
        self.shared.end(CallError::Gone(format!(
            "the plugin `{}` was shut down",
            self.name()
        )));
        if let Some(pgid) = self.shared.pgid {
            live::remove(pgid);
        }
        status
    }

    /// Kills the process group now (the conformance kit's crash, a test's SIGKILL).
    pub fn kill(&self) {
        self.shared.end(CallError::Gone(format!(
            "the plugin `{}` was killed",
            self.name()
        )));
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.kill();
        if let Some(pgid) = self.shared.pgid {
            live::remove(pgid);
        }
    }
}

fn humanize(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Reads one line of at most `cap` bytes (without its `\n`); `Ok(None)` at the end.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    cap: usize,
) -> std::io::Result<Option<Result<Vec<u8>, usize>>> {
    let mut line = Vec::new();
    let mut over = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(if line.is_empty() && !over {
                None
            } else if over {
                Some(Err(cap))
            } else {
                Some(Ok(line))
            });
        }
        let (chunk, done) = match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => (&buffer[..at], Some(at + 1)),
            None => (buffer, None),
        };
        if !over {
            if line.len() + chunk.len() > cap {
                over = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buffer.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(if over { Err(cap) } else { Ok(line) }));
        }
    }
}

/// A line quoted in an error: the first 120 characters, on one line.
pub fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text.trim_end_matches('\r').chars().take(120).collect();
    if bytes.len() > text.len() {
        format!("{text}…")
    } else {
        text
    }
}

async fn read_stdout<R: AsyncBufRead + Unpin>(
    shared: Arc<Shared>,
    child: Arc<tokio::sync::Mutex<Child>>,
    mut stdout: R,
) {
    loop {
        match read_line_capped(&mut stdout, MAX_LINE_BYTES).await {
            Ok(Some(Ok(line))) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Err(violation) = dispatch(&shared, &line) {
                    shared.end(CallError::Protocol(violation));
                    return;
                }
            }
            Ok(Some(Err(cap))) => {
                let message = format!(
                    "the plugin `{}` wrote a line of more than {cap} bytes on stdout",
                    shared.name()
                );
                shared.end(CallError::Protocol(message));
                return;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Its stdout is closed: the process has ended, or is about to.
    let status = {
        let mut child = child.lock().await;
        tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    };
    // Give the stderr reader a moment to pass on the last words.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let how = match status {
        Some(status) => match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("was ended by a signal ({status})"),
        },
        None => "closed its stdout".to_string(),
    };
    let message = format!(
        "the plugin `{}` {how}{}",
        shared.name(),
        shared.last_words()
    );
    shared.end(CallError::Gone(message));
}

/// Handles one line from the plugin's stdout; `Err` says how it breaks the protocol.
fn dispatch(shared: &Shared, line: &[u8]) -> Result<(), String> {
    let name = shared.name();
    let not_protocol = || {
        format!(
            "the plugin `{name}` wrote something on stdout that is not a protocol message: `{}` (stdout carries only JSON-RPC messages, one per line; logs go to stderr)",
            quote(line)
        )
    };
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|_| not_protocol())?;
    let object = value.as_object().ok_or_else(not_protocol)?;
    if object.get("jsonrpc").and_then(|v| v.as_str()) != Some(protocol::JSONRPC) {
        return Err(not_protocol());
    }
    match (object.get("method"), object.get("id")) {
        (Some(method), None) => {
            if method.as_str() != Some(protocol::method::PROGRESS) {
                return Err(format!(
                    "the plugin `{name}` sent the notification `{}`, which protocol v1 does not have",
                    quote(method.to_string().as_bytes())
                ));
            }
            let params: ProgressParams = serde_json::from_value(
                object.get("params").cloned().unwrap_or_default(),
            )
            .map_err(|e| {
                format!("the plugin `{name}` sent a `progress` that does not fit its schema: {e}")
            })?;
            let key = params.id.clone().unwrap_or_default();
            lock(&shared.progress).insert(key, Instant::now());
            tracing::debug!(plugin = %name, id = ?params.id, message = ?params.message, percent = ?params.percent, "progress");
            Ok(())
        }
        (Some(_), Some(_)) => Err(format!(
            "the plugin `{name}` sent a request (`{}`); in protocol v1 only lifeboat sends requests",
            quote(line)
        )),
        (None, _) => {
            let response: Response =
                serde_json::from_value(value.clone()).map_err(|_| not_protocol())?;
            let answer = match (response.result, response.error) {
                (_, Some(error)) => Err(CallError::Rpc(error)),
                (Some(result), None) => Ok(result),
                (None, None) => Ok(serde_json::Value::Null),
            };
            let Some(id) = response.id else {
                let message = match answer {
                    Err(CallError::Rpc(error)) => error.message,
                    _ => "no message".to_string(),
                };
                return Err(format!(
                    "the plugin `{name}` could not read a request: {message}"
                ));
            };
            let waiting = lock(&shared.pending).remove(&id);
            match waiting {
                Some(waiting) => {
                    let _ = waiting.send(answer);
                    Ok(())
                }
                None => Err(format!(
                    "the plugin `{name}` answered request {id}, which was not asked or was already answered"
                )),
            }
        }
    }
}

async fn read_stderr<R: AsyncBufRead + Unpin>(shared: Arc<Shared>, mut stderr: R) {
    // Lines are passed on as they come, cut at 64 KiB so a runaway plugin cannot fill memory.
    while let Ok(Some(line)) = read_line_capped(&mut stderr, 64 * 1024).await {
        let line = match line {
            Ok(line) => String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string(),
            Err(cap) => format!("(a line of more than {cap} bytes, not shown)"),
        };
        let name = shared.name();
        tracing::info!(plugin = %name, "{line}");
        eprintln!("[{name}] {line}");
        let mut tail = lock(&shared.stderr_tail);
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Every plugin process group still running, so that none outlives lifeboat: [`stop_all`]
/// is called on the way out, whatever path the command took.
mod live {
    use std::sync::Mutex;

    use rustix::process::Pid;

    static LIVE: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

    pub fn add(pgid: Pid) {
        super::lock(&LIVE).push(pgid);
    }

    pub fn remove(pgid: Pid) {
        super::lock(&LIVE).retain(|p| *p != pgid);
    }

    pub fn take() -> Vec<Pid> {
        std::mem::take(&mut *super::lock(&LIVE))
    }
}

/// Stops every plugin this process started and did not close: the end of their stdin first
/// (the protocol's signal to exit), then, after `grace`, SIGKILL to each process group.
pub fn stop_all(grace: Duration) {
    let groups = live::take();
    if groups.is_empty() {
        return;
    }
    let started = Instant::now();
    for pgid in &groups {
        let _ = rustix::process::kill_process_group(*pgid, rustix::process::Signal::TERM);
    }
    while started.elapsed() < grace
        && groups
            .iter()
            .any(|pgid| rustix::process::test_kill_process_group(*pgid).is_ok())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pgid in groups {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}
