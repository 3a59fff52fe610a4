//! Debian's real `etcdctl` (3.4) against a 3-member skiff store: the commands a learner
//! types, checked on their printed output. One cluster serves the whole suite; the
//! membership and restore checks start their own extra processes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_tests::cluster::{skiff_binary, Cluster, ClusterSpec, Flavor};

fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .output()
        .expect("etcdctl runs (Debian's etcd-client; `make deps` installs it)")
}

/// Runs etcdctl and returns its stdout, failing the test with stderr when it fails.
fn ok(endpoints: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoints, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(endpoints: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-w", "json"]);
    serde_json::from_str(&ok(endpoints, &all)).expect("etcdctl -w json prints JSON")
}

fn revision(endpoints: &str, key: &str) -> i64 {
    json(endpoints, &["get", key])["header"]["revision"]
        .as_i64()
        .expect("header.revision")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A store member started by the test itself; killed when dropped.
struct ExtraMember {
    child: Child,
    client: String,
}

impl Drop for ExtraMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_member(
    name: &str,
    dir: &Path,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
    state: &str,
) -> Result<ExtraMember> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(dir.with_extension("log"))?;
    let child = Command::new(skiff_binary()?)
        .args(["store", "--name", name])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", initial_cluster])
        .args(["--initial-cluster-state", state])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting skiff store")?;
    Ok(ExtraMember {
        child,
        client: format!("127.0.0.1:{client_port}"),
    })
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn skiffctl() -> PathBuf {
    skiff_binary()
        .expect("skiff binary")
        .with_file_name("skiffctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_works_against_a_three_member_skiff_store() -> Result<()> {
    let cluster = Cluster::start(ClusterSpec::new(Flavor::skiff()?, 3)).await?;
    let eps = cluster.client_endpoints().join(",");
    let eps = eps.replace("http://", "");
    let e = eps.as_str();
    let one = cluster.endpoint(0).replace("http://", "");

    // put / get / prefix / revisions / delete
    assert_eq!(ok(e, &["put", "k1", "v1"]), "OK\n");
    assert_eq!(ok(e, &["get", "k1"]), "k1\nv1\n");
    ok(e, &["put", "p/a", "1"]);
    ok(e, &["put", "p/b", "2"]);
    ok(e, &["put", "q", "3"]);
    assert_eq!(ok(e, &["get", "--prefix", "p/"]), "p/a\n1\np/b\n2\n");
    assert_eq!(
        ok(e, &["get", "--prefix", "p/", "--keys-only"]),
        "p/a\n\np/b\n\n"
    );
    assert_eq!(ok(e, &["get", "p/a", "p/c"]), "p/a\n1\np/b\n2\n");
    ok(e, &["put", "r", "x1"]);
    let r1 = revision(e, "r");
    ok(e, &["put", "r", "x2"]);
    assert_eq!(ok(e, &["get", "r", &format!("--rev={r1}")]), "r\nx1\n");
    let kv = &json(e, &["get", "r"])["kvs"][0];
    assert_eq!(kv["version"], 2);
    assert_eq!(kv["create_revision"], r1);
    assert_eq!(kv["mod_revision"], r1 + 1);
    assert_eq!(ok(e, &["del", "--prefix", "p/"]), "2\n");
    assert_eq!(ok(e, &["get", "--prefix", "p/"]), "");
    assert_eq!(
        ok(e, &["get", "k", "--from-key", "--keys-only", "--limit=1"]),
        "k1\n\n"
    );
    // a read below the compaction point is refused with etcd's message
    ok(e, &["compact", &r1.to_string()]);
    let old = etcdctl(e, &["get", "r", &format!("--rev={}", r1 - 1)]);
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted"));

    // txn, as typed at etcdctl's prompt: compares, success ops, failure ops
    let mut txn = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={e}"))
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    txn.stdin
        .take()
        .expect("stdin")
        .write_all(b"value(\"k1\") = \"v1\"\n\nput k1 v2\nput t1 yes\n\nput t1 no\n\n")?;
    let out = txn.wait_with_output()?;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SUCCESS\n\nOK\n\nOK\n"
    );
    assert_eq!(ok(e, &["get", "t1", "--print-value-only"]), "yes\n");
    assert_eq!(ok(e, &["get", "k1", "--print-value-only"]), "v2\n");

    // watch: live events, and history replay from a revision
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={e}"))
        .args(["watch", "--prefix", "w/"])
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(700));
    let from = revision(e, "w/") + 1;
    ok(e, &["put", "w/1", "a"]);
    ok(e, &["put", "w/1", "b"]);
    ok(e, &["del", "w/1"]);
    std::thread::sleep(Duration::from_millis(500));
    watch.kill()?;
    let mut seen = String::new();
    watch
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut seen)?;
    watch.wait()?;
    assert_eq!(seen, "PUT\nw/1\na\nPUT\nw/1\nb\nDELETE\nw/1\n\n");
    let mut replay = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={e}"))
        .args([
            "watch",
            "--prefix",
            "w/",
            &format!("--rev={from}"),
            "--prev-kv",
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1000));
    replay.kill()?;
    let mut replayed = String::new();
    replay
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut replayed)?;
    replay.wait()?;
    assert_eq!(
        replayed, "PUT\nw/1\na\nPUT\nw/1\na\nw/1\nb\nDELETE\nw/1\nb\nw/1\n\n",
        "replay with prev_kv from revision {from}"
    );

    // leases: grant, attach, keep-alive, time-to-live with keys, revoke; and expiry
    let grant = ok(e, &["lease", "grant", "60"]);
    let id = grant
        .split_whitespace()
        .nth(1)
        .expect("lease ID")
        .to_string();
    assert!(grant.ends_with("granted with TTL(60s)\n"), "{grant}");
    ok(e, &["put", "--lease", &id, "lk1", "v"]);
    ok(e, &["put", "--lease", &id, "lk2", "v"]);
    let kept = ok(e, &["lease", "keep-alive", "--once", &id]);
    assert_eq!(kept, format!("lease {id} keepalived with TTL(60)\n"));
    let ttl = ok(e, &["lease", "timetolive", "--keys", &id]);
    assert!(
        ttl.contains("granted with TTL(60s)") && ttl.contains("attached keys([lk1 lk2])"),
        "{ttl}"
    );
    assert!(ok(e, &["lease", "list"]).contains(&id));
    assert_eq!(
        ok(e, &["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    assert_eq!(ok(e, &["get", "--prefix", "lk"]), "");
    let short = ok(e, &["lease", "grant", "2"]);
    let short_id = short
        .split_whitespace()
        .nth(1)
        .expect("lease ID")
        .to_string();
    ok(e, &["put", "--lease", &short_id, "ephemeral", "v"]);
    assert_eq!(ok(e, &["get", "ephemeral", "--print-value-only"]), "v\n");
    wait_until(
        "the lease to expire and take its key",
        Duration::from_secs(10),
        || ok(e, &["get", "ephemeral"]).is_empty(),
    );
    assert!(ok(e, &["lease", "timetolive", &short_id]).contains("already expired"));

    // endpoint status: every member answers, exactly one leads, the same term
    let status = json(e, &["endpoint", "status"]);
    let members = status.as_array().expect("one status per endpoint");
    assert_eq!(members.len(), 3);
    let leaders = members
        .iter()
        .filter(|m| m["Status"]["leader"] == m["Status"]["header"]["member_id"])
        .count();
    assert_eq!(leaders, 1, "{status}");
    // etcdctl 3.4 prints health lines on stderr.
    let health = etcdctl(e, &["endpoint", "health"]);
    assert!(health.status.success());
    assert_eq!(
        String::from_utf8_lossy(&health.stderr)
            .matches("is healthy")
            .count(),
        3
    );

    // member list / add / remove, the new member catching up from a snapshot
    let list = ok(e, &["member", "list"]);
    assert_eq!(list.lines().count(), 3);
    assert!(list.lines().all(|l| l.contains(", started, ")), "{list}");
    let extra_dir = tempfile::tempdir()?;
    let (c4, p4) = (free_port(), free_port());
    let peer4 = format!("http://127.0.0.1:{p4}");
    let added = ok(e, &["member", "add", "m4", &format!("--peer-urls={peer4}")]);
    let initial = added
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("member add prints ETCD_INITIAL_CLUSTER")
        .to_string();
    let m4 = start_member(
        "m4",
        &extra_dir.path().join("m4"),
        c4,
        p4,
        &initial,
        "existing",
    )?;
    wait_until(
        "the new member to serve k1",
        Duration::from_secs(20),
        || etcdctl(&m4.client, &["get", "k1", "--print-value-only"]).stdout == b"v2\n",
    );
    let four = format!("{e},{}", m4.client);
    wait_until("m4 to publish its name", Duration::from_secs(10), || {
        ok(e, &["member", "list"]).contains(", started, m4,")
    });
    let hashes: Vec<i64> = json(&four, &["endpoint", "hashkv"])
        .as_array()
        .expect("hashkv per endpoint")
        .iter()
        .map(|h| h["HashKV"]["hash"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(hashes.len(), 4);
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "KV hashes differ: {hashes:?}"
    );
    let m4_id = ok(e, &["member", "list"])
        .lines()
        .find(|l| l.contains(", m4,"))
        .and_then(|l| l.split(',').next())
        .expect("m4 listed")
        .to_string();
    assert!(ok(e, &["member", "remove", &m4_id]).contains("removed from cluster"));
    let mut m4 = m4;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if m4.child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            bail!("a removed member must stop on its own");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ok(e, &["member", "list"]).lines().count(), 3);

    // snapshot save (etcdctl) and restore (skiffctl) into a new cluster with the same data
    let backup = extra_dir.path().join("backup.db");
    let saved = etcdctl(
        &one,
        &["snapshot", "save", backup.to_str().expect("utf-8 path")],
    );
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let before = ok(e, &["get", "", "--from-key"]);
    let before_rev = revision(e, "k1");
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let new_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("n{i}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut restored = Vec::new();
    for (i, (c, p)) in ports.iter().enumerate() {
        let dir = extra_dir.path().join(format!("n{i}"));
        let out = Command::new(skiffctl())
            .args(["store", "snapshot", "restore"])
            .arg(&backup)
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "--name",
                &format!("n{i}"),
                "--initial-cluster",
                &new_cluster,
            ])
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        restored.push(start_member(
            &format!("n{i}"),
            &dir,
            *c,
            *p,
            &new_cluster,
            "new",
        )?);
    }
    let new_eps = restored
        .iter()
        .map(|m| m.client.clone())
        .collect::<Vec<_>>()
        .join(",");
    wait_until(
        "the restored cluster to answer",
        Duration::from_secs(20),
        || etcdctl(&new_eps, &["get", "k1"]).status.success(),
    );
    assert_eq!(ok(&new_eps, &["get", "", "--from-key"]), before);
    assert!(revision(&new_eps, "k1") >= before_rev);
    assert_eq!(ok(&new_eps, &["member", "list"]).lines().count(), 3);
    assert_eq!(ok(&new_eps, &["put", "after-restore", "1"]), "OK\n");
    // The old cluster is untouched by the new one.
    assert_eq!(ok(e, &["get", "after-restore"]), "");
    Ok(())
}

#[test]
fn skiffctl_refuses_a_damaged_backup() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bad.db");
    std::fs::write(&file, b"SKIFFSNAP1\nnot really")?;
    let out = Command::new(skiffctl())
        .args(["store", "snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .args(["--name", "a", "--initial-cluster", "a=http://127.0.0.1:1"])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") || err.contains("checksum"),
        "{err}"
    );
    assert!(
        !dir.path().join("d").exists(),
        "nothing written for a bad backup"
    );
    Ok(())
}
