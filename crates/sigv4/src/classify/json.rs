//! Strict JSON parsing for request bodies: a repeated key anywhere is an error, because
//! AWS's parser and ours could pick different values for it (parser differential).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ClassifyError;

const DUPLICATE: &str = "duplicate key ";

/// Parses `bytes` as JSON, rejecting duplicate object keys. Nesting is bounded by
/// serde_json's recursion limit, so hostile input cannot exhaust the stack.
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, ClassifyError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(v)) => Ok(v),
        Err(e) => {
            let msg = e.to_string();
            if let Some(rest) = msg.strip_prefix(DUPLICATE) {
                let key = rest.rfind(" at line ").map_or(rest, |i| &rest[..i]);
                return Err(ClassifyError::DuplicateJsonKey {
                    key: key.to_owned(),
                });
            }
            Err(ClassifyError::Malformed {
                part: "json body",
                reason: msg,
            })
        }
    }
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUPLICATE}{key}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "tests fail loudly"
    )]
    use super::*;

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        assert_eq!(
            parse_strict(br#"{"TableName":"a","TableName":"b"}"#),
            Err(ClassifyError::DuplicateJsonKey {
                key: "TableName".into()
            })
        );
        assert!(matches!(
            parse_strict(br#"{"x":[{"k":1,"\u006b":2}]}"#),
            Err(ClassifyError::DuplicateJsonKey { .. })
        ));
    }

    #[test]
    fn parses_ordinary_json_and_bounds_depth() {
        let v = parse_strict(br#"{"a":[1,2.5,"s",null,true,{"b":{}}]}"#).unwrap();
        assert_eq!(v["a"][2], "s");
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_strict(deep.as_bytes()),
            Err(ClassifyError::Malformed { .. })
        ));
        assert!(parse_strict(b"{} trailing").is_err());
    }
}
