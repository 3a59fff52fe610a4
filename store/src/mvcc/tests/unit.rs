//! Focused cases: one behaviour each.

use super::*;
use skiff_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(k, v))),
    }
}

fn op_put_lease(k: &str, v: &str, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            lease,
            ..put_req(k, v)
        })),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                prev_kv: true,
            },
        )),
    }
}

fn op_get(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: k.into(),
            range_end: end.into(),
            ..Default::default()
        })),
    }
}

fn op_get_at(k: &str, rev: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: k.into(),
            revision: rev,
            ..Default::default()
        })),
    }
}

fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(t)),
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, v: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: k.into(),
        range_end: Vec::new(),
        target_union: Some(v),
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn range_kvs(r: &ResponseOp) -> &[KeyValue] {
    match &r.response {
        Some(response_op::Response::ResponseRange(r)) => &r.kvs,
        other => panic!("not a range response: {other:?}"),
    }
}

fn kv(k: &str, v: &str, create: i64, modr: i64, version: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        create_revision: create,
        mod_revision: modr,
        version,
        value: v.into(),
        lease: 0,
    }
}

#[test]
fn txn_reads_see_the_txns_own_writes() {
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    put(&mut m, &mut b, "a", "1");
    put(&mut m, &mut b, "b", "1");
    let req = txn(
        vec![cmp(
            "a",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value("1".into()),
        )],
        vec![
            op_put("a", "2"),
            op_get("a", ""),
            op_del("b", ""),
            op_get("b", ""),
            op_put("c", "1"),
            op_get("\0", "\0"),
            // An explicit past revision still reads the past.
            op_get_at("a", 2),
        ],
        vec![],
    );
    validate_txn(&req, 128).unwrap();
    let (resp, ch) = write(&mut m, &mut b, &any_lease, |w| w.txn(&req)).unwrap();
    assert!(resp.succeeded);
    let r = &resp.responses;
    assert_eq!(range_kvs(&r[1]), [kv("a", "2", 1, 3, 2)]);
    assert!(range_kvs(&r[3]).is_empty());
    assert_eq!(
        range_kvs(&r[5]),
        [kv("a", "2", 1, 3, 2), kv("c", "1", 3, 3, 1)]
    );
    assert_eq!(range_kvs(&r[6]), [kv("a", "1", 1, 1, 1)]);
    // The whole txn is one revision, one sub-revision per change.
    assert_eq!(ch.revision, 3);
    let revs: Vec<Revision> = ch.records.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        revs,
        [0, 1, 2].map(|sub| Revision { main: 3, sub }).to_vec()
    );
    assert_eq!(m.current_revision(), 3);
}

#[test]
fn compares_see_the_state_before_the_txn() {
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    put(&mut m, &mut b, "a", "1");
    // The success branch writes "a", but the compare was already decided.
    let req = txn(
        vec![cmp(
            "a",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Version(1),
        )],
        vec![op_put("a", "2")],
        vec![op_put("b", "x")],
    );
    let (resp, _) = write(&mut m, &mut b, &any_lease, |w| w.txn(&req)).unwrap();
    assert!(resp.succeeded);
    let (resp, _) = write(&mut m, &mut b, &any_lease, |w| w.txn(&req)).unwrap();
    assert!(!resp.succeeded);
    assert_eq!(
        all_at(&m, &b, 0).unwrap(),
        [kv("a", "2", 1, 2, 2), kv("b", "x", 3, 3, 1)]
    );
}

#[test]
fn nested_compares_see_the_state_before_the_whole_txn() {
    // As etcd (compareToPath): every compare, nested ones too, is decided against the
    // state before the transaction, while reads see its writes.
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    put(&mut m, &mut b, "a", "1");
    let a_is_1 = cmp(
        "a",
        CompareTarget::Value,
        CompareResult::Equal,
        TargetUnion::Value("1".into()),
    );
    let req = txn(
        vec![],
        vec![
            op_put("a", "2"),
            op_txn(txn(
                vec![a_is_1],
                vec![op_put("b", "before"), op_get("a", "")],
                vec![op_put("b", "after")],
            )),
        ],
        vec![],
    );
    validate_txn(&req, 128).unwrap();
    let (resp, _) = write(&mut m, &mut b, &any_lease, |w| w.txn(&req)).unwrap();
    let Some(response_op::Response::ResponseTxn(nested)) = &resp.responses[1].response else {
        panic!("not a txn response: {resp:?}");
    };
    assert!(nested.succeeded);
    assert_eq!(range_kvs(&nested.responses[1]), [kv("a", "2", 1, 2, 2)]);
    let got = m.range(&b, &get_req("b")).unwrap().kvs;
    assert_eq!(got[0].value, b"before");
}

