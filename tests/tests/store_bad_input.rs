//! Bad input to `skiff store`: wrong flags, bad clusters, a port in use, somebody else's
//! data directory, another cluster's, a full disk, a disk that stops answering, oversize
//! and malformed requests. Each gets a clear message naming the problem, and nothing
//! panics.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use skiff_tests::cluster::{skiff_binary, Cluster, ClusterSpec, Flavor};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Runs `skiff store ARGS` expecting it to exit on its own with an error; returns stderr.
fn store_fails(args: &[&str]) -> String {
    let mut child = Command::new(skiff_binary().expect("skiff binary"))
        .arg("store")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("skiff runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(!status.success(), "expected a failure for {args:?}");
            assert!(!err.contains("panicked"), "no panic for {args:?}: {err}");
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("skiff store {args:?} should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn member_args(name: &str, dir: &str, client: u16, peer: u16, cluster: &str) -> Vec<String> {
    vec![
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        dir.into(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{client}"),
        "--advertise-client-urls".into(),
        format!("http://127.0.0.1:{client}"),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{peer}"),
        "--initial-advertise-peer-urls".into(),
        format!("http://127.0.0.1:{peer}"),
        "--initial-cluster".into(),
        cluster.into(),
    ]
}

#[test]
fn flags_and_clusters_that_make_no_sense_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("m").display().to_string();
    let err = store_fails(&["--bogus-flag"]);
    assert!(err.contains("--bogus-flag"), "{err}");
    let (c, p) = (free_port(), free_port());
    let own = format!("a=http://127.0.0.1:{p}");
    for (cluster, expect) in [
        ("a", "is not NAME=URL"),
        (
            &*format!("{own},a=http://127.0.0.1:{}", free_port()),
            "given twice",
        ),
        (&*format!("{own},b=http://127.0.0.1:{p}"), "given twice"),
        ("b=http://127.0.0.1:9", "no member named 'a'"),
        (
            &*format!("a=http://127.0.0.1:{}", free_port()),
            "must match",
        ),
        ("a=ftp://127.0.0.1:9", "unsupported scheme"),
    ] {
        let args = member_args("a", &d, c, p, cluster);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = store_fails(&args);
        assert!(
            err.contains(expect),
            "{cluster}: expected '{expect}' in: {err}"
        );
    }
    let mut args = member_args("a", &d, c, p, &own);
    args.extend(["--election-timeout".into(), "100".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(store_fails(&args).contains("--election-timeout"));
    assert!(
        !dir.path().join("m").join("db").exists(),
        "nothing written for refused flags"
    );
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = free_port();
    let args = member_args(
        "a",
        &dir.path().join("m").display().to_string(),
        port,
        p,
        &format!("a=http://127.0.0.1:{p}"),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = store_fails(&args);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn joining_with_no_reachable_member_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, p, dead) = (free_port(), free_port(), free_port());
    let mut args = member_args(
        "b",
        &dir.path().join("m").display().to_string(),
        c,
        p,
        &format!("a=http://127.0.0.1:{dead},b=http://127.0.0.1:{p}"),
    );
    args.extend(["--initial-cluster-state".into(), "existing".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = store_fails(&args);
    assert!(err.contains("cannot get the member list"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_members_data_dir_is_refused() -> Result<()> {
    let cluster = Cluster::start(ClusterSpec::new(Flavor::skiff()?, 1)).await?;
    let dir = cluster.data_dir(0).to_path_buf();
    cluster.kill(0)?;
    let (c, p) = (free_port(), free_port());
    let args = member_args(
        "intruder",
        &dir.display().to_string(),
        c,
        p,
        &format!("intruder=http://127.0.0.1:{p}"),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = store_fails(&args);
    assert!(err.contains("belongs to member"), "{err}");
    // The directory still serves its own member afterwards.
    cluster.restart(0)?;
    cluster.wait_ready(0, Duration::from_secs(20)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_data_dir_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (c, p) = (free_port(), free_port());
    let own = format!("a=http://127.0.0.1:{p}");
    let with = |cluster: &str, token: &str| {
        let mut args = member_args(
            "a",
            &dir.path().join("m").display().to_string(),
            c,
            p,
            cluster,
        );
        args.extend(["--initial-cluster-token".into(), token.into()]);
        args
    };
    let first = with(&own, "first");
    let (mut child, mut client) = single_member(&first, &dir.path().join("m.log")).await?;
    client.put("mine", "1", None).await?;
    child.kill()?;
    child.wait()?;
    // The same member name and URLs, but another token: another cluster.
    let other_token = with(&own, "second");
    let err = store_fails(&other_token.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("data directory")
            && err.contains("belongs to member")
            && err.contains("--initial-cluster-token 'second' describe cluster")
            && err.contains("--data-dir"),
        "{err}"
    );
    // The same token, but another member list.
    let bigger = format!("{own},b=http://127.0.0.1:{}", free_port());
    let other_members = with(&bigger, "first");
    let err = store_fails(&other_members.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("describe cluster"), "{err}");
    // Refusing changed nothing: with its own flags the member starts on its data.
    let (mut child, mut client) = single_member(&first, &dir.path().join("m2.log")).await?;
    let got = client.get("mine", None).await?;
    assert_eq!(got.kvs().len(), 1, "the data directory is intact");
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_malformed_requests_get_errors_not_crashes() -> Result<()> {
    let cluster = Cluster::start(ClusterSpec::new(Flavor::skiff()?, 1)).await?;
    let mut client = cluster.client().await?;
    let big = vec![b'x'; 1600 * 1024];
    let err = client.put("big", big, None).await.expect_err("too large");
    assert!(err.to_string().contains("request is too large"), "{err}");
    let huge = vec![b'x'; 3 * 1024 * 1024];
    let err = client.put("huge", huge, None).await.expect_err("too large");
    let msg = err.to_string();
    assert!(
        msg.contains("too large") || msg.contains("message length"),
        "{msg}"
    );
    // A body that is not a valid PutRequest, sent as raw gRPC over HTTP/2.
    let endpoint = cluster.endpoint(0);
    let garbage = [0xffu8, 0xff, 0xff, 0xff, 0x0f, 0x01];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(garbage.len() as u32).to_be_bytes());
    frame.extend_from_slice(&garbage);
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-D",
            "-",
            "-o",
            "/dev/null",
        ])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["--data-binary", "@-"])
        .arg(format!("{endpoint}/etcdserverpb.KV/Put"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(&frame)?;
            c.wait_with_output()
        });
    if let Ok(out) = out {
        let headers = String::from_utf8_lossy(&out.stdout);
        assert!(
            headers.contains("grpc-status") && !headers.contains("grpc-status: 0"),
            "a malformed message is an error: {headers}"
        );
    }
    // Still serving.
    client.put("after", "ok", None).await?;
    let got = client.get("after", None).await?;
    assert_eq!(got.kvs()[0].value(), b"ok");
    Ok(())
}

/// Starts a single member, its log going to `log`, waits until it answers.
async fn single_member(
    args: &[String],
    log: &std::path::Path,
) -> Result<(std::process::Child, etcd_client::Client)> {
    let child = Command::new(skiff_binary()?)
        .arg("store")
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let client_url = args[args
        .iter()
        .position(|a| a == "--listen-client-urls")
        .expect("flag")
        + 1]
    .clone();
    let mut child = child;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = etcd_client::Client::connect([client_url.as_str()], None).await {
            if c.status().await.is_ok() && c.put("ready", "1", None).await.is_ok() {
                return Ok((child, c));
            }
        }
        let exited = child.try_wait()?.is_some();
        if exited || std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!(
                "member did not start (exited: {exited}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_data_dir_is_refused_with_what_to_do() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (c, p) = (free_port(), free_port());
    let data = dir.path().join("m");
    let args = member_args(
        "a",
        &data.display().to_string(),
        c,
        p,
        &format!("a=http://127.0.0.1:{p}"),
    );
    let (mut child, _client) = single_member(&args, &dir.path().join("m.log")).await?;
    child.kill()?;
    child.wait()?;
    for file in ["db", "conf"] {
        let path = data.join("db").join(file);
        let mut bytes = std::fs::read(&path)?;
        for b in bytes.iter_mut().step_by(7) {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes)?;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = store_fails(&args);
    assert!(
        err.contains("data directory") && err.contains("restore the member"),
        "{err}"
    );
    Ok(())
}

/// Unmounts the test's small tmpfs, even when the test fails.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so that a member still running after a failed assertion cannot keep it.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_member_without_losing_acknowledged_writes() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        // Mounting a small filesystem needs root; CI runs as root.
        eprintln!("skipped: needs root to mount a small tmpfs");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mnt = dir.path().join("disk");
    std::fs::create_dir(&mnt)?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status()?
        .success();
    anyhow::ensure!(ok, "mounting a tmpfs failed");
    let _mounted = Tmpfs(mnt.clone());
    let (c, p) = (free_port(), free_port());
    let args = member_args(
        "a",
        &mnt.join("m").display().to_string(),
        c,
        p,
        &format!("a=http://127.0.0.1:{p}"),
    );
    let log = dir.path().join("m.log");
    let (mut child, mut client) = single_member(&args, &log).await?;
    let value = vec![b'v'; 20_000];
    let mut acked = Vec::new();
    let mut exited = None;
    for i in 0..400 {
        let key = format!("k{i:03}");
        let put = tokio::time::timeout(
            Duration::from_secs(10),
            client.put(key.as_str(), value.clone(), None),
        )
        .await;
        if let Ok(Ok(_)) = put {
            acked.push(key);
        }
        // A failed put alone proves nothing (a busy machine can time one out); the
        // member stopping does.
        if let Some(status) = child.try_wait()? {
            exited = Some(status);
            break;
        }
    }
    let status = match exited {
        Some(s) => s,
        None => {
            // sled can stall in a write after ENOSPC; the member's watchdog stops it
            // after 30 s, so allow for that.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(s) = child.try_wait()? {
                    break s;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    anyhow::bail!(
                        "the member did not stop on a full disk; its log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(acked.len() < 400, "the 3 MiB disk should have filled up");
    let err = std::fs::read_to_string(&log)?;
    assert!(!status.success());
    assert!(!err.contains("panicked"), "{err}");
    // Either sled reported the error, or the member's watchdog caught a stalled write.
    let named = (err.contains("No space left on device") && err.contains("free disk space"))
        || (err.contains("has not completed") && err.contains("Free disk space"));
    assert!(named, "{err}");
    let st = nix::sys::statvfs::statvfs(&mnt)?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    eprintln!(
        "{} writes acknowledged, {free} bytes left; the member stopped with: {}",
        acked.len(),
        err.lines().last().unwrap_or_default()
    );
    // Started again on the full disk, it says so instead of failing to open its database.
    if free < 1024 * 1024 {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = store_fails(&args);
        assert!(
            err.contains("No space left on device") && err.contains("free disk space"),
            "{err}"
        );
    }
    // Make room and start again: everything acknowledged is there, and writes work.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()?
        .success();
    anyhow::ensure!(grown, "growing the tmpfs failed");
    let (mut child, mut client) = single_member(&args, &dir.path().join("m2.log")).await?;
    for key in &acked {
        let got = client.get(key.as_str(), None).await?;
        assert_eq!(got.kvs().len(), 1, "acknowledged write {key} lost");
    }
    client.put("after", "ok", None).await?;
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// Thaws and unmounts the test's frozen filesystem, even when the test fails: a
/// filesystem left frozen would block every later writer to it.
struct Frozen(std::path::PathBuf);

impl Drop for Frozen {
    fn drop(&mut self) {
        // Usually thawed already; then fsfreeze fails, which is fine.
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_stops_answering_stops_the_member_within_its_watchdog_limit() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        // Mounting a loop filesystem and freezing it needs root; CI runs as root.
        eprintln!("skipped: needs root to mount and freeze a filesystem");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)?.set_len(64 * 1024 * 1024)?;
    let mnt = dir.path().join("disk");
    std::fs::create_dir(&mnt)?;
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .status()?
        .success();
    anyhow::ensure!(made, "mkfs.ext4 failed");
    let ok = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&mnt)
        .status()?
        .success();
    anyhow::ensure!(ok, "mounting a loop filesystem failed");
    let _mounted = Frozen(mnt.clone());
    let (c, p) = (free_port(), free_port());
    let data = mnt.join("m");
    let args = member_args(
        "a",
        &data.display().to_string(),
        c,
        p,
        &format!("a=http://127.0.0.1:{p}"),
    );
    let log = dir.path().join("m.log");
    let (mut child, mut client) = single_member(&args, &log).await?;
    client.put("before", "1", None).await?;
    // A frozen filesystem blocks every write and fsync, as a failing disk can, and as
    // sled 0.34 itself can after ENOSPC.
    let frozen = Command::new("fsfreeze")
        .arg("-f")
        .arg(&mnt)
        .status()?
        .success();
    anyhow::ensure!(frozen, "fsfreeze failed");
    let put = tokio::time::timeout(Duration::from_secs(5), client.put("during", "1", None)).await;
    assert!(
        !matches!(put, Ok(Ok(_))),
        "a write that cannot reach the disk is not acknowledged"
    );
    // The watchdog gives up after 30 s. The process can only finish exiting once the
    // kernel lets go of its threads blocked on the frozen filesystem, so thaw it then.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if said.contains("has not completed") || child.try_wait()?.is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = Command::new("fsfreeze").arg("-u").arg(&mnt).status();
            let _ = child.kill();
            anyhow::bail!(
                "the member did not give up on a disk that stopped answering; its log:\n{said}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let thawed = Command::new("fsfreeze")
        .arg("-u")
        .arg(&mnt)
        .status()?
        .success();
    anyhow::ensure!(thawed, "thawing the filesystem failed");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("the member said it stops but did not exit");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let err = std::fs::read_to_string(&log)?;
    assert!(!status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(&format!("data directory {}", data.display()))
            && err.contains("has not completed")
            && err.contains("Free disk space"),
        "{err}"
    );
    // Once the disk answers again the member starts with what it acknowledged.
    let (mut child, mut client) = single_member(&args, &dir.path().join("m2.log")).await?;
    let got = client.get("before", None).await?;
    assert_eq!(got.kvs().len(), 1, "acknowledged write lost");
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_quota_writes_are_refused_and_reads_and_deletes_still_work() -> Result<()> {
    let mut spec = ClusterSpec::new(Flavor::skiff()?, 3);
    spec.quota_backend_bytes = Some(20_000);
    let cluster = Cluster::start(spec).await?;
    let mut client = cluster.client().await?;
    let value = vec![b'q'; 1000];
    let mut refused = None;
    for i in 0..40 {
        if let Err(e) = client.put(format!("q{i:02}"), value.clone(), None).await {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("writes past a 20 kB quota are refused");
    assert!(refused.contains("database space exceeded"), "{refused}");
    // Alarm lists are served by whichever member answers, which may apply a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let alarms = client
            .alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None,
            )
            .await?;
        if !alarms.alarms().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a NOSPACE alarm is raised"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = client.get("q00", None).await?;
    assert_eq!(got.kvs()[0].value(), value.as_slice(), "reads still work");
    let deleted = client
        .delete("q", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await?;
    assert!(deleted.deleted() > 0, "deletes still work");
    Ok(())
}
