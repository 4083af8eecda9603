use std::sync::Arc;

use super::redb_store::RedbBackend;
use super::*;

fn scope(agent: &str) -> Scope {
    Scope {
        namespace: "team".into(),
        agent: agent.into(),
    }
}

fn store() -> (tempfile::TempDir, Arc<dyn KvBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let backend = RedbBackend::open(&dir.path().join("kv.redb")).unwrap();
    (dir, Arc::new(backend))
}

fn txn(backend: &Arc<dyn KvBackend>, agent: &str) -> Transaction {
    Transaction::new(backend.clone(), scope(agent), vec![], 1 << 20)
}

#[test]
fn committed_writes_are_visible_and_uncommitted_ones_are_not() {
    let (_d, kv) = store();
    let mut t = txn(&kv, "a");
    t.set("seen", "alert-1", b"handled".to_vec()).unwrap();
    assert_eq!(
        t.get("seen", "alert-1").unwrap().unwrap(),
        b"handled",
        "reads see own writes"
    );
    assert_eq!(t.increment("stats", "runs", 2).unwrap(), 2);
    // Not visible to anyone before the commit.
    assert_eq!(txn(&kv, "a").get("seen", "alert-1").unwrap(), None);
    t.commit().unwrap();
    let mut after = txn(&kv, "a");
    assert_eq!(after.get("seen", "alert-1").unwrap().unwrap(), b"handled");
    assert_eq!(after.increment("stats", "runs", 1).unwrap(), 3);

    // A dropped transaction (trap, budget breach, error result) leaves nothing.
    let mut dropped = txn(&kv, "a");
    dropped.set("seen", "alert-2", b"x".to_vec()).unwrap();
    dropped.delete("seen", "alert-1").unwrap();
    drop(dropped);
    let mut check = txn(&kv, "a");
    assert_eq!(check.get("seen", "alert-2").unwrap(), None);
    assert!(check.exists("seen", "alert-1").unwrap());
    assert_eq!(check.keys("seen").unwrap(), ["alert-1"]);
}

#[test]
fn agents_never_see_each_others_keys() {
    let (_d, kv) = store();
    let mut a = txn(&kv, "a");
    a.set("b", "k", b"secret of a".to_vec()).unwrap();
    a.commit().unwrap();
    let mut b = txn(&kv, "b");
    assert_eq!(b.get("b", "k").unwrap(), None);
    assert!(b.keys("b").unwrap().is_empty());
    // Separators inside names cannot forge another scope's key.
    let forged = Scope {
        namespace: "team".into(),
        agent: "a\u{0}b".into(),
    };
    let mut f = Transaction::new(kv.clone(), forged, vec![], 1 << 20);
    assert_eq!(f.get("k", "").unwrap(), None);
}

#[test]
fn a_concurrent_commit_is_a_conflict_not_a_lost_update() {
    let (_d, kv) = store();
    let mut first = txn(&kv, "a");
    let mut second = txn(&kv, "a");
    assert_eq!(first.increment("c", "n", 1).unwrap(), 1);
    assert_eq!(second.increment("c", "n", 1).unwrap(), 1);
    first.commit().unwrap();
    assert_eq!(
        second.commit(),
        Err(KvError::Conflict {
            bucket: "c".into(),
            key: "n".into()
        })
    );
    // Blind writes conflict too.
    let mut w1 = txn(&kv, "a");
    let mut w2 = txn(&kv, "a");
    w1.set("c", "blind", b"1".to_vec()).unwrap();
    w2.set("c", "blind", b"2".to_vec()).unwrap();
    w2.commit().unwrap();
    assert!(matches!(w1.commit(), Err(KvError::Conflict { .. })));
    assert_eq!(txn(&kv, "a").get("c", "blind").unwrap().unwrap(), b"2");
    assert_eq!(txn(&kv, "a").increment("c", "n", 0).unwrap(), 1);
}

#[test]
fn the_quota_counts_keys_and_values_and_lets_an_agent_shrink() {
    let (_d, kv) = store();
    let mut t = Transaction::new(kv.clone(), scope("a"), vec![], 100);
    assert!(matches!(
        t.set("b", "big", vec![0; 200]),
        Err(KvError::Quota { limit: 100, .. })
    ));
    t.set("b", "k1", vec![0; 60]).unwrap();
    t.commit().unwrap();
    assert_eq!(kv.usage(&scope("a")).unwrap(), 62);
    let mut over = Transaction::new(kv.clone(), scope("a"), vec![], 100);
    over.set("b", "k2", vec![0; 60]).unwrap();
    assert_eq!(
        over.commit(),
        Err(KvError::Quota {
            needed: 124,
            limit: 100
        })
    );
    let mut replace = Transaction::new(kv.clone(), scope("a"), vec![], 50);
    replace.set("b", "k1", vec![0; 10]).unwrap();
    replace.commit().unwrap();
    assert_eq!(kv.usage(&scope("a")).unwrap(), 12);
    let mut delete = Transaction::new(kv.clone(), scope("a"), vec![], 50);
    delete.delete("b", "k1").unwrap();
    delete.commit().unwrap();
    assert_eq!(kv.usage(&scope("a")).unwrap(), 0);
}

#[test]
fn only_listed_buckets_open() {
    let (_d, kv) = store();
    let mut t = Transaction::new(kv.clone(), scope("a"), vec!["seen".into()], 1 << 20);
    t.set("seen", "k", vec![1]).unwrap();
    assert_eq!(
        t.get("other", "k"),
        Err(KvError::BucketDenied("other".into()))
    );
}

#[test]
fn commits_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    {
        let kv: Arc<dyn KvBackend> = Arc::new(RedbBackend::open(&path).unwrap());
        let mut t = txn(&kv, "a");
        t.set("b", "k", b"v".to_vec()).unwrap();
        t.commit().unwrap();
    }
    let kv: Arc<dyn KvBackend> = Arc::new(RedbBackend::open(&path).unwrap());
    assert_eq!(txn(&kv, "a").get("b", "k").unwrap().unwrap(), b"v");
}