#[test]
fn a_txn_that_changes_nothing_keeps_the_revision() {
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    put(&mut m, &mut b, "a", "1");
    let read_only = txn(
        vec![cmp(
            "a",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Version(1),
        )],
        vec![op_get("a", "")],
        vec![op_get("b", "")],
    );
    assert!(txn_is_read_only(&read_only));
    let served = m.read_txn(&b, &read_only).unwrap();
    let (resp, ch) = write(&mut m, &mut b, &any_lease, |w| w.txn(&read_only)).unwrap();
    assert_eq!(served, resp);
    assert!(resp.succeeded);
    assert_eq!(range_kvs(&resp.responses[0]), [kv("a", "1", 1, 1, 1)]);
    assert_eq!(ch.revision, 1);
    assert!(ch.records.is_empty() && ch.events.is_empty() && ch.lease_moves.is_empty());

    // A delete of nothing, and a failed compare with an empty failure branch.
    let no_op_delete = txn(vec![], vec![op_del("zz", "")], vec![]);
    assert!(!txn_is_read_only(&no_op_delete));
    let (resp, ch) = write(&mut m, &mut b, &any_lease, |w| w.txn(&no_op_delete)).unwrap();
    assert!(resp.succeeded);
    assert_eq!(ch.revision, 1);
    assert!(ch.records.is_empty());
    let failed = txn(
        vec![cmp(
            "a",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value("nope".into()),
        )],
        vec![op_put("a", "2")],
        vec![],
    );
    let (resp, ch) = write(&mut m, &mut b, &any_lease, |w| w.txn(&failed)).unwrap();
    assert!(!resp.succeeded && resp.responses.is_empty());
    assert_eq!(ch.revision, 1);
    assert_eq!(m.current_revision(), 1);

    // The next change takes revision 2, sub-revision 0.
    let ch = put(&mut m, &mut b, "b", "1");
    assert_eq!(ch.revision, 2);
    assert_eq!(ch.records[0].0, Revision { main: 2, sub: 0 });
}

#[test]
fn abort_leaves_no_trace() {
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    let leases = |id: i64| id == 1;
    write(&mut m, &mut b, &leases, |w| {
        w.put(&PutRequest {
            lease: 1,
            ..put_req("a", "1")
        })
    })
    .unwrap();
    put(&mut m, &mut b, "b", "1");
    put(&mut m, &mut b, "c", "1");
    delete(&mut m, &mut b, "c");
    let index_before = format!("{m:?}");
    let backend_before = b.clone();
    let hash_before = m.hash_kv(&b, 0).unwrap();

    // Puts, a delete and a re-creation succeed; then a put with a missing lease fails.
    let req = txn(
        vec![],
        vec![
            op_put("a", "2"),
            op_del("b", ""),
            op_put("c", "2"),
            op_put("new", "1"),
            op_put_lease("d", "1", 7),
        ],
        vec![],
    );
    validate_txn(&req, 128).unwrap();
    let err = write(&mut m, &mut b, &leases, |w| w.txn(&req)).unwrap_err();
    assert!(matches!(err, Error::LeaseNotFound), "{err:?}");
    assert_eq!(format!("{m:?}"), index_before);
    assert_eq!(b, backend_before);
    assert_eq!(m.current_revision(), 4);
    assert_eq!(m.hash_kv(&b, 0).unwrap(), hash_before);
    assert_eq!(m.lease_of(b"a"), 1);

    // The same with a put that needs an existing key, after writes to that key's neighbours.
    let err = write(&mut m, &mut b, &leases, |w| {
        w.put(&put_req("c", "3"))?;
        w.delete_range(&DeleteRangeRequest {
            key: "a".into(),
            range_end: "b".into(),
            prev_kv: false,
        })?;
        w.put(&PutRequest {
            ignore_value: true,
            ..put_req("zz", "")
        })
    })
    .unwrap_err();
    assert!(matches!(err, Error::KeyNotFound), "{err:?}");
    assert_eq!(format!("{m:?}"), index_before);

    // Later writes carry on from where the store was.
    let ch = put(&mut m, &mut b, "a", "3");
    assert_eq!(ch.records[0].0, Revision { main: 5, sub: 0 });
    assert_eq!(ch.events[0].prev_kv.as_ref().unwrap().value, b"1");
    // A put without a lease detaches the key from its lease.
    assert_eq!(ch.lease_moves, [(b"a".to_vec(), 1, 0)]);
    assert_eq!(
        all_at(&m, &b, 0).unwrap(),
        [kv("a", "3", 1, 5, 2), kv("b", "1", 2, 2, 1)]
    );
}

