use super::*;

fn put(m: &mut Mvcc, b: &mut BTreeMap<Revision, Record>, k: &str, v: &str) -> Changes {
    let snapshot = b.clone();
    let mut w = m.write(&snapshot, &|_| true);
    w.put(&PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
    .unwrap();
    let ch = w.finish();
    b.extend(ch.records.iter().cloned());
    ch
}

#[test]
fn put_counts_versions_and_revisions() {
    let mut m = Mvcc::default();
    let mut b = BTreeMap::new();
    put(&mut m, &mut b, "a", "1");
    put(&mut m, &mut b, "a", "2");
    let r = m
        .range(
            &b,
            &RangeRequest {
                key: "a".into(),
                ..Default::default()
            },
        )
        .unwrap();
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
