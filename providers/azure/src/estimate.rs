//! How long ASR's operations take, as far as anything documented allows an estimate.
//!
//! ASR itself publishes no durations for the VMware failback leg, so the estimate is built
//! only from what is declared or documented, and everything else stays unknown (`None`):
//!
//! - Sending data: a reprotect copies up to every disk back to the site (the plan's upper
//!   bound, `max_transfer_gib`), and a reprotect home copies the disks to Azure again
//!   (initial replication); at the plan's declared `site.link_gbps` that takes
//!   `GiB × 8 × 1.073741824 / Gbps` seconds at best.
//! - Registering: after a failover the mobility agent needs up to 15 minutes to register
//!   before a reprotect can start ("Wait 15 minutes", Microsoft's tutorial *Reprotect from
//!   Azure to Azure VMware Solution private cloud*,
//!   <https://learn.microsoft.com/azure/site-recovery/avs-tutorial-reprotect>; lifeboat's
//!   `preflight::agent-not-registered`), counted once per reprotect as an upper bound.
//! - Failback, commit and a process-server switch send only what changed since the last
//!   sync, or nothing: no documented duration, so unknown.

use std::time::Duration;

use lifeboat_engine::provider::{EstimateOperation, OperationKind};

/// The documented wait for the agent to register after a failover.
const AGENT_REGISTRATION: Duration = Duration::from_secs(15 * 60);

/// Bits in a GiB, in gigabits (link speeds are decimal).
const GIGABITS_PER_GIB: f64 = 8.0 * 1.073_741_824;

/// The estimate of one operation, or `None` when nothing documented times it.
pub fn estimate(operation: &EstimateOperation, link_gbps: Option<f64>) -> Option<Duration> {
    let transfer = || {
        let gbps = link_gbps.filter(|g| g.is_finite() && *g > 0.0)?;
        let seconds = operation.transfer_gib as f64 * GIGABITS_PER_GIB / gbps;
        Duration::try_from_secs_f64(seconds.min(1e9)).ok()
    };
    match operation.kind {
        OperationKind::Reprotect => Some(AGENT_REGISTRATION + transfer()?),
        OperationKind::ReprotectHome => transfer(),
        OperationKind::Failback | OperationKind::Commit | OperationKind::SwitchProcessServer => {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OperationKind, gib: u64) -> EstimateOperation {
        EstimateOperation {
            machine: "m".to_string(),
            kind,
            transfer_gib: gib,
        }
    }

    #[test]
    fn transfer_over_the_declared_link_plus_the_documented_registration() {
        // 1,000 GiB over 1 Gbps: 8,589.9 s, plus 900 s of registration.
        let reprotect = estimate(&op(OperationKind::Reprotect, 1000), Some(1.0)).expect("known");
        assert_eq!(reprotect.as_secs(), 8589 + 900);
        let home = estimate(&op(OperationKind::ReprotectHome, 1000), Some(2.0)).expect("known");
        assert_eq!(home.as_secs(), 4294);
    }

    #[test]
    fn unknown_stays_unknown() {
        assert_eq!(estimate(&op(OperationKind::Reprotect, 1000), None), None);
        assert_eq!(estimate(&op(OperationKind::Failback, 0), Some(10.0)), None);
        assert_eq!(estimate(&op(OperationKind::Commit, 0), Some(10.0)), None);
    }
}