#[test]
fn validate_txn_rejects_two_writes_of_a_key_in_one_branch() {
    let dup = |req: TxnRequest| matches!(validate_txn(&req, 128), Err(Error::DuplicateKey));
    let ok = |req: TxnRequest| validate_txn(&req, 128).is_ok();

    assert!(dup(txn(
        vec![],
        vec![op_put("a", "1"), op_put("a", "2")],
        vec![]
    )));
    assert!(dup(txn(
        vec![],
        vec![],
        vec![op_put("a", "1"), op_put("a", "2")]
    )));
    // A put and a delete that covers it, in either order, single key or range.
    assert!(dup(txn(
        vec![],
        vec![op_put("a", "1"), op_del("a", "")],
        vec![]
    )));
    assert!(dup(txn(
        vec![],
        vec![op_del("a", ""), op_put("a", "1")],
        vec![]
    )));
    assert!(dup(txn(
        vec![],
        vec![op_put("ab", "1"), op_del("a", "b")],
        vec![]
    )));
    assert!(dup(txn(
        vec![],
        vec![op_del("a", "\0"), op_put("zz", "1")],
        vec![]
    )));

    // Different branches never both run.
    assert!(ok(txn(
        vec![],
        vec![op_put("a", "1")],
        vec![op_put("a", "2")]
    )));
    assert!(ok(txn(
        vec![],
        vec![op_del("a", "b")],
        vec![op_put("ab", "2")]
    )));
    // Deletes may overlap; a put outside every delete range is fine; reads never conflict.
    assert!(ok(txn(
        vec![],
        vec![
            op_del("a", "c"),
            op_del("b", ""),
            op_put("c", "1"),
            op_get("c", "")
        ],
        vec![],
    )));
    assert!(ok(txn(
        vec![],
        vec![op_put("a", "1"), op_put("ab", "1")],
        vec![]
    )));

    // Nested txns: a nested branch's writes conflict with the enclosing branch's.
    let nested = |success, failure| op_txn(txn(vec![], success, failure));
    assert!(dup(txn(
        vec![],
        vec![op_put("a", "1"), nested(vec![op_put("a", "2")], vec![])],
        vec![],
    )));
    assert!(dup(txn(
        vec![],
        vec![op_del("a", "b"), nested(vec![], vec![op_put("ab", "2")])],
        vec![],
    )));
    // ... whichever comes first.
    assert!(dup(txn(
        vec![],
        vec![nested(vec![op_put("a", "2")], vec![]), op_put("a", "1")],
        vec![],
    )));
    assert!(dup(txn(
        vec![],
        vec![nested(vec![op_put("ab", "2")], vec![]), op_del("a", "b")],
        vec![],
    )));
    assert!(dup(txn(
        vec![],
        vec![nested(vec![op_del("a", "")], vec![]), op_put("a", "1")],
        vec![],
    )));
    // Two nested txns in one branch both run.
    assert!(dup(txn(
        vec![],
        vec![
            nested(vec![op_put("a", "1")], vec![]),
            nested(vec![], vec![op_put("a", "2")]),
        ],
        vec![],
    )));
    // The nested txn's own branches exclude each other.
    assert!(ok(txn(
        vec![],
        vec![
            nested(vec![op_put("a", "1")], vec![op_put("a", "2")]),
            nested(vec![op_del("b", "")], vec![op_put("b", "2")]),
            op_put("c", "1"),
        ],
        vec![op_put("a", "3")],
    )));

    // The other checks.
    assert!(matches!(
        validate_txn(&txn(vec![], vec![op_put("", "1")], vec![]), 128),
        Err(Error::EmptyKey)
    ));
    assert!(matches!(
        validate_txn(
            &txn(
                vec![],
                (0..3).map(|i| op_put(&i.to_string(), "v")).collect(),
                vec![]
            ),
            2
        ),
        Err(Error::TooManyOps)
    ));
}

