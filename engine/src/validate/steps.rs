//! Boot-group steps, checked from the file alone (`boot-order::step`): exactly one kind per
//! step, a command with a program, a `HOST:PORT` that parses, an HTTP(S) URL, a status code
//! that exists, and a timeout that is positive, at most a day, and not on a manual step.
//!
//! Nothing here runs a step or connects anywhere: `validate`, `plan`, `graph`, `diff` and
//! `show` run on untrusted changes (README, Security). Containment of a command's program
//! is `paths`' part (`plan::path-outside`).

use crate::diagnostic::{Diagnostic, codes};
use crate::model::{Plan, Step, StepKind};
use crate::span::Spanned;

/// The longest timeout a step may have: a failback night is shorter than this.
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

pub(super) fn check(plan: &Plan, out: &mut Vec<Diagnostic>) {
    for group in plan.boot_order.iter() {
        for (list, steps) in [("before", &group.before), ("after", &group.after)] {
            for step in steps {
                check_step(&group.name.value, list, step, out);
            }
        }
    }
}

fn error(message: String) -> Diagnostic {
    Diagnostic::error(codes::BOOT_ORDER_STEP, message)
}

fn check_step(group: &str, list: &str, step: &Spanned<Step>, out: &mut Vec<Diagnostic>) {
    let kinds = step.value.kinds();
    let at = format!("a step in `{list}` of boot group `{group}`");
    match kinds.as_slice() {
        [] => out.push(
            error(format!("{at} names no kind"))
                .with_label(step.span, "no `tcp`, `http`, `command` or `manual`")
                .with_help("give the step exactly one of `tcp: HOST:PORT`, `http: {url: …}`, `command: [PROGRAM, ARGS…]` or `manual: MESSAGE`"),
        ),
        [_] => {}
        [(first, _), rest @ ..] => {
            let mut diagnostic = error(format!(
                "{at} names {} kinds; a step is one check or action",
                kinds.len()
            ));
            for (kind, span) in rest {
                diagnostic = diagnostic.with_label(
                    *span,
                    format!("`{}` beside `{}`", kind.as_str(), first.as_str()),
                );
            }
            out.push(diagnostic.with_help("split it into one step per kind; steps of a list run in order"));
        }
    }
    if let Some(command) = &step.value.command {
        match command.value.first() {
            None => out.push(
                error(format!("{at} has an empty command"))
                    .with_label(command.span, "no program")
                    .with_help("name the program first, relative to the plan file: `command: [./checks/ready.sh, --quick]`"),
            ),
            Some(program) if program.value.trim().is_empty() => out.push(
                error(format!("{at} has an empty program name"))
                    .with_label(program.span, "empty")
                    .with_help("name the program, relative to the plan file: `./checks/ready.sh`"),
            ),
            Some(_) => {}
        }
    }
    if let Some(address) = &step.value.tcp
        && let Err(why) = parse_host_port(&address.value)
    {
        out.push(
            error(format!("{at}: `{}` {why}", address.value))
                .with_label(address.span, "not HOST:PORT")
                .with_help("write the address as `HOST:PORT`, e.g. `db-01.contoso.local:1433` or `[fd00::1]:443`"),
        );
    }
    if let Some(http) = &step.value.http {
        let url = &http.value.url;
        let lower = url.value.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://"))
            || url.value.len() <= "https://".len()
        {
            out.push(
                error(format!("{at}: `{}` is not an HTTP or HTTPS URL", url.value))
                    .with_label(url.span, "not http:// or https://")
                    .with_help("write the full URL, e.g. `https://db-health.contoso.local/ready`"),
            );
        }
        if let Some(status) = &http.value.expect_status
            && !(100..=599).contains(&status.value)
        {
            out.push(
                error(format!("{at}: {} is not an HTTP status", status.value))
                    .with_label(status.span, "between 100 and 599")
                    .with_help("expect the status the service answers when ready, e.g. `200`"),
            );
        }
    }
    if let Some(timeout) = &step.value.timeout {
        let problem = if step.value.kind() == Some(StepKind::Manual) {
            Some("a manual step waits for a person and has no timeout; remove `timeout`")
        } else if timeout.value.0.is_zero() {
            Some("a timeout of zero fails the step before it starts; give it time, e.g. `5m`")
        } else if timeout.value.0 > MAX_TIMEOUT {
            Some("a step may take at most a day (`24h`); a longer wait belongs in a `manual` step")
        } else {
            None
        };
        if let Some(help) = problem {
            out.push(
                error(format!(
                    "{at} has a timeout of {} that cannot apply",
                    timeout.value
                ))
                .with_label(timeout.span, "this timeout")
                .with_help(help),
            );
        }
    }
}

/// `HOST:PORT`, `[IPV6]:PORT`: the host and the port, or why not.
pub fn parse_host_port(address: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or("has no port after the `]`")?;
        (host, port)
    } else {
        address.rsplit_once(':').ok_or("has no `:PORT`")?
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !address.starts_with('[') && host.contains(':') {
        return Err("is an IPv6 address without brackets; write `[ADDRESS]:PORT`");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("has no port between 1 and 65535"),
        Ok(port) => Ok((host, port)),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_host_port;
    use crate::{SourceFile, load, validate};

    fn step_messages(steps: &str) -> Vec<String> {
        let text = format!(
            "version: 1\nname: t\nprovider: {{sim: {{world: w}}}}\ngoal: failed-back\n\
             site: {{vcenter: v, configuration_server: c, process_server: p}}\n\
             machines:\n  m: {{os: linux, datastore: ds}}\n\
             boot_order:\n  - name: g\n    machines: [m]\n    after:\n{steps}"
        );
        let file = SourceFile::new("t.yaml", "t.yaml", text);
        let plan = load::load_plan(&file).expect("loads");
        validate::validate(&plan)
            .diagnostics
            .into_iter()
            .filter(|d| d.code == crate::diagnostic::codes::BOOT_ORDER_STEP)
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn empty_commands_and_steps_of_no_or_two_kinds_are_refused() {
        assert_eq!(
            step_messages("      - command: []\n"),
            ["a step in `after` of boot group `g` has an empty command"]
        );
        assert_eq!(
            step_messages("      - command: [\"  \"]\n"),
            ["a step in `after` of boot group `g` has an empty program name"]
        );
        assert_eq!(
            step_messages("      - timeout: 5m\n"),
            ["a step in `after` of boot group `g` names no kind"]
        );
        assert_eq!(
            step_messages("      - {tcp: 'h:1', manual: hi}\n"),
            ["a step in `after` of boot group `g` names 2 kinds; a step is one check or action"]
        );
        assert!(step_messages("      - {tcp: 'h:1', timeout: 24h}\n").is_empty());
        assert_eq!(
            step_messages("      - {tcp: 'h:1', timeout: 25h}\n").len(),
            1
        );
    }

    #[test]
    fn addresses_parse_with_ports_and_brackets() {
        assert_eq!(parse_host_port("db-01:1433"), Ok(("db-01", 1433)));
        assert_eq!(parse_host_port("[::1]:80"), Ok(("::1", 80)));
        assert!(parse_host_port("db-01").is_err());
        assert!(parse_host_port("db-01:0").is_err());
        assert!(parse_host_port("db-01:http").is_err());
        assert!(parse_host_port(":80").is_err());
        assert!(parse_host_port("::1:80").is_err());
    }
}
