//! Facts the provider could not observe: one "not checked" warning per check and fact,
//! counting the entries concerned, never an error and never silence.

use std::collections::BTreeMap;

use super::MAX_LABELS;
use crate::diagnostic::Diagnostic;
use crate::span::Span;

/// Facts a provider could not observe, gathered per check so each check warns once.
#[derive(Default)]
pub(super) struct Unchecked {
    by_check: BTreeMap<(&'static str, &'static str), (usize, Vec<Span>)>,
}

impl Unchecked {
    pub(super) fn note(&mut self, code: &'static str, fact: &'static str, span: Span) {
        let entry = self.by_check.entry((code, fact)).or_default();
        entry.0 += 1;
        if entry.1.len() < MAX_LABELS {
            entry.1.push(span);
        }
    }

    pub(super) fn into_diagnostics(self, out: &mut Vec<Diagnostic>) {
        for ((code, fact), (count, spans)) in self.by_check {
            let entries = if count == 1 {
                "1 entry".to_string()
            } else {
                format!("{count} entries")
            };
            let mut diagnostic = Diagnostic::warning(
                code,
                format!("{fact} not checked for {entries}: the provider cannot observe it"),
            )
            .with_help(format!("check {fact} at the site by hand before `apply`"));
            for span in spans {
                diagnostic = diagnostic.with_label(span, "not checked");
            }
            out.push(diagnostic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Severity;

    #[test]
    fn each_check_warns_once_counting_every_entry_and_labelling_a_few() {
        let mut unchecked = Unchecked::default();
        for i in 0..10_000 {
            unchecked.note(
                "preflight::vm-powered-on",
                "power state",
                Span::new(i, i + 1),
            );
        }
        unchecked.note("preflight::esxi-memory", "ESXi memory", Span::new(0, 1));
        let mut out = Vec::new();
        unchecked.into_diagnostics(&mut out);
        assert_eq!(out.len(), 2);
        let power = out
            .iter()
            .find(|d| d.code == "preflight::vm-powered-on")
            .expect("power");
        assert_eq!(power.severity, Severity::Warning);
        assert!(power.message.contains("10000 entries"), "{}", power.message);
        assert_eq!(power.labels.len(), MAX_LABELS);
        let memory = out
            .iter()
            .find(|d| d.code == "preflight::esxi-memory")
            .expect("memory");
        assert!(memory.message.contains("for 1 entry"), "{}", memory.message);
    }
}
