//! Differential test of `custody_grant::decide` against an independent IAM policy evaluator,
//! `@cloud-copilot/iam-simulate` (npm, run under node: `tests/peers/iam-simulate`).
//!
//! Random grant scopes (Allow/Deny, Action/NotAction, Resource/NotResource, wildcards, the
//! supported conditions) and requests (actions and resource ARNs drawn from the IAM
//! reference data, over a small alphabet so that patterns and resources collide). A request
//! whose resource the gateway cannot fully name carries a *set* of resources: `*` (any
//! resource of the action's types) or a template with `?` for unknown characters (a Secrets
//! Manager secret named without its suffix, a KMS key named by an alias). The simulator
//! judges concrete members of the set: random ones, and witnesses built to match each policy
//! pattern. Custody may be stricter, never looser: when it allows, the simulator must allow
//! every member.
//!
//! Size and seed: `CUSTODY_IAM_DIFF_CASES` (default 4000), `CUSTODY_IAM_DIFF_SEED`. The
//! large run and its figures are in docs/testing.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::IpAddr;
use std::process::{Command, Stdio};

use common::{NOW, grant};
use custody_grant::{AccessRequest, ActionRequest, Scope, decide, iam};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const NOW_TEXT: &str = "2026-06-01T12:00:00Z";

/// Actions agents use, with the resources the classifier names for them; the rest of each
/// run draws actions from the whole reference data.
const CURATED: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:ListBucket",
    "sqs:SendMessage",
    "sqs:DeleteQueue",
    "ec2:TerminateInstances",
    "ec2:StopInstances",
    "ec2:DescribeInstances",
    "kms:Decrypt",
    "kms:Encrypt",
    "secretsmanager:GetSecretValue",
    "secretsmanager:DeleteSecret",
    "sns:Publish",
    "dynamodb:GetItem",
    "lambda:InvokeFunction",
    "iam:ListRoles",
    "sts:GetCallerIdentity",
];

/// What the gateway knows of a request's resource.
#[derive(Debug, Clone)]
enum Known {
    /// The exact ARN.
    Exact(String),
    /// The action takes no resource: `*`, as IAM evaluates it.
    NoResource,
    /// Nothing: any resource of the action's types (`*` to `decide`).
    Unknown,
    /// A template: each `?` an unknown character.
    Template(String),
}

#[derive(Debug)]
struct Case {
    policy: Value,
    action: String,
    known: Known,
    /// The globs (`${…}` as `*`) of the action's resource types.
    type_globs: Vec<String>,
    /// Concrete resources the simulator judges.
    members: Vec<String>,
    region: &'static str,
    /// As the gateway sees it, and as AWS would (IPv4-mapped addresses canonical).
    ip: (IpAddr, IpAddr),
    prefix: Option<String>,
}

#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    members: u64,
    agree_allow: u64,
    agree_deny: u64,
    stricter: u64,
    looser: Vec<String>,
    sim_errors: u64,
    scope_refused: u64,
    set_cases: u64,
    set_allowed: u64,
}

struct Gen {
    rng: StdRng,
    everything: Vec<&'static iam::Action>,
}

impl Gen {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// A short name over a tiny alphabet, so that policies and requests collide.
    fn name(&mut self) -> String {
        let n = self.rng.random_range(1..=3);
        (0..n).map(|_| *self.pick(&['a', 'b', 'x'])).collect()
    }

