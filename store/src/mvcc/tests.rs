//! Tests of the MVCC logic: focused cases in [`unit`], and in [`model`] a property test
//! that checks random operation sequences against a reference model of the key space.

use super::*;

mod model;
mod unit;

/// The in-memory backend the tests persist records into.
type Mem = BTreeMap<Revision, Record>;

/// Every lease exists.
fn any_lease(_: i64) -> bool {
    true
}

/// Runs `f` in one write transaction the way the state machine does: on success the
/// records are persisted into `b`, on failure the transaction is aborted.
fn write<T>(
    m: &mut Mvcc,
    b: &mut Mem,
    lease_exists: &dyn Fn(i64) -> bool,
    f: impl FnOnce(&mut WriteTxn<'_, Mem>) -> Result<T>,
) -> Result<(T, Changes)> {
    let mut w = m.write(&*b, lease_exists);
    match f(&mut w) {
        Ok(t) => {
            let changes = w.finish();
            b.extend(changes.records.iter().cloned());
            Ok((t, changes))
        }
        Err(e) => {
            w.abort();
            Err(e)
        }
    }
}

/// Compacts `m` at `rev` and removes the dropped records from `b`, as the state machine does.
fn compact(m: &mut Mvcc, b: &mut Mem, rev: i64) -> Result<Compaction> {
    let c = m.compact(rev)?;
    let mut freed = 0;
    for r in &c.removed {
        let rec = b
            .remove(r)
            .expect("compaction removed a revision the backend lacks");
        freed += rec.cost();
    }
    m.release(freed);
    Ok(c)
}

fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

fn put(m: &mut Mvcc, b: &mut Mem, k: &str, v: &str) -> Changes {
    write(m, b, &any_lease, |w| w.put(&put_req(k, v)))
        .unwrap()
        .1
}

fn delete(m: &mut Mvcc, b: &mut Mem, k: &str) -> Changes {
    let req = DeleteRangeRequest {
        key: k.into(),
        ..Default::default()
    };
    write(m, b, &any_lease, |w| w.delete_range(&req)).unwrap().1
}

fn get_req(k: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        ..Default::default()
    }
}

/// Every key live at `rev` (0: now).
fn all_at(m: &Mvcc, b: &Mem, rev: i64) -> Result<Vec<KeyValue>> {
    let r = m.range(
        b,
        &RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        },
    )?;
    Ok(r.kvs)
}

#[test]
fn put_counts_versions_and_revisions() {
    let mut m = Mvcc::default();
    let mut b = BTreeMap::new();
    put(&mut m, &mut b, "a", "1");
    put(&mut m, &mut b, "a", "2");
    let r = m.range(&b, &get_req("a")).unwrap();
    let kv = &r.kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
    assert_eq!(kv.value, b"2");
    let old = m
        .range(
            &b,
            &RangeRequest {
                key: "a".into(),
                revision: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(old.kvs[0].value, b"1");
}
