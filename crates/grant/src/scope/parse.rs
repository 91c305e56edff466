//! Parsing the IAM JSON policy shape, strictly.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::condition::{Condition, Key, Operator, Parsed};
use super::{ActionPattern, Actions, Effect, Resources, Scope, ScopeError, Statement};
use crate::arn::ArnPattern;

/// Policy versions IAM accepts.
const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

pub(crate) fn from_json(json: &str) -> Result<Scope, ScopeError> {
    let value: StrictValue =
        serde_json::from_str(json).map_err(|e| ScopeError::Json(e.to_string()))?;
    from_value(&value.0)
}

pub(crate) fn from_value(value: &Value) -> Result<Scope, ScopeError> {
    let obj = object(value, "policy")?;
    check_keys(obj, "policy", &["Version", "Id", "Statement"])?;
    let version = match obj.get("Version") {
        None => VERSIONS[0].to_owned(),
        Some(v) => {
            let v = string(v, "Version")?;
            if !VERSIONS.contains(&v) {
                return Err(invalid(
                    "Version",
                    format!("unsupported policy version `{v}`, use `2012-10-17`"),
                ));
            }
            v.to_owned()
        }
    };
    let id = obj
        .get("Id")
        .map(|v| string(v, "Id").map(str::to_owned))
        .transpose()?;
    let statements = match obj.get("Statement") {
        None => {
            return Err(ScopeError::MissingField {
                path: "Statement".to_owned(),
            });
        }
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, s)| statement(s, &format!("Statement[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(single @ Value::Object(_)) => vec![statement(single, "Statement")?],
        Some(_) => {
            return Err(ScopeError::WrongType {
                path: "Statement".to_owned(),
                expected: "an object or an array of objects",
            });
        }
    };
    Ok(Scope {
        version,
        id,
        statements,
    })
}

fn statement(value: &Value, path: &str) -> Result<Statement, ScopeError> {
    let obj = object(value, path)?;
    check_keys(
        obj,
        path,
        &[
            "Sid",
            "Effect",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Condition",
        ],
    )?;
    let sid = match obj.get("Sid") {
        None => None,
        Some(v) => {
            let p = format!("{path}.Sid");
            let sid = string(v, &p)?;
            // IAM (and so STS, for the session policy) accepts only ASCII letters and digits.
            if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid(
                    &p,
                    format!("sid `{sid}` must be ascii letters and digits"),
                ));
            }
            Some(sid.to_owned())
        }
    };
    let effect_path = format!("{path}.Effect");
    let effect = match obj.get("Effect") {
        None => return Err(ScopeError::MissingField { path: effect_path }),
        Some(v) => match string(v, &effect_path)? {
            "Allow" => Effect::Allow,
            "Deny" => Effect::Deny,
            other => {
                return Err(invalid(
                    &effect_path,
                    format!("effect `{other}` must be `Allow` or `Deny`"),
                ));
            }
        },
    };
    let actions = {
        let (name, v, positive) = exactly_one(obj, path, "Action", "NotAction")?;
        {
            let p = format!("{path}.{name}");
            let list = strings(v, &p)?
                .into_iter()
                .map(|(text, p)| ActionPattern::parse(text, &p))
                .collect::<Result<Vec<_>, _>>()?;
            if positive {
                Actions::Action(list)
            } else {
                Actions::NotAction(list)
            }
        }
    };
    let resources = {
        let (name, v, positive) = exactly_one(obj, path, "Resource", "NotResource")?;
        {
            let p = format!("{path}.{name}");
            let list = strings(v, &p)?
                .into_iter()
                .map(|(text, p)| arn_pattern(text, &p))
                .collect::<Result<Vec<_>, _>>()?;
            if positive {
                Resources::Resource(list)
            } else {
                Resources::NotResource(list)
            }
        }
    };
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(v) => conditions(v, &format!("{path}.Condition"))?,
    };
    Ok(Statement {
        sid,
        effect,
        actions,
        resources,
        conditions,
    })
}