    fn fill_template(&mut self, template: &str, region: &str) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('}').map_or(rest.len(), |e| i + e + 1);
            out.push_str(&match &rest[i..end] {
                "${Partition}" => "aws".to_owned(),
                "${Region}" => region.to_owned(),
                "${Account}" => ACCOUNT.to_owned(),
                _ => self.name(),
            });
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    fn case(&mut self) -> Case {
        let action: &'static iam::Action = if self.chance(0.6) {
            let name: &str = self.pick::<&str>(CURATED);
            iam::lookup(name).expect("curated actions are in the data")
        } else {
            self.everything[self.rng.random_range(0..self.everything.len())]
        };
        let full = action.full_name();
        let region = *self.pick(&REGIONS);
        let templates: Vec<&'static str> = action
            .resource_types()
            .filter_map(|(t, _)| iam::resource_arn(action.service, t))
            .collect();
        let type_globs: Vec<String> = templates.iter().map(|t| template_glob(t)).collect();
        let (known, base) = if templates.is_empty() {
            (Known::NoResource, "*".to_owned())
        } else {
            let template = *self.pick(&templates);
            let exact = self.fill_template(template, region);
            match action.service {
                "secretsmanager" if exact.contains(":secret:") && self.chance(0.5) => {
                    // Named without the suffix IAM evaluates.
                    let name = exact.rsplit(':').next().unwrap_or("a").to_owned();
                    let head = exact.trim_end_matches(&name).to_owned();
                    let suffix: String = (0..6).map(|_| *self.pick(&['a', 'B', '7'])).collect();
                    (
                        Known::Template(format!("{head}{name}-??????")),
                        format!("{exact}-{suffix}"),
                    )
                }
                "kms" if exact.contains(":key/") && self.chance(0.5) => {
                    let head = exact.split(":key/").next().unwrap_or_default().to_owned();
                    (
                        Known::Template(format!("{head}:key/{}", "?".repeat(36))),
                        format!("{head}:key/{}", self.key_id()),
                    )
                }
                _ if self.chance(0.25) => (Known::Unknown, exact),
                _ => (Known::Exact(exact.clone()), exact),
            }
        };
        let statements: Vec<Value> = (0..self.rng.random_range(1..=4))
            .map(|_| self.statement(&full, &base, region))
            .collect();
        let policy = json!({"Version": "2012-10-17", "Statement": statements});
        let ip = match self.rng.random_range(0..4) {
            0 => ("10.1.2.3", "10.1.2.3"),
            1 => ("203.0.113.9", "203.0.113.9"),
            2 => ("::ffff:203.0.113.9", "203.0.113.9"),
            _ => ("2001:db8::5", "2001:db8::5"),
        };
        let prefix = (full == "s3:ListBucket" && self.chance(0.7)).then(|| self.name());
        let mut case = Case {
            policy,
            action: full,
            known,
            type_globs,
            members: Vec::new(),
            region,
            ip: (ip.0.parse().unwrap(), ip.1.parse().unwrap()),
            prefix,
        };
        case.members = self.members(&case, &base);
        case
    }

    /// A KMS key id (36 characters).
    fn key_id(&mut self) -> String {
        (0..36).map(|_| *self.pick(&['a', 'b', '1', '-'])).collect()
    }

    fn statement(&mut self, action: &str, base: &str, region: &str) -> Value {
        let mut s = serde_json::Map::new();
        s.insert(
            "Effect".into(),
            json!(if self.chance(0.5) { "Allow" } else { "Deny" }),
        );
        let actions: Vec<String> = (0..self.rng.random_range(1..=2))
            .map(|_| self.action_pattern(action))
            .collect();
        let key = if self.chance(0.2) {
            "NotAction"
        } else {
            "Action"
        };
        s.insert(key.into(), json!(actions));
        let resources: Vec<String> = (0..self.rng.random_range(1..=2))
            .map(|_| self.resource_pattern(base, region))
            .collect();
        let key = if self.chance(0.2) {
            "NotResource"
        } else {
            "Resource"
        };
        s.insert(key.into(), json!(resources));
        if self.chance(0.35) {
            s.insert("Condition".into(), self.condition());
        }
        Value::Object(s)
    }

    fn action_pattern(&mut self, action: &str) -> String {
        let (service, name) = action.split_once(':').unwrap();
        match self.rng.random_range(0..9) {
            0 => "*".into(),
            1 => format!("{service}:*"),
            2 => {
                let cut = self.rng.random_range(0..=name.len());
                format!("{service}:{}*", &name[..cut])
            }
            3 => {
                let at = self.rng.random_range(0..name.len());
                let mut n: Vec<char> = name.chars().collect();
                n[at] = '?';
                format!("{service}:{}", n.into_iter().collect::<String>())
            }
            4 => format!("{service}:{}", name.to_ascii_lowercase()),
            5 => {
                let other = *self.pick(CURATED);
                other.to_owned()
            }
            6 => format!("{service}:*{}", &name[name.len().saturating_sub(3)..]),
            _ => action.to_owned(),
        }
    }

    fn resource_pattern(&mut self, base: &str, region: &str) -> String {
        // A resource of another action or service.
        let other = || "arn:aws:s3:::a/x".to_owned();
        if base == "*" {
            return match self.rng.random_range(0..3) {
                0 => "*".into(),
                1 => format!("arn:aws:ec2:{region}:{ACCOUNT}:instance/a*"),
                _ => other(),
            };
        }
        let chars: Vec<char> = base.chars().collect();
        let head = base.match_indices(':').nth(4).map_or(0, |(i, _)| i + 1);
        match self.rng.random_range(0..10) {
            0 => "*".into(),
            1 | 2 => {
                // A wildcard for the end of the resource part.
                let cut = self.rng.random_range(head..=chars.len());
                format!("{}*", chars[..cut].iter().collect::<String>())
            }
            3 | 4 => {
                let at = self
                    .rng
                    .random_range(head.min(chars.len() - 1)..chars.len());
                let mut c = chars.clone();
                c[at] = if self.chance(0.5) { '?' } else { 'a' };
                c.into_iter().collect()
            }
            5 => base.replacen(region, "*", 1).replacen(ACCOUNT, "*", 1),
            6 => {
                // Upper case in the resource part (IAM resources are case-sensitive).
                base[..head].to_owned() + &base[head..].to_ascii_uppercase()
            }
            7 => {
                // The template forms AWS documents for names it completes.
                if let Some(i) = base.find(":secret:") {
                    let name = base[i + 8..].to_owned();
                    format!("{}:secret:{name}-??????", &base[..i])
                } else if let Some(i) = base.find(":key/") {
                    format!("{}:key/{}*", &base[..i], self.pick(&["a", "b", "1", ""]))
                } else {
                    other()
                }
            }
            _ => base.to_owned(),
        }
    }

    fn condition(&mut self) -> Value {
        let ips = [
            "10.0.0.0/8",
            "203.0.113.0/24",
            "203.0.113.9/32",
            "2001:db8::/32",
        ];
        let ip = |g: &mut Gen| -> Value {
            if g.chance(0.3) {
                json!([*g.pick(&ips), *g.pick(&ips)])
            } else {
                json!(*g.pick(&ips))
            }
        };
        match self.rng.random_range(0..5) {
            0 => {
                let op = *self.pick(&["IpAddress", "NotIpAddress"]);
                json!({ op: {"aws:SourceIp": ip(self)} })
            }
            1 => {
                let op = *self.pick(&[
                    "StringEquals",
                    "StringNotEquals",
                    "StringLike",
                    "StringNotLike",
                ]);
                let v = *self.pick(&["us-east-1", "eu-*", "us-?ast-1", "eu-west-1"]);
                json!({ op: {"aws:RequestedRegion": v} })
            }
            2 => {
                let op = *self.pick(&[
                    "DateLessThan",
                    "DateGreaterThan",
                    "DateLessThanEquals",
                    "DateGreaterThanEquals",
                ]);
                let v = *self.pick(&["2026-06-01T12:30:00Z", "2026-06-01T11:30:00Z", NOW_TEXT]);
                json!({ op: {"aws:CurrentTime": v} })
            }
            3 => {
                let op = *self.pick(&["StringLike", "StringNotLike", "StringEquals"]);
                let v = *self.pick(&["a*", "ab", "x?", ""]);
                json!({ op: {"s3:prefix": v} })
            }
            _ => {
                // Two operators: both must hold.
                json!({
                    "IpAddress": {"aws:SourceIp": ip(self)},
                    "StringEquals": {"aws:RequestedRegion": *self.pick(&REGIONS)},
                })
            }
        }
    }

    /// The concrete resources the simulator judges for the case.
    fn members(&mut self, case: &Case, base: &str) -> Vec<String> {
        let set_glob = match &case.known {
            Known::Exact(a) => return vec![a.clone()],
            Known::NoResource => return vec!["*".into()],
            Known::Template(t) => vec![t.clone()],
            Known::Unknown => case.type_globs.clone(),
        };
        let mut out = vec![base.to_owned()];
        // Random members of the set.
        for _ in 0..2 {
            let g = self.pick(&set_glob).clone();
            out.push(self.instantiate(&g));
        }
        // Witnesses: a member matching each policy resource pattern, where one exists.
        for s in case.policy["Statement"].as_array().unwrap() {
            for key in ["Resource", "NotResource"] {
                for p in s[key].as_array().into_iter().flatten() {
                    let p = p.as_str().unwrap();
                    if p == "*" {
                        continue;
                    }
                    for g in &set_glob {
                        if let Some(w) = intersect(p, g) {
                            out.push(w);
                        }
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// A random string matching `glob`.
    fn instantiate(&mut self, glob: &str) -> String {
        glob.chars()
            .map(|c| match c {
                '?' => self.pick(&['a', 'b', '1', 'Q']).to_string(),
                '*' => self.name(),
                c => c.to_string(),
            })
            .collect()
    }
}

/// `arn:${Partition}:s3:::${BucketName}/${ObjectName}` as the glob `arn:*:s3:::*/*`.
fn template_glob(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        out.push('*');
        rest = rest[i..].find('}').map_or("", |e| &rest[i + e + 1..]);
    }
    out.push_str(rest);
    out
}

/// Glob matching written for this test alone (`*` any run, `?` one character), so that the
/// sets the simulator judges do not depend on Custody's own matcher.
fn glob(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A string that both globs match, if there is one: a search over pairs of positions.
fn intersect(a: &str, b: &str) -> Option<String> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut seen = std::collections::HashSet::new();
    let mut queue = std::collections::VecDeque::from([(0usize, 0usize, String::new())]);
    while let Some((i, j, s)) = queue.pop_front() {
        if !seen.insert((i, j)) {
            continue;
        }
        if i == a.len() && j == b.len() {
            return Some(s);
        }
        // A star may match nothing.
        if a.get(i) == Some(&'*') {
            queue.push_back((i + 1, j, s.clone()));
        }
        if b.get(j) == Some(&'*') {
            queue.push_back((i, j + 1, s.clone()));
        }
        let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) else {
            continue;
        };
        let c = match (x, y) {
            ('*' | '?', '*' | '?') => 'a',
            ('*' | '?', c) | (c, '*' | '?') => c,
            (c, d) if c == d => c,
            _ => continue,
        };
        let ni = if x == '*' { i } else { i + 1 };
        let nj = if y == '*' { j } else { j + 1 };
        if (ni, nj) != (i, j) {
            let mut t = s.clone();
            t.push(c);
            queue.push_back((ni, nj, t));
        }
    }
    None
}

fn custody_allows(case: &Case, scope: &Scope) -> bool {
    let resource = match &case.known {
        Known::Exact(a) => a.clone(),
        Known::NoResource | Known::Unknown => "*".to_owned(),
        Known::Template(t) => t.clone(),
    };
    let mut context = BTreeMap::new();
    if let Some(p) = &case.prefix {
        context.insert("s3:prefix".to_owned(), p.clone());
    }
    let request = AccessRequest {
        actions: vec![ActionRequest {
            action: case.action.clone(),
            resources: vec![resource],
            named_explicitly: false,
        }],
        region: Some(case.region.to_owned()),
        source_ip: Some(case.ip.0),
        context,
        requests_so_far: 0,
    };
    decide(&grant(scope.clone()), &request, NOW).allowed
}

fn peer_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/iam-simulate")
}

/// Runs every (case, member) through the simulator; answers in order.
fn simulate(cases: &[Case]) -> Vec<Vec<(String, String)>> {
    let dir = peer_dir();
    assert!(
        dir.join("node_modules/@cloud-copilot/iam-simulate")
            .is_dir(),
        "the IAM simulator peer is not installed: run scripts/install-test-peers.sh"
    );
    let mut child = Command::new("node")
        .arg(dir.join("simulate.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (the IAM simulator peer) runs");
    let mut lines = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        for (mi, m) in case.members.iter().enumerate() {
            let mut context = json!({
                "aws:SourceIp": case.ip.1.to_string(),
                "aws:RequestedRegion": case.region,
                "aws:CurrentTime": NOW_TEXT,
            });
            if let Some(p) = &case.prefix {
                context["s3:prefix"] = json!(p);
            }
            let line = json!({
                "id": format!("{ci}/{mi}"),
                "policy": case.policy,
                "action": case.action,
                "resource": m,
                "context": context,
            });
            lines.push(line.to_string());
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    });
    let mut out: Vec<Vec<(String, String)>> = cases.iter().map(|_| Vec::new()).collect();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let id = v["id"].as_str().unwrap();
        let (ci, mi) = id.split_once('/').unwrap();
        let (ci, mi): (usize, usize) = (ci.parse().unwrap(), mi.parse().unwrap());
        let err = v["error"].as_str().unwrap_or_default().to_owned();
        assert_eq!(out[ci].len(), mi, "answers in order");
        out[ci].push((v["result"].as_str().unwrap().to_owned(), err));
    }
    writer.join().unwrap();
    assert!(
        child.wait().unwrap().success(),
        "the simulator exited cleanly"
    );
    out
}

