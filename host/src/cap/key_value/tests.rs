use std::sync::Arc;
use std::time::{Duration, Instant};

use super::redb_store::RedbBackend;
use super::*;

fn scope(agent: &str) -> Scope {
    Scope {
        namespace: "team".into(),
        agent: agent.into(),
    }
}

fn store() -> (tempfile::TempDir, Arc<dyn KeyValueBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let backend = RedbBackend::open(&dir.path().join("kv.redb")).unwrap();
    (dir, Arc::new(backend))
}

fn txn(backend: &Arc<dyn KeyValueBackend>, agent: &str) -> Transaction {
    Transaction::new(backend.clone(), scope(agent), vec![], 1 << 20)
}

#[tokio::test]
async fn committed_writes_are_visible_and_uncommitted_ones_are_not() {
    let (_d, kv) = store();
    let mut t = txn(&kv, "a");
    t.set("seen", "alert-1", b"handled".to_vec()).await.unwrap();
    assert_eq!(
        t.get("seen", "alert-1").await.unwrap().unwrap(),
        b"handled",
        "reads see own writes"
    );
    assert_eq!(t.increment("stats", "runs", 2).await.unwrap(), 2);
    // Not visible to anyone before the commit.
    assert_eq!(txn(&kv, "a").get("seen", "alert-1").await.unwrap(), None);
    t.commit().await.unwrap();
    let mut after = txn(&kv, "a");
    assert_eq!(
        after.get("seen", "alert-1").await.unwrap().unwrap(),
        b"handled"
    );
    assert_eq!(after.increment("stats", "runs", 1).await.unwrap(), 3);

    // A dropped transaction (trap, budget breach, error result) leaves nothing.
    let mut dropped = txn(&kv, "a");
    dropped.set("seen", "alert-2", b"x".to_vec()).await.unwrap();
    dropped.delete("seen", "alert-1").await.unwrap();
    drop(dropped);
    let mut check = txn(&kv, "a");
    assert_eq!(check.get("seen", "alert-2").await.unwrap(), None);
    assert!(check.exists("seen", "alert-1").await.unwrap());
    assert_eq!(check.keys("seen").await.unwrap(), ["alert-1"]);
}

#[tokio::test]
async fn agents_never_see_each_others_keys() {
    let (_d, kv) = store();
    let mut a = txn(&kv, "a");
    a.set("b", "k", b"secret of a".to_vec()).await.unwrap();
    a.commit().await.unwrap();
    let mut b = txn(&kv, "b");
    assert_eq!(b.get("b", "k").await.unwrap(), None);
    assert!(b.keys("b").await.unwrap().is_empty());
    // Separators inside names cannot forge another scope's key.
    let forged = Scope {
        namespace: "team".into(),
        agent: "a\u{0}b".into(),
    };
    let mut f = Transaction::new(kv.clone(), forged, vec![], 1 << 20);
    assert_eq!(f.get("k", "").await.unwrap(), None);
}

#[tokio::test]
async fn a_concurrent_commit_is_a_conflict_not_a_lost_update() {
    let (_d, kv) = store();
    // A key read and then written conflicts (was: two increments, which are
    // now commutative deltas and never conflict).
    let mut first = txn(&kv, "a");
    let mut second = txn(&kv, "a");
    assert_eq!(first.get("c", "n").await.unwrap(), None);
    assert_eq!(second.get("c", "n").await.unwrap(), None);
    first
        .set("c", "n", 1u64.to_le_bytes().to_vec())
        .await
        .unwrap();
    second
        .set("c", "n", 1u64.to_le_bytes().to_vec())
        .await
        .unwrap();
    first.commit().await.unwrap();
    assert_eq!(
        second.commit().await,
        Err(KeyValueError::Conflict {
            bucket: "c".into(),
            key: "n".into()
        })
    );
    // Blind writes conflict too.
    let mut w1 = txn(&kv, "a");
    let mut w2 = txn(&kv, "a");
    w1.set("c", "blind", b"1".to_vec()).await.unwrap();
    w2.set("c", "blind", b"2".to_vec()).await.unwrap();
    w2.commit().await.unwrap();
    assert!(matches!(
        w1.commit().await,
        Err(KeyValueError::Conflict { .. })
    ));
    assert_eq!(
        txn(&kv, "a").get("c", "blind").await.unwrap().unwrap(),
        b"2"
    );
    assert_eq!(txn(&kv, "a").increment("c", "n", 0).await.unwrap(), 1);
}

