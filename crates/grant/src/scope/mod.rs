//! The scope language: IAM-style statements with actions, resources and a few conditions.
//!
//! A [`Scope`] is parsed from the IAM JSON policy shape ([`Scope::from_iam_json`]) or from a
//! short command-line form ([`Scope::from_cli`]), serialises back to IAM policy JSON, and
//! renders as an STS session policy ([`Scope::session_policy`]). Parsing is strict: unknown
//! keys, duplicate keys, malformed ARNs, unsupported operators or condition keys and policy
//! variables are errors naming the field, never ignored, because a silently dropped `Deny` or
//! `Condition` would widen what an agent can do.

mod cli;
mod condition;
mod parse;
mod render;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::arn::{self, ArnPattern};
use crate::wildcard;

pub use condition::Condition;
pub(crate) use condition::EvalContext;
pub use render::{PolicyTooLarge, SESSION_POLICY_LIMIT};

/// A grant's scope: an ordered list of IAM-style statements.
///
/// Evaluation (see [`crate::decide`]): deny by default, an explicit `Deny` wins, and every
/// action/resource pair a request needs must be covered by some `Allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    version: String,
    id: Option<String>,
    statements: Vec<Statement>,
}

/// One statement: effect, the actions and resources it covers, and its conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    actions: Actions,
    resources: Resources,
    conditions: Vec<Condition>,
}

/// A statement's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Effect {
    /// The statement allows what it covers.
    Allow,
    /// The statement denies what it covers; a matching `Deny` overrides every `Allow`.
    Deny,
}

/// Errors from parsing a scope. `path` names the field, e.g. `Statement[1].Resource[0]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The text is not JSON (or has a duplicate key).
    #[error("policy is not valid json: {0}")]
    Json(String),
    /// A key the scope language does not know; refused rather than ignored.
    #[error("unknown field `{field}` in `{path}`")]
    UnknownField {
        /// Where the key appeared.
        path: String,
        /// The key as written.
        field: String,
    },
    /// A required field is absent.
    #[error("`{path}` is missing")]
    MissingField {
        /// The missing field.
        path: String,
    },
    /// A field has the wrong JSON type.
    #[error("`{path}` must be {expected}")]
    WrongType {
        /// The field.
        path: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A field has a value the scope language refuses (malformed ARN, unknown operator…).
    #[error("`{path}`: {detail}")]
    Invalid {
        /// The field.
        path: String,
        /// What is wrong, with the offending input in backticks.
        detail: String,
    },
    /// The command-line form is malformed.
    #[error("scope arguments: {0}")]
    Cli(String),
}

/// `Action` or `NotAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Actions {
    Action(Vec<ActionPattern>),
    NotAction(Vec<ActionPattern>),
}

/// `Resource` or `NotResource`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resources {
    Resource(Vec<ArnPattern>),
    NotResource(Vec<ArnPattern>),
}

/// An action pattern such as `s3:Get*`; kept as written and folded to lower case for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ActionPattern {
    text: String,
    glob: wildcard::Glob,
}

/// A request resource prepared once per decision: the text and, for an ARN, its segments.
pub(crate) struct PreparedResource<'a> {
    pub(crate) text: &'a str,
    pub(crate) segments: Option<arn::Segments<'a>>,
    /// For a template resource (`?` standing for unknown characters, see
    /// [`arn::TEMPLATE_SERVICES`]): the text with each `?` as [`arn::UNKNOWN`].
    pub(crate) unknowns: Option<String>,
}

// === impl Scope ===

impl Scope {
    /// A scope from statements, with policy version `2012-10-17`.
    pub fn new(statements: Vec<Statement>) -> Self {
        Self {
            version: "2012-10-17".to_owned(),
            id: None,
            statements,
        }
    }

    /// Parse the IAM JSON policy shape (`{"Version": …, "Statement": [ … ]}`).
    ///
    /// `Statement` may be one object or an array; `Action`, `NotAction`, `Resource`,
    /// `NotResource` a string or an array of strings. Supported condition operators:
    /// `IpAddress` / `NotIpAddress` (`aws:SourceIp`), `StringEquals` / `StringNotEquals` /
    /// `StringLike` / `StringNotLike` (`aws:RequestedRegion`, `s3:prefix`, `s3:delimiter`,
    /// `s3:max-keys`), `DateGreaterThan` / `DateGreaterThanEquals` / `DateLessThan` /
    /// `DateLessThanEquals` (`aws:CurrentTime`). Anything else is an error naming the field.
    pub fn from_iam_json(json: &str) -> Result<Self, ScopeError> {
        parse::from_json(json)
    }

