//! Rendering a scope back to IAM policy JSON, and as an STS session policy.

use serde_json::{Map, Value};

use super::{Actions, Resources, Scope, Statement};

/// The largest session policy, in characters of minified JSON, that is sent to STS.
///
/// AssumeRole limits the plain-text session policy to 2048 characters (and its packed form
/// separately); this crate checks the minified JSON against 2048.
pub const SESSION_POLICY_LIMIT: usize = 2048;

/// The scope does not fit in an STS session policy; it is never truncated, because a
/// truncated policy would either fail at STS or, worse, drop a `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session policy is {size} characters, over the {limit}-character limit of sts assumerole")]
pub struct PolicyTooLarge {
    /// Characters in the minified policy.
    pub size: usize,
    /// The limit ([`SESSION_POLICY_LIMIT`]).
    pub limit: usize,
}

impl Scope {
    /// The scope as a minified IAM policy for STS AssumeRole's `Policy` parameter: the second
    /// fence, enforced by AWS itself, behind the gateway's own decision.
    ///
    /// Conditions on `aws:SourceIp` are left out, because AWS sees the gateway's address, not
    /// the agent's: an `Allow` keeps its other conditions (the gateway still checks the
    /// address), and a `Deny` that tests the address is left to the gateway entirely (sent
    /// without its condition it would deny every address). Everything else is rendered as
    /// parsed. Errors with the size if the result exceeds [`SESSION_POLICY_LIMIT`].
    pub fn session_policy(&self) -> Result<String, PolicyTooLarge> {
        let json = to_value(self, true).to_string();
        let size = json.chars().count();
        if size > SESSION_POLICY_LIMIT {
            return Err(PolicyTooLarge {
                size,
                limit: SESSION_POLICY_LIMIT,
            });
        }
        Ok(json)
    }
}

/// The IAM JSON form; with `for_sts`, shaped for a session policy as documented above.
pub(crate) fn to_value(scope: &Scope, for_sts: bool) -> Value {
    let mut policy = Map::new();
    policy.insert("Version".to_owned(), Value::String(scope.version.clone()));
    if let Some(id) = &scope.id {
        policy.insert("Id".to_owned(), Value::String(id.clone()));
    }
    let statements = scope
        .statements
        .iter()
        .filter(|s| {
            !(for_sts
                && s.effect == super::Effect::Deny
                && s.conditions.iter().any(|c| c.is_source_ip()))
        })
        .map(|s| statement(s, for_sts))
        .collect();
    policy.insert("Statement".to_owned(), Value::Array(statements));
    Value::Object(policy)
}

fn statement(s: &Statement, for_sts: bool) -> Value {
    let mut out = Map::new();
    if let Some(sid) = &s.sid {
        out.insert("Sid".to_owned(), Value::String(sid.clone()));
    }
    out.insert(
        "Effect".to_owned(),
        Value::String(
            match s.effect {
                super::Effect::Allow => "Allow",
                super::Effect::Deny => "Deny",
            }
            .to_owned(),
        ),
    );
    let (name, actions) = match &s.actions {
        Actions::Action(list) => ("Action", list),
        Actions::NotAction(list) => ("NotAction", list),
    };
    out.insert(
        name.to_owned(),
        one_or_many(actions.iter().map(|a| a.text.clone())),
    );
    let (name, resources) = match &s.resources {
        Resources::Resource(list) => ("Resource", list),
        Resources::NotResource(list) => ("NotResource", list),
    };
    out.insert(
        name.to_owned(),
        one_or_many(resources.iter().map(|r| r.text.clone())),
    );
    let mut block = Map::new();
    for c in s
        .conditions
        .iter()
        .filter(|c| !(for_sts && c.is_source_ip()))
    {
        let keys = block
            .entry(c.operator.name().to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(keys) = keys {
            keys.insert(c.key_text.clone(), one_or_many(c.values.iter().cloned()));
        }
    }
    if !block.is_empty() {
        out.insert("Condition".to_owned(), Value::Object(block));
    }
    Value::Object(out)
}

fn one_or_many(items: impl ExactSizeIterator<Item = String>) -> Value {
    let mut items = items.map(Value::String).collect::<Vec<_>>();
    if items.len() == 1 {
        items.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}
