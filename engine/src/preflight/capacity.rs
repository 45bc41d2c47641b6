//! Sums over machines judged once: free space per datastore (alternate-location recovery
//! copies every disk) and free memory per ESXi host at failback.

use std::collections::HashMap;

use super::MAX_LABELS;
use super::unchecked::Unchecked;
use crate::diagnostic::{Diagnostic, codes};
use crate::provider::facts::Facts;
use crate::span::Span;

#[derive(Default)]
pub(super) struct HostDemand {
    pub(super) gib: u64,
    pub(super) count: usize,
    pub(super) spans: Vec<Span>,
}

impl HostDemand {
    pub(super) fn add(&mut self, gib: u64, span: Span) {
        self.gib = self.gib.saturating_add(gib);
        self.count += 1;
        if self.spans.len() < MAX_LABELS {
            self.spans.push(span);
        }
    }
}

pub(super) fn datastore_capacity(
    facts: &Facts,
    demand: &HashMap<&str, HostDemand>,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    let mut names: Vec<&&str> = demand.keys().collect();
    names.sort_unstable();
    for name in names {
        let need = &demand[*name];
        let Some(observed) = facts.datastores.get(*name) else {
            continue;
        };
        match observed.free_gib {
            Some(free) if free == 0 || need.gib > free => {
                let mut diagnostic = Diagnostic::error(
                    codes::PREFLIGHT_DATASTORE,
                    format!(
                        "datastore `{name}` is full: {free} GiB free, {} GiB needed",
                        need.gib
                    ),
                );
                for span in &need.spans {
                    diagnostic = diagnostic.with_label(*span, "placed on this datastore");
                }
                out.push(diagnostic.with_help(format!(
                    "free at least {} GiB on `{name}`, or place some machines on another datastore; alternate-location recovery copies every disk in full",
                    need.gib.saturating_sub(free).max(1)
                )));
            }
            None => {
                if let Some(span) = need.spans.first() {
                    unchecked.note(codes::PREFLIGHT_DATASTORE, "free datastore space", *span);
                }
            }
            Some(_) => {}
        }
    }
}

pub(super) fn esxi_memory(
    facts: &Facts,
    demand: &HashMap<&str, HostDemand>,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    let mut hosts: Vec<&&str> = demand.keys().collect();
    hosts.sort_unstable();
    for host in hosts {
        let need = &demand[*host];
        match facts.esxi_hosts.get(*host).and_then(|h| h.memory_free_gib) {
            Some(free) if need.gib > free => {
                let machines = if need.count == 1 {
                    "1 machine".to_string()
                } else {
                    format!("{} machines", need.count)
                };
                let mut diagnostic = Diagnostic::error(
                    codes::PREFLIGHT_ESXI_MEMORY,
                    format!(
                        "ESXi host `{host}` has {free} GiB of memory free; {machines} failing back to it need {} GiB",
                        need.gib
                    ),
                );
                for span in &need.spans {
                    diagnostic =
                        diagnostic.with_label(*span, format!("starts on `{host}` at failback"));
                }
                out.push(diagnostic.with_help(format!(
                    "free at least {} GiB of memory on `{host}` (or move VMs off it) before failback; otherwise ASR fails with 8038",
                    need.gib - free
                )));
            }
            Some(_) => {}
            None => {
                if let Some(span) = need.spans.first() {
                    unchecked.note(
                        codes::PREFLIGHT_ESXI_MEMORY,
                        "ESXi memory at failback",
                        *span,
                    );
                }
            }
        }
    }
}