    /// Parse the command-line form: `--allow ACTION[,ACTION…]` or `--deny …`, each followed
    /// by one or more `--resource ARN[,ARN…]`; `--sid NAME` names the statement it follows.
    /// `--flag=value` is accepted too.
    ///
    /// ```
    /// # use custody_grant::Scope;
    /// let scope = Scope::from_cli([
    ///     "--allow", "s3:GetObject,s3:ListBucket",
    ///     "--resource", "arn:aws:s3:::reports", "--resource", "arn:aws:s3:::reports/*",
    ///     "--deny", "s3:GetObject", "--resource", "arn:aws:s3:::reports/secret/*",
    /// ])?;
    /// assert_eq!(scope.statements().len(), 2);
    /// # Ok::<(), custody_grant::ScopeError>(())
    /// ```
    pub fn from_cli<I, S>(args: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        cli::parse(args)
    }

    /// The statements, in policy order (their index is what a [`crate::Reason`] cites when a
    /// statement has no `Sid`).
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The policy `Version` (default `2012-10-17`).
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        render::to_value(self, false).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = parse::StrictValue::deserialize(deserializer)?;
        parse::from_value(&value.0).map_err(serde::de::Error::custom)
    }
}

// === impl Statement ===

impl Statement {
    /// A statement with `Action` and `Resource` lists and no conditions.
    ///
    /// Each action is `*` or `service:Name` with optional `*` / `?`; each resource is `*` or a
    /// six-part ARN with optional wildcards.
    pub fn new<A, R>(effect: Effect, actions: A, resources: R) -> Result<Self, ScopeError>
    where
        A: IntoIterator,
        A::Item: AsRef<str>,
        R: IntoIterator,
        R::Item: AsRef<str>,
    {
        let actions = actions
            .into_iter()
            .enumerate()
            .map(|(i, a)| ActionPattern::parse(a.as_ref(), &format!("Action[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let resources = resources
            .into_iter()
            .enumerate()
            .map(|(i, r)| parse::arn_pattern(r.as_ref(), &format!("Resource[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if actions.is_empty() {
            return Err(ScopeError::MissingField {
                path: "Action".to_owned(),
            });
        }
        if resources.is_empty() {
            return Err(ScopeError::MissingField {
                path: "Resource".to_owned(),
            });
        }
        Ok(Self {
            sid: None,
            effect,
            actions: Actions::Action(actions),
            resources: Resources::Resource(resources),
            conditions: Vec::new(),
        })
    }

    /// The same statement with a `Sid`.
    pub fn with_sid(mut self, sid: impl Into<String>) -> Self {
        self.sid = Some(sid.into());
        self
    }

    /// The statement's `Sid`, if any.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// The statement's effect.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The statement's conditions (all must hold for it to apply).
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The statement's `Action` patterns as written; `None` for a `NotAction` statement.
    pub fn action_patterns(&self) -> Option<Vec<&str>> {
        match &self.actions {
            Actions::Action(list) => Some(list.iter().map(|p| p.text.as_str()).collect()),
            Actions::NotAction(_) => None,
        }
    }

    /// Whether the statement's `Action` (or `NotAction`) part lets `action` through,
    /// whatever the resource and conditions: the matching `Action` pattern as written, or
    /// `NotAction` when `action` is not excluded. For rules about what a scope could
    /// allow (an operator's auto-approval), not for decisions.
    pub fn action_covers(&self, action: &str) -> Option<&str> {
        let action = action.to_ascii_lowercase();
        match &self.actions {
            Actions::Action(list) => list
                .iter()
                .find(|p| p.matches(&action))
                .map(|p| p.text.as_str()),
            Actions::NotAction(list) => {
                (!list.iter().any(|p| p.matches(&action))).then_some("NotAction")
            }
        }
    }

    /// Whether the statement covers `action` on `resource` under `ctx`. `action` must be
    /// folded to ASCII lower case by the caller (action names are case-insensitive; folding
    /// once per request instead of per comparison keeps decisions fast). With `literal_only`, only an `Action` entry without wildcards that
    /// names `action` counts (for credential-minting actions).
    pub(crate) fn applies(
        &self,
        action: &str,
        resource: &PreparedResource<'_>,
        ctx: &EvalContext<'_>,
        literal_only: bool,
    ) -> bool {
        let action_hit = match &self.actions {
            Actions::Action(list) if literal_only => {
                list.iter().any(|p| p.glob.is_exact() && p.matches(action))
            }
            Actions::NotAction(_) if literal_only => false,
            Actions::Action(list) => list.iter().any(|p| p.matches(action)),
            Actions::NotAction(list) => !list.iter().any(|p| p.matches(action)),
        };
        if !action_hit {
            return false;
        }
        if let (Some(unknowns), Some(template)) = (&resource.unknowns, &resource.segments) {
            return self.covers_template(unknowns, template)
                && self.conditions.iter().all(|c| c.holds(ctx));
        }
        // Matching more may only make a decision stricter (see `ArnPattern::broad`).
        let deny = self.effect == Effect::Deny;
        let resource_hit = match (&self.resources, resource.segments.as_ref()) {
            (Resources::Resource(list), Some(segments)) => list.iter().any(|p| {
                if deny {
                    p.broad().matches(resource.text, Some(segments))
                } else {
                    p.matches_strict(resource.text, Some(segments))
                }
            }),
            (Resources::NotResource(list), Some(segments)) => !list.iter().any(|p| {
                if deny {
                    p.matches_strict(resource.text, Some(segments))
                } else {
                    p.broad().matches(resource.text, Some(segments))
                }
            }),
            // The request's resource is not known (`*`): it could be any resource. An
            // `Allow` covers it only if it covers every resource; a `Deny` applies if it
            // could match one.
            (Resources::Resource(list), None) => match self.effect {
                Effect::Allow => list.iter().any(ArnPattern::is_any),
                Effect::Deny => true,
            },
            (Resources::NotResource(list), None) => match self.effect {
                Effect::Allow => false,
                Effect::Deny => !list.iter().any(ArnPattern::is_any),
            },
        };
        resource_hit && self.conditions.iter().all(|c| c.holds(ctx))
    }
}

impl Statement {
    /// The resource part against a template resource (some characters unknown): an
    /// `Allow` must cover every value it could have, a `Deny` applies if it could match
    /// one (sound over the set, like the unknown resource `*`).
    fn covers_template(&self, unknowns: &str, template: &arn::Segments<'_>) -> bool {
        let Ok(strict) = arn::split(unknowns) else {
            return self.effect == Effect::Deny;
        };
        // Covers every value: matches with each unknown character consumed by a wildcard.
        let covers_all = |p: &ArnPattern| p.matches_strict(unknowns, Some(&strict));
        match (&self.resources, self.effect) {
            (Resources::Resource(list), Effect::Allow) => list.iter().any(covers_all),
            (Resources::NotResource(list), Effect::Allow) => {
                !list.iter().any(|p| p.broad().could_match(template))
            }
            (Resources::Resource(list), Effect::Deny) => {
                list.iter().any(|p| p.broad().could_match(template))
            }
            // Applies unless one pattern surely excludes every value.
            (Resources::NotResource(list), Effect::Deny) => !list.iter().any(covers_all),
        }
    }
}

// === impl ActionPattern ===

impl ActionPattern {
    fn parse(text: &str, path: &str) -> Result<Self, ScopeError> {
        let ok = text == "*"
            || text.split_once(':').is_some_and(|(service, name)| {
                !service.is_empty()
                    && !name.is_empty()
                    // IAM refuses wildcards in the service prefix (and STS would refuse
                    // the session policy): so does the scope.
                    && service
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && name.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'?')
                    })
            });
        if !ok {
            return Err(ScopeError::Invalid {
                path: path.to_owned(),
                detail: format!(
                    "malformed action `{text}`: expected `*` or `service:Action` (wildcards `*` `?` allowed in the action name, not in the service prefix)"
                ),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            glob: wildcard::Glob::new(&text.to_ascii_lowercase()),
        })
    }

    /// `action` must already be ASCII lower case (the pattern is folded at parse time).
    fn matches(&self, action: &str) -> bool {
        self.glob.matches(action, false)
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

impl<'a> PreparedResource<'a> {
    /// Prepare a request resource; `Err` carries why an ARN is malformed.
    pub(crate) fn new(text: &'a str) -> Result<Self, &'static str> {
        if text == "*" {
            return Ok(Self {
                text,
                segments: None,
                unknowns: None,
            });
        }
        let segments = arn::split(text).map_err(|e| e.0)?;
        let unknowns = (arn::TEMPLATE_SERVICES.contains(&segments[1]) && segments[4].contains('?'))
            .then(|| text.replace('?', &arn::UNKNOWN.to_string()));
        Ok(Self {
            text,
            segments: Some(segments),
            unknowns,
        })
    }
}
