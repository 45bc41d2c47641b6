//! The maintenance window as the executor sees it: failbacks and commits wait for it to
//! open, and a boot group is not started when its estimated end passes the window's end
//! (it stays where it is, so no tier is left half on each site).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::ApplyOptions;
use crate::model::human_duration;
use crate::planner::{Action, ExecutionPlan, PlannedChange};

/// Wall-clock time measured on tokio's clock from the moment the apply started. The
/// executor sleeps on tokio's clock, so it reads the time there too: under a paused clock
/// (the engine's tests) waiting for a window an hour away takes no real time, and the time
/// read after the wait agrees with the wait.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: jiff::Timestamp,
    at: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            wall: jiff::Timestamp::now(),
            at: Instant::now(),
        }
    }

    pub fn now(&self) -> jiff::Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.at.elapsed()).unwrap_or_default();
        self.wall
            .saturating_add(elapsed)
            .unwrap_or(jiff::Timestamp::MAX)
    }
}

/// One boot group for the window rule: its failbacks, and how long the group takes from its
/// first failback to its last commit or step (the plan's schedule); `None`: unknown, then
/// the group is started and the window rule of each operation applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupGate {
    pub name: String,
    pub failbacks: Vec<String>,
    pub duration: Option<Duration>,
}

/// What the executor does with a ready change.
pub(super) enum Admit {
    Start,
    /// A failback or commit before the window opens.
    Defer,
    /// Not this apply: why.
    Hold(String),
}

pub(super) struct Gates<'a> {
    window: Option<(jiff::Timestamp, jiff::Timestamp)>,
    groups: &'a [GroupGate],
    /// The group of each failback, by change id.
    group_of: HashMap<&'a str, usize>,
    /// Per group, once decided: `None` started, `Some(why)` held.
    decided: Vec<Option<Option<String>>>,
}

impl<'a> Gates<'a> {
    pub(super) fn new(_plan: &ExecutionPlan, options: &'a ApplyOptions) -> Self {
        let mut group_of = HashMap::new();
        for (g, group) in options.groups.iter().enumerate() {
            for failback in &group.failbacks {
                group_of.insert(failback.as_str(), g);
            }
        }
        Self {
            window: options.window,
            groups: &options.groups,
            group_of,
            decided: vec![None; options.groups.len()],
        }
    }

    pub(super) fn admit(&mut self, change: &PlannedChange, now: jiff::Timestamp) -> Admit {
        let Some((start, end)) = self.window else {
            return Admit::Start;
        };
        if !matches!(change.action, Action::Failback | Action::Commit) {
            return Admit::Start;
        }
        if now < start {
            return Admit::Defer;
        }
        if change.action != Action::Failback || now >= end {
            // After the end, the operation's own window rule refuses it, with its code.
            return Admit::Start;
        }
        let Some(&g) = self.group_of.get(change.id.as_str()) else {
            return Admit::Start;
        };
        let group = &self.groups[g];
        let decision = self.decided[g].get_or_insert_with(|| {
            let duration = group.duration?;
            let ends = now.saturating_add(jiff::SignedDuration::try_from(duration).ok()?).ok()?;
            (ends > end).then(|| {
                format!(
                    "boot group `{}` is estimated to take {} and would end at {}, after the maintenance window closes at {end}; it was not started, so its machines stay where they are",
                    group.name,
                    human_duration(duration),
                    ends.round(jiff::Unit::Second).unwrap_or(ends),
                )
            })
        });
        match decision {
            None => Admit::Start,
            Some(why) => Admit::Hold(why.clone()),
        }
    }

    pub(super) fn is_open(&self, now: jiff::Timestamp) -> bool {
        self.window.is_none_or(|(start, _)| now >= start)
    }

    pub(super) fn until_open(&self, now: jiff::Timestamp) -> Duration {
        self.window
            .and_then(|(start, _)| Duration::try_from(start.duration_since(now)).ok())
            .unwrap_or(Duration::ZERO)
    }

    pub(super) fn opens_at(&self) -> String {
        self.window
            .map(|(start, _)| start.to_string())
            .unwrap_or_default()
    }

    pub(super) fn not_open_reason(&self) -> String {
        format!(
            "the maintenance window opens at {}; `--no-wait` leaves failbacks and commits for an apply inside it",
            self.opens_at()
        )
    }
}
