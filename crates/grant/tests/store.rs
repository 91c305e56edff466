//! The file store: round trips, compare-and-set under races, torn and corrupt files, counts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use common::NOW;
use custody_grant::{
    AgentSecret, ApprovalPolicy, FileGrantStore, Grant, GrantError, GrantFilter, GrantRequest,
    GrantStatus, GrantStore, IssuedGrant, Limits, Scope, StoreError, Task, USE_RESERVATION,
    USE_RESERVATION_MAX, use_reservation,
};
use time::Duration;

fn issue(required: u32, approvers: &[&str], task: &str) -> IssuedGrant {
    Grant::issue(
        GrantRequest {
            identity: "agent:report-bot".to_owned(),
            task: Task {
                id: task.to_owned(),
                intent: "read reports".to_owned(),
            },
            requester: "alice".to_owned(),
            role_arn: "arn:aws:iam::123456789012:role/reader".to_owned(),
            regions: vec!["eu-west-1".to_owned()],
            scope: Scope::from_cli(["--allow", "s3:GetObject", "--resource", "arn:aws:s3:::b/*"])
                .unwrap(),
            not_before: None,
            ttl: Duration::hours(1),
            approval_policy: ApprovalPolicy {
                required,
                approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
            },
            request_budget: Some(100),
        },
        &Limits {
            default_max_ttl: Duration::hours(4),
            max_ttl_by_role: Default::default(),
        },
        NOW,
    )
    .unwrap()
}

fn create(store: &dyn GrantStore, issued: IssuedGrant) -> Grant {
    store
        .create(issued.grant, issued.secret)
        .unwrap()
        .as_ref()
        .clone()
}

fn snapshot(store: &dyn GrantStore) -> Vec<Grant> {
    store
        .list(&GrantFilter::default())
        .unwrap()
        .iter()
        .map(|g| (**g).clone())
        .collect()
}