#[test]
fn custody_is_never_looser_than_an_independent_iam_evaluator() {
    let cases: usize = std::env::var("CUSTODY_IAM_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let seed: u64 = std::env::var("CUSTODY_IAM_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_208);
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        everything: iam::expand("*"),
    };
    let mut tally = Tally::default();
    // In chunks, so that a large run holds one chunk of cases at a time.
    let chunk = 5000;
    let mut done = 0;
    while done < cases {
        let batch: Vec<Case> = (0..chunk.min(cases - done)).map(|_| g.case()).collect();
        done += batch.len();
        let answers = simulate(&batch);
        for (case, answers) in batch.iter().zip(answers) {
            judge(case, &answers, &mut tally);
        }
    }
    let t = &tally;
    println!(
        "iam differential (seed {seed}): {} cases, {} simulator evaluations; agree: {} allow, {} deny; custody stricter: {}; custody looser: {}; simulator refused the input: {}; scope refused by custody: {}; set-valued resources: {} cases ({} allowed)",
        t.cases,
        t.members,
        t.agree_allow,
        t.agree_deny,
        t.stricter,
        t.looser.len(),
        t.sim_errors,
        t.scope_refused,
        t.set_cases,
        t.set_allowed,
    );
    assert!(
        t.looser.is_empty(),
        "custody allowed where the simulator denies:\n{}",
        t.looser
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The run means something only if both outcomes and set-valued resources occur often.
    assert!(t.agree_allow * 10 > t.cases, "{t:?}");
    assert!(t.agree_deny * 10 > t.cases, "{t:?}");
    assert!(t.set_allowed * 100 >= t.cases, "{t:?}");
    assert!(t.sim_errors * 4 < t.cases, "{t:?}");
}

