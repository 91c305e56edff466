//! Rendering a scope back to IAM policy JSON, and as an STS session policy.

use std::collections::BTreeMap;

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
        self.session_policy_in(&[])
    }

    /// [`Scope::session_policy`], plus, when `regions` is not empty, a final statement
    /// `CustodyRegions` denying every action outside them (`aws:RequestedRegion`), the same
    /// fence [`crate::decide`] applies. [`crate::Grant::session_policy`] calls this.
    pub fn session_policy_in(&self, regions: &[String]) -> Result<String, PolicyTooLarge> {
        let mut value = to_value(self, true);
        if !regions.is_empty()
            && let Some(Value::Array(statements)) = value.get_mut("Statement")
        {
            let mut condition = BTreeMap::new();
            condition.insert("aws:RequestedRegion", one_or_many(regions.iter().cloned()));
            let mut block = BTreeMap::new();
            block.insert("StringNotEquals", object(condition));
            let mut fence = BTreeMap::new();
            fence.insert("Sid", Value::String("CustodyRegions".to_owned()));
            fence.insert("Effect", Value::String("Deny".to_owned()));
            fence.insert("Action", Value::String("*".to_owned()));
            fence.insert("Resource", Value::String("*".to_owned()));
            fence.insert("Condition", object(block));
            statements.push(object(fence));
        }
        let json = value.to_string();
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
///
/// Keys are emitted in sorted order whether or not serde_json's `preserve_order` feature is
/// on somewhere in the build, so the text is the same everywhere (the log hashes it).
pub(crate) fn to_value(scope: &Scope, for_sts: bool) -> Value {
    let mut policy = BTreeMap::new();
    policy.insert("Version", Value::String(scope.version.clone()));
    if let Some(id) = &scope.id {
        policy.insert("Id", Value::String(id.clone()));
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
    policy.insert("Statement", Value::Array(statements));
    object(policy)
}

fn statement(s: &Statement, for_sts: bool) -> Value {
    let mut out = BTreeMap::new();
    if let Some(sid) = &s.sid {
        out.insert("Sid", Value::String(sid.clone()));
    }
    let effect = match s.effect {
        super::Effect::Allow => "Allow",
        super::Effect::Deny => "Deny",
    };
    out.insert("Effect", Value::String(effect.to_owned()));
    let (name, actions) = match &s.actions {
        Actions::Action(list) => ("Action", list),
        Actions::NotAction(list) => ("NotAction", list),
    };
    out.insert(name, one_or_many(actions.iter().map(|a| a.text.clone())));
    let (name, resources) = match &s.resources {
        Resources::Resource(list) => ("Resource", list),
        Resources::NotResource(list) => ("NotResource", list),
    };
    out.insert(name, one_or_many(resources.iter().map(|r| r.text.clone())));
    let mut block: BTreeMap<&str, BTreeMap<&str, Value>> = BTreeMap::new();
    for c in s
        .conditions
        .iter()
        .filter(|c| !(for_sts && c.is_source_ip()))
    {
        block
            .entry(c.operator.name())
            .or_default()
            .insert(&c.key_text, one_or_many(c.values.iter().cloned()));
    }
    if !block.is_empty() {
        let block = block
            .into_iter()
            .map(|(op, keys)| (op, object(keys)))
            .collect();
        out.insert("Condition", object(block));
    }
    object(out)
}

/// A JSON object with its keys inserted in sorted order.
fn object(entries: BTreeMap<&str, Value>) -> Value {
    let mut map = Map::new();
    for (k, v) in entries {
        map.insert(k.to_owned(), v);
    }
    Value::Object(map)
}

fn one_or_many(items: impl ExactSizeIterator<Item = String>) -> Value {
    let mut items = items.map(Value::String).collect::<Vec<_>>();
    if items.len() == 1 {
        items.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}