fn conditions(value: &Value, path: &str) -> Result<Vec<Condition>, ScopeError> {
    let mut out = Vec::new();
    for (op_text, keys) in object(value, path)? {
        let op_path = format!("{path}.{op_text}");
        let Some(&(_, operator)) = Operator::ALL.iter().find(|(name, _)| name == op_text) else {
            return Err(invalid(
                &op_path,
                format!("unsupported condition operator `{op_text}`"),
            ));
        };
        let keys = object(keys, &op_path)?;
        if keys.is_empty() {
            return Err(invalid(&op_path, "no condition keys".to_owned()));
        }
        for (key_text, values) in keys {
            let key_path = format!("{op_path}.{key_text}");
            let Some(key) = Key::parse(key_text) else {
                return Err(invalid(
                    &key_path,
                    format!("unsupported condition key `{key_text}`"),
                ));
            };
            if !operator.accepts(&key) {
                return Err(invalid(
                    &key_path,
                    format!(
                        "operator `{}` cannot test key `{key_text}`",
                        operator.name()
                    ),
                ));
            }
            let values = condition_values(values, &key_path)?;
            let parsed = match key {
                Key::SourceIp => Parsed::Nets(
                    values
                        .iter()
                        .map(|v| {
                            parse_net(v).ok_or_else(|| {
                                invalid(
                                    &key_path,
                                    format!("`{v}` is not an ip address or cidr block"),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Key::CurrentTime => Parsed::Dates(
                    values
                        .iter()
                        .map(|v| {
                            parse_date(v).ok_or_else(|| {
                                invalid(
                                    &key_path,
                                    format!("`{v}` is not an rfc 3339 date or epoch seconds"),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Key::RequestedRegion | Key::Context(_) => {
                    if let Some(v) = values.iter().find(|v| v.contains("${")) {
                        return Err(invalid(
                            &key_path,
                            format!("policy variables are not supported: `{v}`"),
                        ));
                    }
                    Parsed::Strings
                }
            };
            out.push(Condition {
                operator,
                key,
                key_text: key_text.clone(),
                values,
                parsed,
            });
        }
    }
    Ok(out)
}

fn condition_values(value: &Value, path: &str) -> Result<Vec<String>, ScopeError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ScopeError::WrongType {
            path: path.to_owned(),
            expected: "a string or an array of strings",
        }),
    };
    let values = match value {
        Value::Array(list) => list.iter().map(one).collect::<Result<Vec<_>, _>>()?,
        other => vec![one(other)?],
    };
    if values.is_empty() {
        return Err(invalid(path, "no values".to_owned()));
    }
    Ok(values)
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn parse_date(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        text.parse::<i64>()
            .ok()
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
    })
}

/// Parse one `Resource` entry, naming `path` in the error.
pub(crate) fn arn_pattern(text: &str, path: &str) -> Result<ArnPattern, ScopeError> {
    if text.contains("${") {
        return Err(invalid(
            path,
            format!("policy variables are not supported: `{text}`"),
        ));
    }
    ArnPattern::parse(text).map_err(|e| invalid(path, format!("malformed arn `{text}`: {}", e.0)))
}

/// Exactly one of `a` / `b` must be present; returns its name, value and whether it was `a`.
fn exactly_one<'v>(
    obj: &'v Map<String, Value>,
    path: &str,
    a: &'static str,
    b: &'static str,
) -> Result<(&'static str, &'v Value, bool), ScopeError> {
    match (obj.get(a), obj.get(b)) {
        (Some(v), None) => Ok((a, v, true)),
        (None, Some(v)) => Ok((b, v, false)),
        (None, None) => Err(ScopeError::MissingField {
            path: format!("{path}.{a}"),
        }),
        (Some(_), Some(_)) => Err(invalid(path, format!("has both `{a}` and `{b}`"))),
    }
}

fn strings<'v>(value: &'v Value, path: &str) -> Result<Vec<(&'v str, String)>, ScopeError> {
    match value {
        Value::String(s) => Ok(vec![(s.as_str(), path.to_owned())]),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = format!("{path}[{i}]");
                string(v, &p).map(|s| (s, p))
            })
            .collect(),
        Value::Array(_) => Err(invalid(path, "is an empty list".to_owned())),
        _ => Err(ScopeError::WrongType {
            path: path.to_owned(),
            expected: "a string or an array of strings",
        }),
    }
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, ScopeError> {
    value.as_object().ok_or_else(|| ScopeError::WrongType {
        path: path.to_owned(),
        expected: "an object",
    })
}

fn string<'v>(value: &'v Value, path: &str) -> Result<&'v str, ScopeError> {
    value.as_str().ok_or_else(|| ScopeError::WrongType {
        path: path.to_owned(),
        expected: "a string",
    })
}

fn check_keys(obj: &Map<String, Value>, path: &str, known: &[&str]) -> Result<(), ScopeError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(field) => Err(ScopeError::UnknownField {
            path: path.to_owned(),
            field: field.clone(),
        }),
        None => Ok(()),
    }
}

fn invalid(path: &str, detail: String) -> ScopeError {
    ScopeError::Invalid {
        path: path.to_owned(),
        detail,
    }
}

/// A JSON value that refuses duplicate object keys: with duplicates, which `Effect` or
/// `Resource` wins depends on the parser, and the gateway and AWS must read the same policy.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
        Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<StrictValue, D::Error> {
        StrictValue::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(StrictValue(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(StrictValue(Value::Object(out)))
    }
}