fn judge(case: &Case, answers: &[(String, String)], t: &mut Tally) {
    t.cases += 1;
    t.members += answers.len() as u64;
    let Ok(scope) = Scope::from_iam_json(&case.policy.to_string()) else {
        t.scope_refused += 1;
        return;
    };
    let valid: Vec<(&String, &str)> = case
        .members
        .iter()
        .zip(answers)
        .filter(|(_, (r, _))| r != "error")
        .map(|(m, (r, _))| (m, r.as_str()))
        .collect();
    if valid.is_empty() {
        t.sim_errors += 1;
        return;
    }
    let is_set = matches!(case.known, Known::Unknown | Known::Template(_));
    t.set_cases += u64::from(is_set);
    let custody = custody_allows(case, &scope);
    let all_allowed = valid.iter().all(|(_, r)| *r == "Allowed");
    match (custody, all_allowed) {
        (true, true) => {
            t.agree_allow += 1;
            t.set_allowed += u64::from(is_set);
        }
        (false, false) => t.agree_deny += 1,
        (false, true) => {
            t.stricter += 1;
            if std::env::var_os("CUSTODY_IAM_DIFF_SHOW_STRICTER").is_some() {
                println!(
                    "stricter: {} on {:?} ip {} region {} prefix {:?}\n  policy {}",
                    case.action, case.known, case.ip.0, case.region, case.prefix, case.policy
                );
            }
        }
        (true, false) => {
            let (m, r) = valid.iter().find(|(_, r)| *r != "Allowed").unwrap();
            t.looser.push(format!(
                "{} on {:?} (member {m}: {r}), ip {}, region {}, prefix {:?}\n  policy {}",
                case.action, case.known, case.ip.0, case.region, case.prefix, case.policy
            ));
        }
    }
}

#[test]
fn the_test_glob_and_intersection_are_right() {
    let m = |p: &str, s: &str| {
        glob(
            &p.chars().collect::<Vec<_>>(),
            &s.chars().collect::<Vec<_>>(),
        )
    };
    assert!(m("a*b?", "axxbc"));
    assert!(!m("a*b?", "axxb"));
    assert!(m("*", ""));
    let w = intersect(
        "arn:aws:kms:*:*:key/ab*",
        &format!("arn:aws:kms:r:1:key/{}", "?".repeat(36)),
    )
    .unwrap();
    assert!(
        m("arn:aws:kms:*:*:key/ab*", &w) && w.len() == "arn:aws:kms:r:1:key/".len() + 36,
        "{w}"
    );
    assert_eq!(intersect("a/x*", "b/*"), None);
    let w = intersect("arn:*:s3:::a*/x?", "arn:*:s3:::*/*").unwrap();
    assert!(m("arn:*:s3:::a*/x?", &w) && m("arn:*:s3:::*/*", &w), "{w}");
}