#[tokio::test]
async fn concurrent_increments_of_one_key_all_commit_and_the_total_is_exact_on_redb() {
    let (_d, kv) = store();
    concurrent_increments_all_commit(kv).await;
}

/// 40 transactions open at once, each incrementing one counter (twice, and
/// another key once), commit concurrently: none conflicts, the sum is exact.
pub(crate) async fn concurrent_increments_all_commit(kv: Arc<dyn KeyValueBackend>) {
    let mut open = Vec::new();
    for i in 0..40u64 {
        let mut t = txn(&kv, "a");
        // What increment returns: the value at the first look plus own deltas.
        assert_eq!(t.increment("c", "hits", 1).await.unwrap(), 1);
        assert_eq!(t.increment("c", "hits", i).await.unwrap(), 1 + i);
        t.increment("c", &format!("own-{i}"), 7).await.unwrap();
        open.push(t);
    }
    let commits = open.into_iter().map(|t| tokio::spawn(t.commit()));
    for result in futures::future::join_all(commits).await {
        result.unwrap().unwrap();
    }
    let mut check = txn(&kv, "a");
    assert_eq!(
        check.increment("c", "hits", 0).await.unwrap(),
        40 + (0..40).sum::<u64>()
    );
    assert_eq!(check.keys("c").await.unwrap().len(), 41);
    // A counter read and incremented keeps the optimistic check.
    let mut reader = txn(&kv, "a");
    reader.get("c", "hits").await.unwrap();
    reader.increment("c", "hits", 1).await.unwrap();
    let mut other = txn(&kv, "a");
    other.increment("c", "hits", 1).await.unwrap();
    other.commit().await.unwrap();
    assert!(matches!(
        reader.commit().await,
        Err(KeyValueError::Conflict { .. })
    ));
    // Incremented then read: the read sees the deltas and makes it checked.
    let mut mixed = txn(&kv, "a");
    let seen = mixed.increment("c", "hits", 5).await.unwrap();
    assert_eq!(
        mixed.get("c", "hits").await.unwrap().unwrap(),
        seen.to_le_bytes()
    );
    let mut racer = txn(&kv, "a");
    racer.increment("c", "hits", 1).await.unwrap();
    racer.commit().await.unwrap();
    assert!(matches!(
        mixed.commit().await,
        Err(KeyValueError::Conflict { .. })
    ));
    // A value that is not a counter refuses the increment, at the call or
    // (when it changed since) at the commit, and nothing applies.
    let mut set = txn(&kv, "a");
    set.set("c", "text", b"hello".to_vec()).await.unwrap();
    set.commit().await.unwrap();
    assert!(matches!(
        txn(&kv, "a").increment("c", "text", 1).await,
        Err(KeyValueError::NotCounter { .. })
    ));
    let mut late = txn(&kv, "a");
    late.increment("c", "later", 1).await.unwrap();
    late.increment("c", "hits", 1).await.unwrap();
    let mut spoil = txn(&kv, "a");
    spoil
        .set("c", "later", b"not a counter".to_vec())
        .await
        .unwrap();
    spoil.commit().await.unwrap();
    assert!(matches!(
        late.commit().await,
        Err(KeyValueError::NotCounter { .. })
    ));
    assert_eq!(
        txn(&kv, "a").increment("c", "hits", 0).await.unwrap(),
        40 + (0..40).sum::<u64>() + 2,
        "the refused commit applied none of its increments"
    );
}

#[tokio::test]
async fn the_quota_counts_keys_and_values_and_lets_an_agent_shrink() {
    let (_d, kv) = store();
    let mut t = Transaction::new(kv.clone(), scope("a"), vec![], 100);
    assert!(matches!(
        t.set("b", "big", vec![0; 200]).await,
        // Refused at the call, by what the transaction would hold (was `Quota`
        // when only single values were checked).
        Err(KeyValueError::TransactionQuota { limit: 100, .. })
    ));
    t.set("b", "k1", vec![0; 60]).await.unwrap();
    t.commit().await.unwrap();
    assert_eq!(kv.usage(&scope("a")).await.unwrap(), 62);
    let mut over = Transaction::new(kv.clone(), scope("a"), vec![], 100);
    over.set("b", "k2", vec![0; 60]).await.unwrap();
    assert_eq!(
        over.commit().await,
        Err(KeyValueError::Quota {
            needed: 124,
            limit: 100
        })
    );
    let mut replace = Transaction::new(kv.clone(), scope("a"), vec![], 50);
    replace.set("b", "k1", vec![0; 10]).await.unwrap();
    replace.commit().await.unwrap();
    assert_eq!(kv.usage(&scope("a")).await.unwrap(), 12);
    let mut delete = Transaction::new(kv.clone(), scope("a"), vec![], 50);
    delete.delete("b", "k1").await.unwrap();
    delete.commit().await.unwrap();
    assert_eq!(kv.usage(&scope("a")).await.unwrap(), 0);
}