#[test]
fn a_value_compare_on_a_missing_key_is_false() {
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    put(&mut m, &mut b, "gone", "v");
    delete(&mut m, &mut b, "gone");
    use CompareResult as R;
    use CompareTarget as T;
    for key in ["missing", "gone"] {
        let holds = |m: &mut Mvcc, b: &mut Mem, c: Compare| {
            let req = txn(vec![c], vec![], vec![]);
            let read = m.read_txn(&*b, &req).unwrap().succeeded;
            let (resp, _) = write(m, b, &any_lease, |w| w.txn(&req)).unwrap();
            assert_eq!(read, resp.succeeded);
            read
        };
        // No value at all: every comparison of it fails, even with the empty value.
        for (result, v) in [
            (R::Equal, ""),
            (R::NotEqual, "x"),
            (R::NotEqual, ""),
            (R::Greater, ""),
            (R::Less, "zzz"),
        ] {
            let c = cmp(key, T::Value, result, TargetUnion::Value(v.into()));
            assert!(!holds(&mut m, &mut b, c), "{key} {result:?} {v:?}");
        }
        // The numeric targets compare as zero.
        for (target, result, v) in [
            (T::Version, R::Equal, TargetUnion::Version(0)),
            (T::Create, R::Equal, TargetUnion::CreateRevision(0)),
            (T::Mod, R::Less, TargetUnion::ModRevision(1)),
            (T::Lease, R::Equal, TargetUnion::Lease(0)),
        ] {
            let c = cmp(key, target, result, v);
            assert!(holds(&mut m, &mut b, c), "{key} {target:?}");
        }
    }
    assert_eq!(m.current_revision(), 2);
}

#[test]
fn ignore_value_and_ignore_lease_need_an_existing_key() {
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    write(&mut m, &mut b, &any_lease, |w| {
        w.put(&PutRequest {
            lease: 5,
            ..put_req("a", "1")
        })
    })
    .unwrap();
    put(&mut m, &mut b, "gone", "v");
    delete(&mut m, &mut b, "gone");
    for key in ["missing", "gone"] {
        for (ignore_value, ignore_lease) in [(true, false), (false, true), (true, true)] {
            let req = PutRequest {
                key: key.into(),
                ignore_value,
                ignore_lease,
                ..Default::default()
            };
            let err = write(&mut m, &mut b, &any_lease, |w| w.put(&req)).unwrap_err();
            assert!(matches!(err, Error::KeyNotFound), "{key}: {err:?}");
        }
    }
    assert_eq!(m.current_revision(), 3);

    // On an existing key they keep the value, or the lease.
    let req = PutRequest {
        key: "a".into(),
        value: "2".into(),
        ignore_lease: true,
        ..Default::default()
    };
    write(&mut m, &mut b, &any_lease, |w| w.put(&req)).unwrap();
    let req = PutRequest {
        key: "a".into(),
        lease: 6,
        ignore_value: true,
        ..Default::default()
    };
    let (_, ch) = write(&mut m, &mut b, &any_lease, |w| w.put(&req)).unwrap();
    assert_eq!(ch.lease_moves, [(b"a".to_vec(), 5, 6)]);
    let got = m.range(&b, &get_req("a")).unwrap().kvs;
    assert_eq!(
        got,
        [KeyValue {
            lease: 6,
            ..kv("a", "2", 1, 5, 3)
        }]
    );
    assert_eq!(m.lease_of(b"a"), 6);
}

