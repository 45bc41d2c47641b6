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

#[cfg(test)]
mod tests {
    use super::super::testkit::{Estate, codes, healthy};
    use super::*;
    use crate::provider::facts::Stage;

    #[test]
    fn the_memory_of_every_machine_failing_back_to_a_host_is_summed_into_one_error() {
        let estate = Estate::new();
        let facts = healthy(Stage::Reprotected);
        let names: Vec<_> = estate.plan.machines.iter().map(|(n, _)| n.span).collect();
        let mut demand = HashMap::new();
        let host: &mut HostDemand = demand.entry("esx-01").or_default();
        host.add(40, names[0]);
        host.add(40, names[1]);
        let mut out = Vec::new();
        esxi_memory(&facts, &demand, &mut out, &mut Unchecked::default());
        assert_eq!(codes(&out), [codes::PREFLIGHT_ESXI_MEMORY]);
        assert!(
            out[0].message.contains("64 GiB")
                && out[0]
                    .message
                    .contains("2 machines failing back to it need 80 GiB"),
            "{}",
            out[0].message
        );
        assert_eq!(out[0].labels.len(), 2);
        assert!(
            out[0]
                .help
                .as_deref()
                .unwrap_or("")
                .contains("at least 16 GiB")
        );
    }

    #[test]
    fn a_full_datastore_is_refused_and_enough_room_is_not() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::FailedOver);
        let span = estate
            .plan
            .machines
            .iter()
            .next()
            .expect("a machine")
            .1
            .datastore
            .span;
        let mut demand = HashMap::new();
        demand
            .entry("vsan-01")
            .or_insert_with(HostDemand::default)
            .add(1024, span);
        let mut out = Vec::new();
        datastore_capacity(&facts, &demand, &mut out, &mut Unchecked::default());
        assert!(out.is_empty(), "1,024 GiB fit in 1,024 GiB free: {out:#?}");

        facts
            .datastores
            .get_mut("vsan-01")
            .expect("vsan-01")
            .free_gib = Some(1000);
        datastore_capacity(&facts, &demand, &mut out, &mut Unchecked::default());
        assert_eq!(codes(&out), [codes::PREFLIGHT_DATASTORE]);
        assert_eq!(estate.labelled(&out[0]), "vsan-01");
        assert!(
            out[0]
                .help
                .as_deref()
                .unwrap_or("")
                .contains("at least 24 GiB")
        );
    }
}