#[tokio::test]
async fn only_listed_buckets_open() {
    let (_d, kv) = store();
    let mut t = Transaction::new(kv.clone(), scope("a"), vec!["seen".into()], 1 << 20);
    t.set("seen", "k", vec![1]).await.unwrap();
    assert_eq!(
        t.get("other", "k").await,
        Err(KeyValueError::BucketDenied("other".into()))
    );
}

#[tokio::test]
async fn commits_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    {
        let kv: Arc<dyn KeyValueBackend> = Arc::new(RedbBackend::open(&path).unwrap());
        let mut t = txn(&kv, "a");
        t.set("b", "k", b"v".to_vec()).await.unwrap();
        t.commit().await.unwrap();
    }
    let kv: Arc<dyn KeyValueBackend> = Arc::new(RedbBackend::open(&path).unwrap());
    assert_eq!(txn(&kv, "a").get("b", "k").await.unwrap().unwrap(), b"v");
}

#[tokio::test]
async fn a_set_is_refused_once_the_buffered_writes_would_pass_the_quota() {
    let (_d, kv) = store();
    let mut t = Transaction::new(kv.clone(), scope("a"), vec![], 1000);
    for i in 0..3 {
        t.set("b", &format!("k{i}"), vec![0; 300]).await.unwrap();
    }
    assert_eq!(t.held_bytes(), 3 * 302);
    // Each value alone fits; the fourth would take the buffer past 1000 bytes.
    assert_eq!(
        t.set("b", "k3", vec![0; 300]).await,
        Err(KeyValueError::TransactionQuota {
            needed: 4 * 302,
            limit: 1000
        })
    );
    assert_eq!(t.held_bytes(), 3 * 302, "a refused set holds nothing");
    // A key rewritten counts once, at its latest size.
    for _ in 0..10 {
        t.set("b", "k0", vec![0; 300]).await.unwrap();
    }
    t.set("b", "k0", vec![0; 390]).await.unwrap();
    assert_eq!(t.held_bytes(), 392 + 2 * 302);
    // Deleting a buffered value gives its bytes back.
    t.delete("b", "k1").await.unwrap();
    assert_eq!(t.held_bytes(), 392 + 302 + 2);
    t.commit().await.unwrap();
    assert_eq!(kv.usage(&scope("a")).await.unwrap(), 392 + 302);
}

#[tokio::test]
async fn keys_read_count_against_the_quota_but_a_few_reads_do_not_matter() {
    let (_d, kv) = store();
    let mut t = Transaction::new(kv.clone(), scope("a"), vec![], 1 << 20);
    let key = |i: usize| format!("{i:01000}");
    // 1,048 keys of 1,000 bytes fit in 1 MiB; the next read is refused.
    for i in 0..1048 {
        assert_eq!(t.get("b", &key(i)).await.unwrap(), None);
    }
    assert!(matches!(
        t.get("b", &key(1048)).await,
        Err(KeyValueError::TransactionQuota { limit: 1048576, .. })
    ));
    // Reading a key already read costs nothing more.
    t.get("b", &key(0)).await.unwrap();

    // A normal agent: a few reads, and writes of keys it read, fit exactly
    // as the values alone would.
    let mut normal = Transaction::new(kv.clone(), scope("a"), vec![], 40);
    normal.get("b", "counter").await.unwrap();
    normal.increment("b", "counter", 1).await.unwrap();
    normal.set("b", "last", vec![0; 21]).await.unwrap();
    assert_eq!(normal.held_bytes(), 15 + 25);
    normal.commit().await.unwrap();
}

#[tokio::test]
async fn a_transaction_touches_a_bounded_number_of_keys() {
    let (_d, kv) = store();
    let mut t = Transaction::new(kv.clone(), scope("a"), vec![], 1 << 20);
    for i in 0..MAX_TRANSACTION_KEYS {
        t.get("b", &i.to_string()).await.unwrap();
    }
    assert_eq!(
        t.set("b", "one-more", vec![]).await,
        Err(KeyValueError::TooManyKeys {
            limit: MAX_TRANSACTION_KEYS
        })
    );
}

