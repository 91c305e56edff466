//! The few condition operators and keys that matter for agents, with IAM semantics:
//! the values of one key are alternatives (any may match); all keys and operators of a
//! statement must hold; a key the request does not carry makes a positive operator false and
//! a negated operator (`NotIpAddress`, `StringNotEquals`, `StringNotLike`) true.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use time::OffsetDateTime;

use crate::wildcard;

/// One `Operator: { Key: [values] }` entry of a statement's `Condition` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub(crate) operator: Operator,
    pub(crate) key: Key,
    /// The key as written (rendered back unchanged).
    pub(crate) key_text: String,
    /// The values as written.
    pub(crate) values: Vec<String>,
    pub(crate) parsed: Parsed,
}

/// Supported condition operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operator {
    IpAddress,
    NotIpAddress,
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
    DateGreaterThan,
    DateGreaterThanEquals,
    DateLessThan,
    DateLessThanEquals,
}

/// Supported condition keys. Matching of key names is case-insensitive, as in IAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// `aws:SourceIp`: the agent's address as the gateway sees it.
    SourceIp,
    /// `aws:RequestedRegion`: the request's region.
    RequestedRegion,
    /// `aws:CurrentTime`: the `now` of the decision.
    CurrentTime,
    /// A request-context key (lower case), looked up in `AccessRequest::context`.
    Context(&'static str),
}

/// Values parsed once at policy-parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    Nets(Vec<IpNet>),
    Dates(Vec<OffsetDateTime>),
    Strings,
}

/// Request-context keys a condition may name (lower case). The classifier supplies them in
/// `AccessRequest::context` under these names.
pub(crate) const CONTEXT_KEYS: &[&str] = &["s3:prefix", "s3:delimiter", "s3:max-keys"];

/// What a condition is evaluated against.
pub(crate) struct EvalContext<'a> {
    pub(crate) now: OffsetDateTime,
    pub(crate) region: Option<&'a str>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) context: &'a BTreeMap<String, String>,
}

// === impl Operator ===

impl Operator {
    pub(crate) const ALL: [(&'static str, Operator); 10] = [
        ("IpAddress", Operator::IpAddress),
        ("NotIpAddress", Operator::NotIpAddress),
        ("StringEquals", Operator::StringEquals),
        ("StringNotEquals", Operator::StringNotEquals),
        ("StringLike", Operator::StringLike),
        ("StringNotLike", Operator::StringNotLike),
        ("DateGreaterThan", Operator::DateGreaterThan),
        ("DateGreaterThanEquals", Operator::DateGreaterThanEquals),
        ("DateLessThan", Operator::DateLessThan),
        ("DateLessThanEquals", Operator::DateLessThanEquals),
    ];

    pub(crate) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("", |(name, _)| name)
    }

    fn negated(self) -> bool {
        matches!(
            self,
            Self::NotIpAddress | Self::StringNotEquals | Self::StringNotLike
        )
    }

    /// Whether the operator can be used with the key.
    pub(crate) fn accepts(self, key: &Key) -> bool {
        match self {
            Self::IpAddress | Self::NotIpAddress => matches!(key, Key::SourceIp),
            Self::StringEquals | Self::StringNotEquals | Self::StringLike | Self::StringNotLike => {
                matches!(key, Key::RequestedRegion | Key::Context(_))
            }
            Self::DateGreaterThan
            | Self::DateGreaterThanEquals
            | Self::DateLessThan
            | Self::DateLessThanEquals => matches!(key, Key::CurrentTime),
        }
    }
}

// === impl Key ===

impl Key {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "aws:sourceip" => Some(Self::SourceIp),
            "aws:requestedregion" => Some(Self::RequestedRegion),
            "aws:currenttime" => Some(Self::CurrentTime),
            other => CONTEXT_KEYS
                .iter()
                .find(|k| **k == other)
                .map(|k| Self::Context(k)),
        }
    }
}

// === impl Condition ===

impl Condition {
    /// Whether the condition holds for the request.
    pub(crate) fn holds(&self, ctx: &EvalContext<'_>) -> bool {
        let any = match (&self.key, &self.parsed) {
            (Key::SourceIp, Parsed::Nets(nets)) => match ctx.source_ip {
                Some(ip) => nets.iter().any(|n| n.contains(&ip)),
                None => return self.operator.negated(),
            },
            (Key::CurrentTime, Parsed::Dates(dates)) => {
                let now = ctx.now;
                dates.iter().any(|d| match self.operator {
                    Operator::DateGreaterThan => now > *d,
                    Operator::DateGreaterThanEquals => now >= *d,
                    Operator::DateLessThan => now < *d,
                    Operator::DateLessThanEquals => now <= *d,
                    _ => false,
                })
            }
            (Key::RequestedRegion, Parsed::Strings) => match ctx.region {
                Some(region) => self.any_string(region),
                None => return self.operator.negated(),
            },
            (Key::Context(name), Parsed::Strings) => match lookup(ctx.context, name) {
                Some(value) => self.any_string(value),
                None => return self.operator.negated(),
            },
            // Parsing never builds another combination (see `Operator::accepts`).
            _ => return self.operator.negated(),
        };
        // For a negated operator, `any` is the positive test over its values.
        any != self.operator.negated()
    }

    fn any_string(&self, have: &str) -> bool {
        match self.operator {
            Operator::StringEquals | Operator::StringNotEquals => {
                self.values.iter().any(|v| v == have)
            }
            Operator::StringLike | Operator::StringNotLike => self
                .values
                .iter()
                .any(|v| wildcard::matches(v, have, false)),
            _ => false,
        }
    }

    /// Whether this condition tests the agent's source address, which AWS cannot see
    /// (AWS sees the gateway), so it must stay out of the session policy.
    pub(crate) fn is_source_ip(&self) -> bool {
        matches!(self.key, Key::SourceIp)
    }

    /// The operator as written in IAM JSON, e.g. `StringLike`.
    pub fn operator_name(&self) -> &'static str {
        self.operator.name()
    }

    /// The condition key as written, e.g. `s3:prefix`.
    pub fn key(&self) -> &str {
        &self.key_text
    }

    /// The values as written.
    pub fn values(&self) -> &[String] {
        &self.values
    }
}

fn lookup<'a>(context: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    if let Some(v) = context.get(name) {
        return Some(v);
    }
    context
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
