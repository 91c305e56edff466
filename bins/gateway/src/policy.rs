//! Operator rules about scopes: what counts as read-only for auto-approval.

use custody_grant::Scope;

/// Verbs that only read. A scope is read-only when every `Allow` names actions whose
/// operation part starts with one of these (wildcards allowed only after the verb, as in
/// `s3:Get*`); `*`, `s3:*`, `NotAction` or any other verb make it read-write.
const READ_VERBS: &[&str] = &[
    "Get", "List", "Describe", "Head", "BatchGet", "Query", "Scan", "Lookup",
];

/// Reads that reveal secrets or key material, never approved automatically although they
/// only read. An `Allow` whose action pattern could match one of these (`ssm:Get*`
/// matches `ssm:GetParameter`) is not auto-approved.
pub const SENSITIVE_READS: &[&str] = &[
    "secretsmanager:GetSecretValue",
    "secretsmanager:BatchGetSecretValue",
    "kms:Decrypt",
    "kms:GetParametersForImport",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "ssm:GetParameterHistory",
    "lambda:GetFunction",
    "iam:GetCredentialReport",
    "cognito-identity:GetCredentialsForIdentity",
    "cognito-identity:GetOpenIdToken",
    "rds:DownloadDBLogFilePortion",
];

/// Whether `scope` only allows reading, and nothing sensitive: see
/// [`auto_approval_refusal`].
pub fn is_read_only(scope: &Scope) -> bool {
    auto_approval_refusal(scope).is_none()
}

/// Why `scope` cannot be approved by a read-only rule, naming the action; `None` when it
/// can. Credential-minting actions (`custody_grant::CREDENTIAL_MINTING_ACTIONS`) and
/// [`SENSITIVE_READS`] are never auto-approved, also when a wildcard (`sts:Get*`) only
/// could match them.
pub fn auto_approval_refusal(scope: &Scope) -> Option<String> {
    if !verbs_read_only(scope) {
        return Some(
            "an `Allow` names an action that is not a read (Get, List, Describe, …)".into(),
        );
    }
    let allows = scope
        .statements()
        .iter()
        .filter(|s| s.effect() == custody_grant::Effect::Allow);
    for statement in allows {
        for action in custody_grant::CREDENTIAL_MINTING_ACTIONS {
            if let Some(pattern) = statement.action_covers(action) {
                return Some(format!(
                    "`{pattern}` covers `{action}`, which mints credentials or tokens"
                ));
            }
        }
        for action in SENSITIVE_READS {
            if let Some(pattern) = statement.action_covers(action) {
                return Some(format!(
                    "`{pattern}` covers `{action}`, a read that reveals secrets"
                ));
            }
        }
    }
    None
}

/// Whether every `Allow` names only read verbs.
fn verbs_read_only(scope: &Scope) -> bool {
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
    fn minting_and_sensitive_reads_are_never_auto_approved() {
        for (allow, named) in [
            ("sts:GetSessionToken", "sts:GetSessionToken"),
            ("sts:Get*", "sts:GetSessionToken"),
            ("sts:GetFederation?oken", "sts:GetFederationToken"),
            (
                "secretsmanager:GetSecretValue",
                "secretsmanager:GetSecretValue",
            ),
            ("ssm:GetParameter*", "ssm:GetParameter"),
            ("kms:Describe*,kms:Get*", "kms:GetParametersForImport"),
        ] {
            let s = scope(&["--allow", allow, "--resource", "*"]);
            let why = auto_approval_refusal(&s).unwrap_or_default();
            let hit = format!("covers `{}`", named.to_ascii_lowercase());
            assert!(why.to_ascii_lowercase().contains(&hit), "{allow}: {why}");
            assert!(!is_read_only(&s));
        }
        // Plain reads still are.
        assert!(is_read_only(&scope(&[
            "--allow",
            "dynamodb:Scan,s3:Get*",
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