#[tokio::test]
async fn keys_and_bucket_names_past_their_limits_are_refused() {
    let (_d, kv) = store();
    let mut t = txn(&kv, "a");
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    let refused = Err(KeyValueError::KeyTooLong {
        len: MAX_KEY_BYTES + 1,
        limit: MAX_KEY_BYTES,
    });
    assert_eq!(t.set("b", &long, vec![1]).await, refused);
    assert_eq!(t.get("b", &long).await.map(|_| ()), refused);
    assert_eq!(t.delete("b", &long).await, refused);
    t.set("b", &"k".repeat(MAX_KEY_BYTES), vec![1])
        .await
        .unwrap();
    assert!(matches!(
        t.check_bucket(&"b".repeat(MAX_BUCKET_NAME_BYTES + 1)),
        Err(KeyValueError::BucketNameTooLong { .. })
    ));
}

#[tokio::test]
async fn deletes_of_absent_keys_write_nothing_and_deletes_leave_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let kv: Arc<dyn KeyValueBackend> = Arc::new(RedbBackend::open(&path).unwrap());
    // Warm the file up with one real commit so its size is settled.
    let mut warm = txn(&kv, "a");
    warm.set("b", "k", vec![0; 1000]).await.unwrap();
    warm.commit().await.unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    for round in 0..5 {
        let mut t = txn(&kv, "a");
        for i in 0..1000 {
            t.delete("b", &format!("{round}-{i:0998}")).await.unwrap();
        }
        assert_eq!(t.pending_writes(), 0, "nothing to write");
        t.commit().await.unwrap();
    }
    let grown = std::fs::metadata(&path).unwrap().len() - size;
    assert!(
        grown < 64 * 1024,
        "5,000 absent deletes grew kv.redb by {grown} bytes"
    );

    let mut del = txn(&kv, "a");
    del.delete("b", "k").await.unwrap();
    del.commit().await.unwrap();
    assert_eq!(
        kv.read(&scope("a"), "b", "k").await.unwrap(),
        Versioned {
            value: None,
            version: 0
        },
        "absent is version 0: no tombstone"
    );
}

#[tokio::test]
async fn a_key_deleted_and_recreated_since_it_was_read_is_a_conflict() {
    let (_d, kv) = store();
    let mut setup = txn(&kv, "a");
    setup.set("b", "k", b"old".to_vec()).await.unwrap();
    setup.commit().await.unwrap();
    let mut slow = txn(&kv, "a");
    assert_eq!(slow.get("b", "k").await.unwrap().unwrap(), b"old");
    let mut del = txn(&kv, "a");
    del.delete("b", "k").await.unwrap();
    del.commit().await.unwrap();
    let mut again = txn(&kv, "a");
    again.set("b", "k", b"new".to_vec()).await.unwrap();
    again.commit().await.unwrap();
    slow.set("b", "k2", b"from old".to_vec()).await.unwrap();
    assert!(matches!(
        slow.commit().await,
        Err(KeyValueError::Conflict { .. })
    ));
}

#[tokio::test]
async fn an_agent_at_its_quota_can_delete_to_shrink() {
    let (_d, kv) = store();
    let mut fill = Transaction::new(kv.clone(), scope("a"), vec![], 100);
    fill.set("b", "k1", vec![0; 48]).await.unwrap();
    fill.set("b", "k2", vec![0; 48]).await.unwrap();
    fill.commit().await.unwrap();
    let mut more = Transaction::new(kv.clone(), scope("a"), vec![], 100);
    more.set("b", "k3", vec![0; 10]).await.unwrap();
    assert!(matches!(
        more.commit().await,
        Err(KeyValueError::Quota { .. })
    ));
    // Even with the quota lowered below what is stored.
    let mut shrink = Transaction::new(kv.clone(), scope("a"), vec![], 10);
    shrink.delete("b", "k1").await.unwrap();
    shrink.commit().await.unwrap();
    assert_eq!(kv.usage(&scope("a")).await.unwrap(), 50);
}

#[tokio::test]
async fn no_call_or_commit_starts_after_the_deadline() {
    let (_d, kv) = store();
    let mut t = txn(&kv, "a").with_deadline(Instant::now() + Duration::from_millis(50));
    t.set("b", "k", b"v".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(t.get("b", "other").await, Err(KeyValueError::Deadline));
    assert_eq!(t.commit().await, Err(KeyValueError::Deadline));
    assert_eq!(
        txn(&kv, "a").get("b", "k").await.unwrap(),
        None,
        "nothing committed"
    );
}
