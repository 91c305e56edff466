//! Operator rules about scopes: what a read-only rule may approve on its own.
//!
//! "Read-only" is the AWS Service Authorization Reference's judgement, not the action's
//! name: every pattern an `Allow` names is expanded against the reference data
//! ([`custody_grant::iam`]) and every action it matches must be of access level Read or
//! List. Credential-minting actions and a configurable list of sensitive reads (secrets,
//! key material, tokens) are never approved automatically, also when they only read.

use custody_grant::Scope;
use custody_grant::iam::{self, Action};

/// Reads that reveal secrets, key material or tokens, never approved automatically
/// although the reference files them under Read or List: the default of
/// `approval.sensitive_reads`. Patterns are expanded against the reference data.
pub const SENSITIVE_READS: &[&str] = &[
    "secretsmanager:GetSecretValue",
    "secretsmanager:BatchGetSecretValue",
    "kms:Decrypt",
    "kms:GetParametersForImport",
    "ssm:GetParameter*",
    "ssm:GetParametersByPath",
    "ssm:GetParameterHistory",
    "lambda:GetFunction",
    "iam:GetCredentialReport",
    "cognito-identity:GetCredentialsForIdentity",
    "cognito-identity:GetOpenIdToken*",
    "rds:DownloadDBLogFilePortion",
    "rds:DownloadCompleteDBLogFile",
    "ec2:GetPasswordData",
    "glue:GetConnection",
    "glue:GetConnections",
    "lightsail:GetInstanceAccessDetails",
];

/// How one `Allow` pattern expands: the pattern, and the actions it matches.
#[derive(Debug)]
pub struct Expansion<'a> {
    /// The pattern as the scope names it (`NotAction` for a `NotAction` statement).
    pub pattern: &'a str,
    /// The actions it matches in the reference data.
    pub actions: Vec<&'static Action>,
}

/// Every `Allow` pattern of `scope` with the actions it matches (`grant show` prints this).
pub fn expansions(scope: &Scope) -> Vec<Expansion<'_>> {
    scope
        .statements()
        .iter()
        .filter(|s| s.effect() == custody_grant::Effect::Allow)
        .flat_map(|s| match s.action_patterns() {
            Some(patterns) => patterns
                .into_iter()
                .map(|pattern| Expansion {
                    pattern,
                    actions: iam::expand(pattern),
                })
                .collect(),
            None => vec![Expansion {
                pattern: "NotAction",
                actions: Vec::new(),
            }],
        })
        .collect()
}

/// Whether `scope` only allows reading, and nothing sensitive by the default list: see
/// [`auto_approval_refusal`].
pub fn is_read_only(scope: &Scope) -> bool {
    auto_approval_refusal(scope, SENSITIVE_READS).is_none()
}