#[test]
fn round_trip_and_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.json");
    let store = FileGrantStore::open(&path).unwrap();
    assert!(snapshot(&store).is_empty());
    assert!(
        !path.exists(),
        "nothing is written before the first mutation"
    );
    let issued = issue(1, &["bob"], "T-1");
    let secret = issued.secret.expose_secret().to_owned();
    let g1 = create(&store, issued);
    let g2 = create(&store, issue(0, &[], "T-2"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (found, s) = store.get_by_access_key(&g1.access_key_id).unwrap().unwrap();
    assert_eq!(*found, g1);
    assert_eq!(s.expose_secret(), secret);
    assert_eq!(*store.get(&g2.id).unwrap().unwrap(), g2);
    let pending = store
        .list(&GrantFilter {
            status: Some(GrantStatus::Pending),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, g1.id);
    let t2 = store
        .list(&GrantFilter {
            task_id: Some("T-2".to_owned()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(t2.len(), 1);

    // The same grant twice is refused.
    let again = store.create(
        g1.clone(),
        AgentSecret::from_exposed(secret.clone()).unwrap(),
    );
    assert!(matches!(again, Err(StoreError::Duplicate(_))));

    let before = snapshot(&store);
    drop(store);
    let store = FileGrantStore::open(&path).unwrap();
    assert_eq!(snapshot(&store), before);
    let (_, s) = store.get_by_access_key(&g1.access_key_id).unwrap().unwrap();
    assert_eq!(s.expose_secret(), secret);
    // The file never shows up in Debug output of the store's types.
    assert!(!format!("{s:?}").contains(&secret));
}

#[test]
fn compare_and_swap_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileGrantStore::open(dir.path().join("g.json")).unwrap();
    let g = create(&store, issue(1, &["bob"], "T-1"));
    let approved = g.approve("bob", NOW).unwrap();
    store.compare_and_swap(&g, approved.clone()).unwrap();
    // `g` is stale now.
    let revoked = g.revoke("carol", NOW).unwrap();
    assert!(matches!(
        store.compare_and_swap(&g, revoked),
        Err(StoreError::Conflict(_))
    ));
    let mut other = approved.clone();
    other.access_key_id = custody_grant::AccessKeyId::parse("AKCUAAAAAAAAAAAAAAAA").unwrap();
    assert!(matches!(
        store.compare_and_swap(&approved, other),
        Err(StoreError::Immutable("access_key_id"))
    ));
    assert!(matches!(
        store.approve(&g.id, "bob", NOW),
        Err(StoreError::Transition(GrantError::WrongStatus {
            status: GrantStatus::Active,
            ..
        }))
    ));
    let r = store.revoke(&g.id, "carol", NOW).unwrap();
    assert_eq!(r.status, GrantStatus::Revoked);
}

#[test]
fn concurrent_approvals_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.json");
    let store: Arc<dyn GrantStore> = Arc::new(FileGrantStore::open(&path).unwrap());
    let approvers = ["b", "c", "d", "e", "f", "g"];
    let g = create(store.as_ref(), issue(6, &approvers, "T-1"));
    let barrier = Arc::new(Barrier::new(approvers.len()));
    let handles: Vec<_> = approvers
        .iter()
        .map(|a| {
            let (store, barrier, id) = (Arc::clone(&store), Arc::clone(&barrier), g.id.clone());
            let a = (*a).to_owned();
            thread::spawn(move || {
                barrier.wait();
                store.approve(&id, &a, NOW)
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let done = store.get(&g.id).unwrap().unwrap();
    assert_eq!(done.status, GrantStatus::Active);
    let who: BTreeSet<_> = done.approvals.iter().map(|a| a.approver.as_str()).collect();
    assert_eq!(who, approvers.iter().copied().collect());
    let before = snapshot(store.as_ref());
    drop(store);
    assert_eq!(snapshot(&FileGrantStore::open(&path).unwrap()), before);
}

#[test]
fn approve_racing_revoke_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.json");
    let store: Arc<dyn GrantStore> = Arc::new(FileGrantStore::open(&path).unwrap());
    for round in 0..25 {
        let g = create(store.as_ref(), issue(2, &["b", "c"], &format!("T-{round}")));
        let barrier = Arc::new(Barrier::new(3));
        let spawn = |who: &'static str, revoke: bool| {
            let (store, barrier, id) = (Arc::clone(&store), Arc::clone(&barrier), g.id.clone());
            thread::spawn(move || {
                barrier.wait();
                if revoke {
                    store.revoke(&id, who, NOW)
                } else {
                    store.approve(&id, who, NOW)
                }
            })
        };
        let hb = spawn("b", false);
        let hc = spawn("c", false);
        let hr = spawn("ops", true);
        let approved_ok = [hb.join().unwrap(), hc.join().unwrap()]
            .into_iter()
            .map(|r| match r {
                Ok(_) => 1,
                Err(StoreError::Transition(GrantError::WrongStatus {
                    status: GrantStatus::Revoked,
                    ..
                })) => 0,
                Err(e) => panic!("unexpected: {e}"),
            })
            .sum::<usize>();
        hr.join().unwrap().unwrap();
        let end = store.get(&g.id).unwrap().unwrap();
        assert_eq!(end.status, GrantStatus::Revoked, "round {round}");
        assert_eq!(
            end.approvals.len(),
            approved_ok,
            "round {round}: every successful approval is recorded, no other"
        );
        assert_eq!(end.status_changed_by.as_deref(), Some("ops"));
    }
    let before = snapshot(store.as_ref());
    drop(store);
    assert_eq!(snapshot(&FileGrantStore::open(&path).unwrap()), before);
}

fn with_store(f: impl FnOnce(&Path, Vec<Grant>)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.json");
    let store = FileGrantStore::open(&path).unwrap();
    create(&store, issue(1, &["bob"], "T-1"));
    create(&store, issue(0, &[], "T-2"));
    let state = snapshot(&store);
    drop(store);
    f(&path, state);
}

#[test]
fn torn_writes_leave_the_previous_state() {
    let tmp = |p: &Path| p.with_file_name("grants.json.tmp");
    // Garbage left in the temp file by a crash mid-write.
    with_store(|path, state| {
        std::fs::write(tmp(path), b"\x00\x01garbage{{{").unwrap();
        let store = FileGrantStore::open(path).unwrap();
        assert_eq!(snapshot(&store), state);
        assert!(!tmp(path).exists(), "the leftover temp file is discarded");
        // And the store still writes after it.
        create(&store, issue(0, &[], "T-3"));
        assert_eq!(snapshot(&FileGrantStore::open(path).unwrap()).len(), 3);
    });
    // A truncated temp file: the next image cut halfway, crash before the rename.
    with_store(|path, state| {
        let full = std::fs::read(path).unwrap();
        std::fs::write(tmp(path), &full[..full.len() / 2]).unwrap();
        let store = FileGrantStore::open(path).unwrap();
        assert_eq!(snapshot(&store), state);
    });
}

#[test]
fn corrupt_main_file_is_refused() {
    type Damage = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, Damage)> = vec![
        ("truncated", Box::new(|b: &[u8]| b[..b.len() / 2].to_vec())),
        ("empty", Box::new(|_: &[u8]| Vec::new())),
        ("garbage", Box::new(|_: &[u8]| b"not json at all".to_vec())),
        (
            "wrong format",
            Box::new(|b: &[u8]| {
                String::from_utf8_lossy(b)
                    .replace("custody-grant-store/1", "other/9")
                    .into_bytes()
            }),
        ),
        (
            "bad secret",
            Box::new(|b: &[u8]| {
                let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                v["grants"][0]["secret"] = "short".into();
                serde_json::to_vec(&v).unwrap()
            }),
        ),
        (
            "duplicate grant",
            Box::new(|b: &[u8]| {
                let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                let first = v["grants"][0].clone();
                v["grants"].as_array_mut().unwrap().push(first);
                serde_json::to_vec(&v).unwrap()
            }),
        ),
    ];
    for (name, damage) in cases {
        with_store(|path, _| {
            let bytes = std::fs::read(path).unwrap();
            std::fs::write(path, damage(&bytes)).unwrap();
            let err = FileGrantStore::open(path)
                .err()
                .unwrap_or_else(|| panic!("{name}: opened a corrupt store"));
            assert!(matches!(err, StoreError::Corrupt { .. }), "{name}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&path.display().to_string())
                    && msg.contains("refusing to start empty"),
                "{name}: {msg}"
            );
            // The corrupt file is left alone for the operator.
            assert_eq!(std::fs::read(path).unwrap(), damage(&bytes), "{name}");
        });
    }
}

#[test]
fn record_use_counts_across_threads_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.json");
    let store = Arc::new(FileGrantStore::open(&path).unwrap());
    let g = create(store.as_ref(), issue(0, &[], "T-1"));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (store, id) = (Arc::clone(&store), g.id.clone());
            thread::spawn(move || {
                (0..100)
                    .map(|_| store.record_use(&id).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..400).collect::<Vec<_>>(),
        "each request gets its own count"
    );
    assert_eq!(store.uses(&g.id).unwrap(), 400);

    // A clean shutdown keeps the exact count.
    drop(store);
    let store = FileGrantStore::open(&path).unwrap();
    assert_eq!(store.uses(&g.id).unwrap(), 400);
    assert_eq!(store.record_use(&g.id).unwrap(), 400);
    assert_eq!(store.record_use(&g.id).unwrap(), 401);

    // A crash (no flush) restarts from the reservation: never below the real count.
    std::mem::forget(store);
    let store = FileGrantStore::open(&path).unwrap();
    let after_crash = store.uses(&g.id).unwrap();
    assert!(
        (402..=402 + use_reservation(g.request_budget)).contains(&after_crash),
        "{after_crash}"
    );
}

#[test]
fn reservations_scale_with_the_budget() {
    assert_eq!(use_reservation(Some(100)), USE_RESERVATION);
    assert_eq!(use_reservation(Some(64_000)), 1_000);
    assert_eq!(use_reservation(Some(u64::MAX)), USE_RESERVATION_MAX);
    assert_eq!(use_reservation(None), USE_RESERVATION_MAX);

    // A big budget: counts are written rarely, and a crash loses at most 1/64 of it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.json");
    let store = FileGrantStore::open(&path).unwrap();
    let mut issued = issue(0, &[], "T-1");
    issued.grant.request_budget = Some(64_000);
    let g = create(&store, issued);
    let written = || std::fs::read(&path).unwrap();
    store.record_use(&g.id).unwrap();
    let first = written();
    for _ in 1..900 {
        store.record_use(&g.id).unwrap();
    }
    assert_eq!(written(), first, "900 uses fit in one reservation of 1000");
    std::mem::forget(store);
    let store = FileGrantStore::open(&path).unwrap();
    assert_eq!(
        store.uses(&g.id).unwrap(),
        1_001,
        "restarts from the reservation"
    );
}

#[test]
fn expire_due_expires_only_due_grants() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileGrantStore::open(dir.path().join("g.json")).unwrap();
    let g = create(&store, issue(0, &[], "T-1"));
    let p = create(&store, issue(1, &["bob"], "T-2"));
    store.revoke(&p.id, "ops", NOW).unwrap();
    assert!(store.expire_due(NOW).unwrap().is_empty());
    let expired = store.expire_due(NOW + Duration::hours(1)).unwrap();
    assert_eq!(expired, vec![g.id.clone()]);
    assert_eq!(
        store.get(&g.id).unwrap().unwrap().status,
        GrantStatus::Expired
    );
    assert_eq!(
        store.get(&p.id).unwrap().unwrap().status,
        GrantStatus::Revoked
    );
}

#[test]
fn store_is_shareable() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn GrantStore>();
    assert_send_sync::<FileGrantStore>();
}
