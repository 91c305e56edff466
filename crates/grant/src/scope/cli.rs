//! The short command-line form of a scope.

use super::{Effect, Scope, ScopeError, Statement};

struct Pending {
    flag: &'static str,
    effect: Effect,
    actions: Vec<String>,
    resources: Vec<String>,
    sid: Option<String>,
}

pub(crate) fn parse<I, S>(args: I) -> Result<Scope, ScopeError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut args = args.into_iter();
    let mut statements = Vec::new();
    let mut current: Option<Pending> = None;
    while let Some(arg) = args.next() {
        let arg = arg.as_ref();
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg, None),
        };
        let flag: &'static str = match flag {
            "--allow" => "--allow",
            "--deny" => "--deny",
            "--resource" => "--resource",
            "--sid" => "--sid",
            other => return Err(ScopeError::Cli(format!("unknown argument `{other}`"))),
        };
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .map(|v| v.as_ref().to_owned())
                .ok_or_else(|| ScopeError::Cli(format!("`{flag}` needs a value")))?,
        };
        let items: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if items.is_empty() {
            return Err(ScopeError::Cli(format!("`{flag}` needs a value")));
        }
        match flag {
            "--allow" | "--deny" => {
                if let Some(done) = current.take() {
                    statements.push(finish(done, statements.len())?);
                }
                current = Some(Pending {
                    flag,
                    effect: if flag == "--allow" {
                        Effect::Allow
                    } else {
                        Effect::Deny
                    },
                    actions: items,
                    resources: Vec::new(),
                    sid: None,
                });
            }
            _ => {
                let Some(open) = current.as_mut() else {
                    return Err(ScopeError::Cli(format!(
                        "`{flag} {value}` must follow `--allow` or `--deny`"
                    )));
                };
                if flag == "--sid" {
                    open.sid = Some(value);
                } else {
                    open.resources.extend(items);
                }
            }
        }
    }
    if let Some(done) = current.take() {
        statements.push(finish(done, statements.len())?);
    }
    if statements.is_empty() {
        return Err(ScopeError::Cli(
            "no statements: use `--allow ACTION --resource ARN`".to_owned(),
        ));
    }
    Ok(Scope::new(statements))
}

fn finish(p: Pending, index: usize) -> Result<Statement, ScopeError> {
    let head = format!("`{} {}`", p.flag, p.actions.join(","));
    if p.resources.is_empty() {
        return Err(ScopeError::Cli(format!(
            "{head} needs at least one `--resource` (use `--resource '*'` for actions without one)"
        )));
    }
    let statement = Statement::new(p.effect, &p.actions, &p.resources)
        .map_err(|e| ScopeError::Cli(format!("{head} (statement {index}): {e}")))?;
    match p.sid {
        None => Ok(statement),
        Some(sid) if !sid.is_empty() && sid.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(statement.with_sid(sid))
        }
        Some(sid) => Err(ScopeError::Cli(format!(
            "{head}: sid `{sid}` must be ascii letters and digits"
        ))),
    }
}