/// Why `scope` cannot be approved by a read-only rule, naming the pattern and the action;
/// `None` when it can. `sensitive` lists the sensitive reads (patterns allowed).
pub fn auto_approval_refusal<S: AsRef<str>>(scope: &Scope, sensitive: &[S]) -> Option<String> {
    let mut sensitive_actions: Vec<String> = sensitive
        .iter()
        .flat_map(|p| {
            let expanded = iam::expand(p.as_ref());
            // A name the data does not know yet is still excluded as written.
            if expanded.is_empty() {
                vec![p.as_ref().to_owned()]
            } else {
                expanded.iter().map(|a| a.full_name()).collect()
            }
        })
        .collect();
    sensitive_actions.sort();
    sensitive_actions.dedup();
    for statement in scope
        .statements()
        .iter()
        .filter(|s| s.effect() == custody_grant::Effect::Allow)
    {
        let Some(patterns) = statement.action_patterns() else {
            return Some(
                "an `Allow` with `NotAction` allows every action it does not list, writes included"
                    .into(),
            );
        };
        for action in custody_grant::CREDENTIAL_MINTING_ACTIONS {
            if let Some(pattern) = statement.action_covers(action) {
                return Some(format!(
                    "`{pattern}` covers `{action}`, which mints credentials or tokens"
                ));
            }
        }
        for action in &sensitive_actions {
            if let Some(pattern) = statement.action_covers(action) {
                return Some(format!(
                    "`{pattern}` covers `{action}`, a read that reveals secrets"
                ));
            }
        }
        for pattern in patterns {
            let actions = iam::expand(pattern);
            if actions.is_empty() {
                return Some(format!(
                    "`{pattern}` matches no action in the AWS Service Authorization Reference ({}), so its access level is unknown",
                    iam::source()
                ));
            }
            if let Some(a) = actions.iter().find(|a| !a.level.only_reads()) {
                return Some(format!(
                    "`{pattern}` covers `{}`, whose access level is {} (only Read and List are read-only)",
                    a.full_name(),
                    a.level
                ));
            }
        }
    }
    None
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
            let why = auto_approval_refusal(&s, SENSITIVE_READS).unwrap_or_default();
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
            "s3:P*",
            "--resource",
            "*"
        ])));
        // Every action `s3:G*` matches is a read in the reference.
        assert!(is_read_only(&scope(&[
            "--allow",
            "s3:G*",
            "--resource",
            "*"
        ])));
    }

    #[test]
    fn the_reference_judges_not_the_name() {
        // Named like reads, filed as writes by AWS.
        for (allow, named, level) in [
            (
                "athena:GetSessionEndpoint",
                "athena:GetSessionEndpoint",
                "Write",
            ),
            (
                "backup-storage:Get*",
                "backup-storage:GetBaseBackup",
                "Write",
            ),
            (
                "arc-region-switch:GetResourcePolicy",
                "arc-region-switch:GetResourcePolicy",
                "Permissions management",
            ),
        ] {
            let s = scope(&["--allow", allow, "--resource", "*"]);
            let why = auto_approval_refusal(&s, SENSITIVE_READS).unwrap_or_default();
            assert!(
                why.contains(&format!("covers `{named}`, whose access level is {level}")),
                "{allow}: {why}"
            );
        }
        // A read whose name starts with no read verb.
        assert!(is_read_only(&scope(&[
            "--allow",
            "logs:FilterLogEvents",
            "--resource",
            "*"
        ])));
        // Unknown to the reference: its level cannot be judged.
        let s = scope(&["--allow", "s3:GetEverything", "--resource", "*"]);
        let why = auto_approval_refusal(&s, SENSITIVE_READS).unwrap_or_default();
        assert!(why.contains("matches no action"), "{why}");
        // NotAction is never read-only.
        let s = Scope::from_iam_json(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"s3:Put*","Resource":"*"}]}"#,
        )
        .unwrap();
        assert!(
            auto_approval_refusal(&s, SENSITIVE_READS)
                .unwrap_or_default()
                .contains("NotAction")
        );
    }

    #[test]
    fn the_sensitive_list_is_the_operators() {
        let s = scope(&["--allow", "s3:GetObject", "--resource", "*"]);
        assert!(auto_approval_refusal(&s, SENSITIVE_READS).is_none());
        let why = auto_approval_refusal(&s, &["s3:GetObj*"]).unwrap_or_default();
        assert!(why.contains("covers `s3:GetObject`"), "{why}");
        // Without the default list, a secret read is still a read.
        let secrets = scope(&[
            "--allow",
            "secretsmanager:GetSecretValue",
            "--resource",
            "*",
        ]);
        assert!(auto_approval_refusal::<&str>(&secrets, &[]).is_none());
    }

    #[test]
    fn grant_show_sees_what_a_pattern_expands_to() {
        let s = scope(&["--allow", "s3:GetObject*,sqs:List*", "--resource", "*"]);
        let e = expansions(&s);
        assert_eq!(e.len(), 2);
        assert!(e[0].actions.iter().any(|a| a.name == "GetObjectTagging"));
        assert!(e[1].actions.iter().all(|a| a.service == "sqs"));
    }
}