#[test]
fn compaction_keeps_the_latest_revision_of_live_keys_only() {
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    put(&mut m, &mut b, "a", "1"); // 1
    put(&mut m, &mut b, "a", "2"); // 2
    put(&mut m, &mut b, "b", "1"); // 3
    delete(&mut m, &mut b, "b"); // 4
    put(&mut m, &mut b, "c", "1"); // 5
    put(&mut m, &mut b, "d", "1"); // 6
    delete(&mut m, &mut b, "d"); // 7
    put(&mut m, &mut b, "d", "2"); // 8
    let at = |main| Revision { main, sub: 0 };

    let c = compact(&mut m, &mut b, 5).unwrap();
    let mut removed = c.removed.clone();
    removed.sort();
    assert_eq!(removed, [at(1), at(3), at(4)]);
    assert_eq!(
        b.keys().copied().collect::<Vec<_>>(),
        [2, 5, 6, 7, 8].map(at)
    );
    // The deleted key is gone from the index altogether.
    assert!(!m.index.contains_key(b"b".as_slice()));
    assert_eq!(m.compact_revision(), 5);
    assert_eq!(m.size(), b.values().map(Record::cost).sum::<u64>());

    // Reads at the compaction point still work, below it they do not.
    assert_eq!(
        all_at(&m, &b, 5).unwrap(),
        [kv("a", "2", 1, 2, 2), kv("c", "1", 5, 5, 1)]
    );
    assert!(matches!(
        all_at(&m, &b, 4),
        Err(Error::Compacted {
            compact_revision: 5
        })
    ));
    assert!(matches!(all_at(&m, &b, 9), Err(Error::FutureRevision)));
    assert!(matches!(
        m.events(&b, 5, 8),
        Err(Error::Compacted {
            compact_revision: 5
        })
    ));
    let evs = m.events(&b, 6, 8).unwrap();
    assert_eq!(evs.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [6, 7, 8]);
    assert_eq!(evs[1].1[0].prev_kv, Some(kv("d", "1", 6, 6, 1)));
    assert_eq!(evs[2].1[0].prev_kv, None);

    assert!(matches!(
        m.compact(5),
        Err(Error::Compacted {
            compact_revision: 5
        })
    ));
    assert!(matches!(m.compact(9), Err(Error::FutureRevision)));

    // Compacting past a delete and re-creation keeps only the new generation.
    let c = compact(&mut m, &mut b, 8).unwrap();
    let mut removed = c.removed.clone();
    removed.sort();
    assert_eq!(removed, [at(6), at(7)]);
    assert_eq!(b.keys().copied().collect::<Vec<_>>(), [2, 5, 8].map(at));
    assert_eq!(
        all_at(&m, &b, 8).unwrap(),
        [
            kv("a", "2", 1, 2, 2),
            kv("c", "1", 5, 5, 1),
            kv("d", "2", 8, 8, 1)
        ]
    );

    // A restart from the remaining records answers the same.
    let restored = Mvcc::restore(b.clone(), m.current_revision(), m.compact_revision());
    assert_eq!(format!("{restored:?}"), format!("{m:?}"));
}

#[test]
fn hash_kv_follows_the_history() {
    fn build(last: &str) -> (Mvcc, Mem) {
        let mut m = Mvcc::default();
        let mut b = Mem::new();
        put(&mut m, &mut b, "a", "1");
        put(&mut m, &mut b, "b", "1");
        delete(&mut m, &mut b, "a");
        put(&mut m, &mut b, "b", last);
        (m, b)
    }
    let (mut m1, mut b1) = build("2");
    let (mut m2, mut b2) = build("2");
    let (m3, b3) = build("3");
    for rev in 0..=4 {
        assert_eq!(m1.hash_kv(&b1, rev).unwrap(), m2.hash_kv(&b2, rev).unwrap());
    }
    assert_ne!(m1.hash_kv(&b1, 4).unwrap(), m3.hash_kv(&b3, 4).unwrap());
    // Before the revisions that differ, the histories agree.
    assert_eq!(m1.hash_kv(&b1, 3).unwrap(), m3.hash_kv(&b3, 3).unwrap());

    compact(&mut m1, &mut b1, 3).unwrap();
    compact(&mut m2, &mut b2, 3).unwrap();
    assert_eq!(m1.hash_kv(&b1, 4).unwrap(), m2.hash_kv(&b2, 4).unwrap());
    let restored = Mvcc::restore(b1.clone(), 4, 3);
    assert_eq!(
        restored.hash_kv(&b1, 4).unwrap(),
        m1.hash_kv(&b1, 4).unwrap()
    );
    assert!(matches!(m1.hash_kv(&b1, 2), Err(Error::Compacted { .. })));
}

#[test]
fn empty_ranges_of_revisions_read_nothing() {
    let mut m = Mvcc::default();
    let mut b = Mem::new();
    // A fresh store: nothing to hash (this scanned revisions 1..=0).
    assert_eq!(
        m.hash_kv(&b, 0).unwrap(),
        crc32fast::Hasher::new().finalize()
    );
    put(&mut m, &mut b, "a", "1");
    assert!(m.events(&b, 2, 1).unwrap().is_empty());
    assert!(m.events(&b, 2, 5).unwrap().is_empty());
    assert_eq!(m.events(&b, 1, 5).unwrap().len(), 1);
    assert!(Backend::scan(&b, 3, 2).unwrap().is_empty());
}
