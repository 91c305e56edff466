//! Operator rules about scopes: what counts as read-only for auto-approval.

use custody_grant::Scope;

/// Verbs that only read. A scope is read-only when every `Allow` names actions whose
/// operation part starts with one of these (wildcards allowed only after the verb, as in
/// `s3:Get*`); `*`, `s3:*`, `NotAction` or any other verb make it read-write.
const READ_VERBS: &[&str] = &[
    "Get", "List", "Describe", "Head", "BatchGet", "Query", "Scan", "Lookup",
];

/// Whether `scope` only allows reading.
pub fn is_read_only(scope: &Scope) -> bool {
    let Ok(doc) = serde_json::to_value(scope) else {
        return false;
    };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        serde_json::Value::Null => return false,
        other => vec![other.clone()],
    };
    statements.iter().all(|s| {
        if s["Effect"] != "Allow" {
            return true;
        }
        if !s["NotAction"].is_null() {
            return false;
        }
        let actions: Vec<&str> = match &s["Action"] {
            serde_json::Value::String(a) => vec![a.as_str()],
            serde_json::Value::Array(list) => list.iter().filter_map(|v| v.as_str()).collect(),
            _ => return false,
        };
        !actions.is_empty() && actions.iter().all(|a| action_is_read(a))
    })
}

fn action_is_read(action: &str) -> bool {
    let Some((_, op)) = action.split_once(':') else {
        return false;
    };
    READ_VERBS.iter().any(|verb| {
        op.len() >= verb.len()
            && op[..verb.len()].eq_ignore_ascii_case(verb)
            && !op[..verb.len()].contains(['*', '?'])
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn scope(args: &[&str]) -> Scope {
        Scope::from_cli(args).unwrap()
    }

    #[test]
    fn reads_are_read_only() {
        assert!(is_read_only(&scope(&[
            "--allow",
            "s3:GetObject,s3:ListBucket",
            "--resource",
            "arn:aws:s3:::b/*"
        ])));
        assert!(is_read_only(&scope(&[
            "--allow",
            "s3:Get*",
            "--resource",
            "*"
        ])));
        assert!(is_read_only(&scope(&[
            "--allow",
            "s3:GetObject",
            "--resource",
            "*",
            "--deny",
            "s3:PutObject",
            "--resource",
            "*"
        ])));
    }

    #[test]
    fn writes_and_wildcards_are_not() {
        assert!(!is_read_only(&scope(&[
            "--allow",
            "s3:PutObject",
            "--resource",
            "*"
        ])));
        assert!(!is_read_only(&scope(&[
            "--allow",
            "s3:*",
            "--resource",
            "*"
        ])));
        assert!(!is_read_only(&scope(&["--allow", "*", "--resource", "*"])));
        assert!(!is_read_only(&scope(&[
            "--allow",
            "s3:G*",
            "--resource",
            "*"
        ])));
    }
}
