//! `tcp: HOST:PORT`: polled until a connection succeeds, or the timeout.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{POLL_EVERY, timed_out};
use crate::model::human_duration;
use crate::provider::ProviderError;

/// The longest one connection attempt may take.
const ATTEMPT: Duration = Duration::from_secs(5);

pub(super) async fn poll(id: &str, address: &str, timeout: Duration) -> Result<(), ProviderError> {
    let (id, address) = (id.to_string(), address.to_string());
    // Name resolution and connecting block; a blocking thread keeps the executor free.
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match attempt(&address, left.min(ATTEMPT)) {
                Ok(()) => return Ok(()),
                Err(why) => last = why,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out(format!(
                    "`{id}`: `{address}` did not accept a connection within {} (last: {last})",
                    human_duration(timeout)
                )));
            }
            std::thread::sleep(POLL_EVERY.min(left));
        }
    })
    .await
    .unwrap_or_else(|e| Err(super::failed(format!("the check was interrupted: {e}"))))
}

fn attempt(address: &str, limit: Duration) -> Result<(), String> {
    let limit = limit.max(Duration::from_millis(50));
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?;
    let mut last = "no address".to_string();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}
