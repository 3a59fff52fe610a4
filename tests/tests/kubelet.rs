//! `skiff kubelet` on this machine's containerd, runc and CNI plugins, against a real
//! control plane (3-member store + apiserver). Pods are created with `spec.nodeName`
//! set, as no scheduler runs here. Each test has its own node name, containerd
//! namespace and CNI network, removed on drop even when the test fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, Container, ContainerPort, ContainerStatus,
    EnvFromSource, EnvVar, EnvVarSource, Event, ExecAction, HTTPGetAction, Lifecycle,
    LifecycleHandler, Node, ObjectFieldSelector, Pod, PodSpec, Probe, ResourceRequirements, Secret,
    SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use skiff_client::{Api, Client, DeleteParams, PostParams};
use skiff_kubelet::logs::{self, parse_line, LogLine, Stream};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);

struct Setup {
    node: KubeletNode,
    client: Client,
    // Dropped last: the kubelet's cleanup needs nothing from it, but the kubelet must
    // die before its apiserver.
    _cp: ControlPlane,
}

async fn setup(prefix: &str) -> Result<Setup> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, prefix, &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    Ok(Setup {
        node,
        client,
        _cp: cp,
    })
}

fn pod(name: &str, node: &str, image: &str, command: Option<&[&str]>, restart: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            restart_policy: Some(restart.into()),
            termination_grace_period_seconds: Some(5),
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn wait_phase(pods: &Api<Pod>, name: &str, phase: &str) -> Result<Pod> {
    eventually(&format!("pod {name} phase {phase}"), TIMEOUT, || async {
        let p = pods.get(name).await?;
        let got = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if got == phase {
            return Ok(Some(p));
        }
        bail!(
            "phase {got:?}, status {}",
            serde_json::to_string(&p.status)?
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_ready_with_a_lease() -> Result<()> {
    let s = setup("kl-node").await?;
    let nodes: Api<Node> = Api::cluster(s.client.clone());
    let node = eventually("node Ready", TIMEOUT, || async {
        let Some(n) = nodes.get_opt(&s.node.name).await? else {
            return Ok(None);
        };
        let ready = n
            .status
            .as_ref()
            .and_then(|st| st.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        Ok((ready.as_deref() == Some("True")).then_some(n))
    })
    .await?;
    let status = node.status.context("status")?;
    let cap = status.capacity.context("capacity")?;
    ensure!(
        cap.get("pods").map(|q| q.0.as_str()) == Some("110"),
        "pods capacity {cap:?}"
    );
    for k in ["cpu", "memory", "ephemeral-storage"] {
        ensure!(cap.contains_key(k), "no {k} in capacity {cap:?}");
    }
    ensure!(status.allocatable.is_some(), "no allocatable");
    let addresses = status.addresses.unwrap_or_default();
    ensure!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"),
        "addresses {addresses:?}"
    );
    ensure!(
        status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port)
            .is_some_and(|p| p > 0),
        "the kubelet's API port (it listens on --port=0, a free one) is reported"
    );
    let info = status.node_info.context("nodeInfo")?;
    ensure!(
        info.container_runtime_version.starts_with("containerd://"),
        "runtime {}",
        info.container_runtime_version
    );
    let labels = node.metadata.labels.unwrap_or_default();
    ensure!(
        labels.get("kubernetes.io/hostname") == Some(&s.node.name),
        "labels {labels:?}"
    );

    // The Lease is renewed: its renewTime moves.
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), "kube-node-lease");
    let first = eventually("node lease", TIMEOUT, || async {
        Ok(leases
            .get_opt(&s.node.name)
            .await?
            .and_then(|l| l.spec?.renew_time))
    })
    .await?;
    eventually("lease renewal", Duration::from_secs(60), || async {
        let now = leases
            .get(&s.node.name)
            .await?
            .spec
            .and_then(|sp| sp.renew_time);
        Ok(now.filter(|t| t.0 > first.0))
    })
    .await?;

    // /healthz and /metrics answer.
    let body = skiff_tests::http::get(format!("http://127.0.0.1:{}/metrics", s.node.healthz_port))
        .await?
        .text()
        .await?;
    ensure!(
        body.contains("kubelet_node_lease_renewals_total"),
        "metrics: {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_exit_succeed_or_fail() -> Result<()> {
    let s = setup("kl-exit").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "ok",
            &s.node.name,
            &image("busybox"),
            Some(&["sh", "-c", "echo hi"]),
            "Never",
        ),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod("bad", &s.node.name, &image("fail"), None, "Never"),
    )
    .await?;
    let ok = wait_phase(&pods, "ok", "Succeeded").await?;
    let cs = &ok
        .status
        .as_ref()
        .and_then(|st| st.container_statuses.clone())
        .context("statuses")?[0];
    let term = cs
        .state
        .as_ref()
        .and_then(|st| st.terminated.clone())
        .context("terminated")?;
    ensure!(
        term.exit_code == 0 && term.reason.as_deref() == Some("Completed"),
        "{term:?}"
    );
    ensure!(cs.image_id.contains("@sha256:"), "imageID {}", cs.image_id);
    ensure!(cs
        .container_id
        .as_deref()
        .is_some_and(|c| c.starts_with("containerd://")));
    let bad = wait_phase(&pods, "bad", "Failed").await?;
    let cs = &bad
        .status
        .as_ref()
        .and_then(|st| st.container_statuses.clone())
        .context("statuses")?[0];
    let term = cs
        .state
        .as_ref()
        .and_then(|st| st.terminated.clone())
        .context("terminated")?;
    ensure!(
        term.exit_code == 3 && term.reason.as_deref() == Some("Error"),
        "{term:?}"
    );
    ensure!(cs.restart_count == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_image_user_is_looked_up_in_the_images_files() -> Result<()> {
    let s = setup("kl-user").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    // USER nobody: uid and primary group from the image's /etc/passwd, and group staff
    // (50) because /etc/group lists nobody in it; the pod's supplementalGroups join.
    let mut named = pod("named", &s.node.name, &image("nobody"), None, "Never");
    if let Some(spec) = named.spec.as_mut() {
        spec.security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
            supplemental_groups: Some(vec![2000]),
            ..Default::default()
        });
    }
    // runAsUser replaces USER entirely: no lookup, group 0.
    let mut numbered = pod("numbered", &s.node.name, &image("nobody"), None, "Never");
    if let Some(spec) = numbered.spec.as_mut() {
        spec.containers[0].security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
            run_as_user: Some(1234),
            ..Default::default()
        });
    }
    for p in [&named, &numbered] {
        pods.create(&PostParams::default(), p).await?;
    }
    let id_of = |p: &Pod| -> Result<String> {
        let log = read_log(&log_dir(&s, p)?.join("main/0.log"))?;
        Ok(log
            .iter()
            .map(|l| String::from_utf8_lossy(&l.content).into_owned())
            .collect::<Vec<_>>()
            .join("\n"))
    };
    let named = wait_phase(&pods, "named", "Succeeded").await?;
    let id = id_of(&named)?;
    ensure!(
        id.starts_with("uid=65534(nobody) gid=65534(nogroup) groups=")
            && id.contains("50(staff)")
            && id.contains("2000"),
        "id said {id:?}"
    );
    let numbered = wait_phase(&pods, "numbered", "Succeeded").await?;
    let id = id_of(&numbered)?;
    ensure!(id.starts_with("uid=1234 gid=0(root)"), "id said {id:?}");
    // The read-only view the lookup reads through is gone with its lease.
    let snapshots = s.node.ctr(&["snapshots", "ls"])?;
    ensure!(!snapshots.contains("skiff-users-"), "{snapshots}");
    let leases = s.node.ctr(&["leases", "ls"])?;
    ensure!(!leases.contains("skiff-users-"), "{leases}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_container_restarts_with_back_off() -> Result<()> {
    let s = setup("kl-backoff").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("crash", &s.node.name, &image("fail"), None, "Always"),
    )
    .await?;
    eventually("CrashLoopBackOff after restarts", TIMEOUT, || async {
        let p = pods.get("crash").await?;
        let st = p.status.clone().unwrap_or_default();
        let Some(cs) = st.container_statuses.as_ref().and_then(|c| c.first()) else {
            return Ok(None);
        };
        let waiting = cs
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        let last_code = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        if cs.restart_count >= 1
            && waiting.as_deref() == Some("CrashLoopBackOff")
            && last_code == Some(3)
        {
            ensure!(
                st.phase.as_deref() == Some("Running"),
                "phase {:?}",
                st.phase
            );
            return Ok(Some(()));
        }
        bail!("{}", serde_json::to_string(&st)?)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_pod_gets_an_ip_and_delete_leaves_nothing() -> Result<()> {
    let s = setup("kl-run").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let mut p = pod("web", &s.node.name, &image("httpd"), None, "Always");
    p.spec.as_mut().context("spec")?.host_aliases =
        Some(vec![k8s_openapi::api::core::v1::HostAlias {
            ip: "10.9.8.7".into(),
            hostnames: Some(vec!["alias.example".into()]),
        }]);
    pods.create(&PostParams::default(), &p).await?;
    let running = wait_phase(&pods, "web", "Running").await?;
    let st = running.status.context("status")?;
    let ip = st.pod_ip.clone().context("no podIP")?;
    let prefix = s.node.subnet.trim_end_matches("0/24");
    ensure!(
        ip.starts_with(prefix),
        "podIP {ip} outside {}",
        s.node.subnet
    );
    ensure!(st.host_ip.as_deref() == Some("127.0.0.1"));
    let ready = st
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ensure!(ready, "pod not Ready");
    // The pod answers on its IP through the bridge (the host is the bridge's gateway).
    let body = eventually("httpd answers on the pod IP", TIMEOUT, || async {
        let r = skiff_tests::http::client()
            .get(format!("http://{ip}:8080/index.html"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        Ok(Some(r.text().await?))
    })
    .await?;
    ensure!(body.contains("hello from skiff"), "body {body:?}");
    let during = s.node.leftovers()?;
    ensure!(
        during.containers.len() == 1 && during.tasks.len() == 1 && during.ips.len() == 1,
        "while running: {during:?}"
    );
    // /etc/hosts of the pod carries its hostAliases.
    let uid = running.metadata.uid.clone().context("uid")?;
    let hosts =
        std::fs::read_to_string(s.node.root_dir().join("pods").join(&uid).join("etc/hosts"))?;
    ensure!(hosts.contains("10.9.8.7\talias.example"), "hosts: {hosts}");

    pods.delete("web", &DeleteParams::default()).await?;
    eventually("pod gone", TIMEOUT, || async {
        Ok(pods.get_opt("web").await?.is_none().then_some(()))
    })
    .await?;
    let left = eventually("nothing left behind", TIMEOUT, || async {
        let l = s.node.leftovers()?;
        if l.is_empty() {
            Ok(Some(l))
        } else {
            bail!("{l:?}")
        }
    })
    .await?;
    ensure!(left.is_empty());
    Ok(())
}

fn sh_pod(name: &str, node: &str, script: &str, restart: &str) -> Pod {
    pod(
        name,
        node,
        &image("busybox"),
        Some(&["sh", "-c", script]),
        restart,
    )
}

fn container_status(p: &Pod, init: bool, name: &str) -> Option<ContainerStatus> {
    let st = p.status.as_ref()?;
    let list = if init {
        st.init_container_statuses.as_ref()
    } else {
        st.container_statuses.as_ref()
    };
    list?.iter().find(|c| c.name == name).cloned()
}

fn condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// Reads a container's log file and parses every line (each must be in the CRI format).
fn read_log(path: &Path) -> Result<Vec<LogLine>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    text.split_inclusive(|b| *b == b'\n')
        .map(|l| parse_line(l).map_err(anyhow::Error::from))
        .collect()
}

fn log_dir(s: &Setup, p: &Pod) -> Result<PathBuf> {
    Ok(logs::pod_log_dir(
        &s.node.pod_logs_dir(),
        "default",
        p.metadata.name.as_deref().context("name")?,
        p.metadata.uid.as_deref().context("uid")?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_logs_are_cri_files_per_restart_and_rotate() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(
        &cp,
        "kl-logs",
        &[
            "--container-log-max-size=4Ki",
            "--container-log-max-files=3",
        ],
    )?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let s = Setup {
        node,
        client,
        _cp: cp,
    };
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    // Fails at every run: restarts write 0.log, 1.log, … with the same lines.
    let script = "echo out-line; echo err-line >&2; printf 'no-newline'; exit 1";
    let twice = pods
        .create(
            &PostParams::default(),
            &sh_pod("twice", &s.node.name, script, "OnFailure"),
        )
        .await?;
    let long = "head -c 20000 /dev/zero | tr '\\0' a; echo; \
                i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; \
                echo last-line; sleep 3600";
    let chatty = pods
        .create(
            &PostParams::default(),
            &sh_pod("chatty", &s.node.name, long, "Always"),
        )
        .await?;

    let dir = log_dir(&s, &twice)?;
    let first = eventually("0.log and 1.log of pod twice", TIMEOUT, || async {
        let zero = logs::container_log_path(&dir, "main", 0);
        let one = logs::container_log_path(&dir, "main", 1);
        if !one.exists() {
            return Ok(None);
        }
        let lines = read_log(&zero)?;
        if lines.len() < 3 {
            bail!("0.log: {lines:?}");
        }
        Ok(Some(lines))
    })
    .await?;
    let find = |content: &[u8]| first.iter().find(|l| l.content == content).cloned();
    let out = find(b"out-line").context("out-line in 0.log")?;
    ensure!(out.stream == Stream::Stdout && !out.partial, "{out:?}");
    let err = find(b"err-line").context("err-line in 0.log")?;
    ensure!(err.stream == Stream::Stderr && !err.partial, "{err:?}");
    // Output without a final newline is written as a full line at the end.
    let tail = find(b"no-newline").context("no-newline in 0.log")?;
    ensure!(!tail.partial, "{tail:?}");

    // A 20000-byte line is split at 16 KiB: one partial line, then the rest as full.
    let dir = log_dir(&s, &chatty)?;
    let live = logs::container_log_path(&dir, "main", 0);
    let lines = eventually("last-line in chatty's log", TIMEOUT, || async {
        let lines = read_log(&live).unwrap_or_default();
        Ok(lines
            .iter()
            .any(|l| l.content == b"last-line")
            .then_some(lines))
    })
    .await?;
    ensure!(lines.len() > 2, "{} lines", lines.len());
    // Rotated at 4 KiB, at most 3 files kept: the live one and two rotated.
    let rotated = logs::rotated_files(&live);
    ensure!(
        !rotated.is_empty() && rotated.len() <= 2,
        "rotated files: {rotated:?}"
    );
    let size = std::fs::metadata(&live)?.len();
    ensure!(size <= 4096, "live file is {size} bytes");
    for f in &rotated {
        for l in read_log(f)? {
            ensure!(
                l.content.len() <= logs::MAX_LINE,
                "{} bytes",
                l.content.len()
            );
        }
    }

    // The pod's logs go with the pod.
    pods.delete("chatty", &DeleteParams::default()).await?;
    pods.delete("twice", &DeleteParams::default()).await?;
    eventually("log directories removed", TIMEOUT, || async {
        let l = s.node.leftovers()?;
        if l.is_empty() {
            Ok(Some(()))
        } else {
            bail!("{l:?}")
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_become_partial_lines() -> Result<()> {
    let s = setup("kl-partial").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let p = pods
        .create(
            &PostParams::default(),
            &sh_pod(
                "long",
                &s.node.name,
                "head -c 20000 /dev/zero | tr '\\0' a; echo",
                "Never",
            ),
        )
        .await?;
    wait_phase(&pods, "long", "Succeeded").await?;
    let path = logs::container_log_path(&log_dir(&s, &p)?, "main", 0);
    let lines = eventually("the long line logged", TIMEOUT, || async {
        let lines = read_log(&path)?;
        Ok((lines.len() >= 2).then_some(lines))
    })
    .await?;
    ensure!(lines.len() == 2, "{} lines", lines.len());
    ensure!(lines[0].partial && lines[0].content.len() == logs::MAX_LINE);
    ensure!(!lines[1].partial && lines[1].content.len() == 20000 - logs::MAX_LINE);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_and_failure_blocks_the_app() -> Result<()> {
    let s = setup("kl-init").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let init = |name: &str, script: &str| Container {
        name: name.into(),
        image: Some(image("busybox")),
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    };
    let mut ok = sh_pod("inits-ok", &s.node.name, "echo app", "Never");
    ok.spec.as_mut().context("spec")?.init_containers = Some(vec![
        init("first", "sleep 1; echo first"),
        init("second", "echo second"),
    ]);
    let mut never = sh_pod("inits-never", &s.node.name, "echo app", "Never");
    never.spec.as_mut().context("spec")?.init_containers =
        Some(vec![init("broken", "exit 4"), init("after", "echo after")]);
    let mut always = sh_pod("inits-always", &s.node.name, "sleep 3600", "Always");
    always.spec.as_mut().context("spec")?.init_containers = Some(vec![init("broken", "exit 5")]);
    for p in [&ok, &never, &always] {
        pods.create(&PostParams::default(), p).await?;
    }

    let done = wait_phase(&pods, "inits-ok", "Succeeded").await?;
    let first = container_status(&done, true, "first").context("first status")?;
    let second = container_status(&done, true, "second").context("second status")?;
    let app = container_status(&done, false, "main").context("main status")?;
    let term = |c: &ContainerStatus| c.state.as_ref().and_then(|s| s.terminated.clone());
    let (t1, t2, ta) = (
        term(&first).context("first terminated")?,
        term(&second).context("second terminated")?,
        term(&app).context("app terminated")?,
    );
    ensure!(t1.exit_code == 0 && t2.exit_code == 0 && first.ready && second.ready);
    let at =
        |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().map(|t| t.0);
    ensure!(
        at(&t2.started_at) >= at(&t1.finished_at) && at(&ta.started_at) >= at(&t2.finished_at),
        "order: {t1:?} {t2:?} {ta:?}"
    );
    ensure!(condition(&done, "Initialized").as_deref() == Some("True"));

    // restartPolicy Never: the failed init container fails the pod; nothing after it runs.
    let failed = wait_phase(&pods, "inits-never", "Failed").await?;
    let broken = container_status(&failed, true, "broken").context("broken")?;
    ensure!(
        term(&broken).is_some_and(|t| t.exit_code == 4),
        "{broken:?}"
    );
    for (init, name) in [(true, "after"), (false, "main")] {
        let c = container_status(&failed, init, name).context(name.to_string())?;
        ensure!(
            c.state.as_ref().and_then(|s| s.waiting.as_ref()).is_some(),
            "{name} ran: {c:?}"
        );
    }
    ensure!(condition(&failed, "Initialized").as_deref() == Some("False"));

    // restartPolicy Always: the init container is restarted with back-off, the app waits.
    eventually("init CrashLoopBackOff", TIMEOUT, || async {
        let p = pods.get("inits-always").await?;
        let init = container_status(&p, true, "broken").context("init status")?;
        let app = container_status(&p, false, "main").context("app status")?;
        let reason = |c: &ContainerStatus| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone())
        };
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if init.restart_count >= 1
            && reason(&init).as_deref() == Some("CrashLoopBackOff")
            && reason(&app).as_deref() == Some("PodInitializing")
            && phase.as_deref() == Some("Pending")
            && condition(&p, "Initialized").as_deref() == Some("False")
        {
            return Ok(Some(()));
        }
        bail!("{}", serde_json::to_string(&p.status)?)
    })
    .await?;
    Ok(())
}

fn exec_probe(command: &str, period: i32, failure: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), command.into()]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_flip_readiness_and_restart_on_liveness_failure() -> Result<()> {
    let s = setup("kl-probe").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    // Ready while /tmp/ready exists: first not, then yes, then not again.
    let mut flip = sh_pod(
        "flip",
        &s.node.name,
        "sleep 2; touch /tmp/ready; while [ ! -e /tmp/unready ]; do sleep 0.2; done; rm /tmp/ready; sleep 3600",
        "Always",
    );
    flip.spec.as_mut().context("spec")?.containers[0].readiness_probe =
        Some(exec_probe("test -e /tmp/ready", 1, 1));
    // Alive for about 2 s, then its liveness probe fails and it is restarted.
    let mut dies = sh_pod(
        "dies",
        &s.node.name,
        "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600",
        "Always",
    );
    dies.spec.as_mut().context("spec")?.containers[0].liveness_probe =
        Some(exec_probe("test -e /tmp/alive", 1, 2));
    // httpd with httpGet readiness, tcpSocket liveness and a startup probe by port name.
    let mut web = pod("web", &s.node.name, &image("httpd"), None, "Always");
    let c = &mut web.spec.as_mut().context("spec")?.containers[0];
    c.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        ..Default::default()
    }]);
    c.startup_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(30),
        ..Default::default()
    });
    c.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/index.html".into()),
            port: IntOrString::Int(8080),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    c.liveness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(8080),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    // A readiness probe on a port nobody listens on: never Ready.
    let mut closed = pod("closed", &s.node.name, &image("httpd"), None, "Always");
    closed.spec.as_mut().context("spec")?.containers[0].readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".into()),
            port: IntOrString::Int(9999),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    for p in [&flip, &dies, &web, &closed] {
        pods.create(&PostParams::default(), p).await?;
    }

    let ready = |want: &'static str| {
        let pods = pods.clone();
        move |name: &'static str| {
            let pods = pods.clone();
            async move {
                eventually(&format!("{name} Ready={want}"), TIMEOUT, || async {
                    let p = pods.get(name).await?;
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                    Ok((phase.as_deref() == Some("Running")
                        && condition(&p, "Ready").as_deref() == Some(want)
                        && condition(&p, "ContainersReady").as_deref() == Some(want))
                    .then_some(p))
                })
                .await
            }
        }
    };
    // Running but not Ready before the first success.
    let p = ready("False")("flip").await?;
    let c = container_status(&p, false, "main").context("status")?;
    ensure!(!c.ready && c.restart_count == 0, "{c:?}");
    ready("True")("flip").await?;
    let p = ready("True")("web").await?;
    let c = container_status(&p, false, "main").context("status")?;
    ensure!(c.started == Some(true) && c.ready, "{c:?}");

    let p = eventually("dies restarted by its liveness probe", TIMEOUT, || async {
        let p = pods.get("dies").await?;
        let c = container_status(&p, false, "main").context("status")?;
        Ok((c.restart_count >= 1).then_some(p))
    })
    .await?;
    let c = container_status(&p, false, "main").context("status")?;
    let last = c
        .last_state
        .and_then(|s| s.terminated)
        .context("lastState.terminated")?;
    ensure!(last.exit_code == 137 || last.exit_code == 143, "{last:?}");

    // The probe of "closed" keeps failing; "web" is still healthy with no restart.
    let p = pods.get("closed").await?;
    ensure!(condition(&p, "Ready").as_deref() == Some("False"));
    let p = pods.get("web").await?;
    ensure!(container_status(&p, false, "main").is_some_and(|c| c.restart_count == 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_and_grace_period_ends_in_sigkill() -> Result<()> {
    let s = setup("kl-hooks").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    // postStart writes a file the container waits for and prints; preStop prints into
    // the container's stdout; SIGTERM is trapped and printed; then it ignores TERM
    // and only SIGKILL (at the end of the grace period) ends it.
    let script = "trap 'echo got-term; trap \"\" TERM' TERM; \
                  until [ -e /tmp/hook ]; do sleep 0.2; done; cat /tmp/hook; \
                  while true; do sleep 0.2; done";
    let mut p = sh_pod("hooked", &s.node.name, script, "Always");
    p.spec
        .as_mut()
        .context("spec")?
        .termination_grace_period_seconds = Some(4);
    p.spec.as_mut().context("spec")?.containers[0].lifecycle = Some(Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "echo post-start-ran > /tmp/hook".into(),
                ]),
            }),
            ..Default::default()
        }),
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "echo pre-stop-ran > /proc/1/fd/1".into(),
                ]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let p = pods.create(&PostParams::default(), &p).await?;
    wait_phase(&pods, "hooked", "Running").await?;
    let path = logs::container_log_path(&log_dir(&s, &p)?, "main", 0);
    let has = |lines: &[LogLine], what: &[u8]| lines.iter().position(|l| l.content == what);
    eventually("postStart's file printed", TIMEOUT, || async {
        let lines = read_log(&path)?;
        Ok(has(&lines, b"post-start-ran").map(|_| ()))
    })
    .await?;
    pods.delete("hooked", &DeleteParams::default()).await?;
    // While the grace period runs, the log shows preStop, then the SIGTERM trap.
    eventually("preStop then SIGTERM in the log", TIMEOUT, || async {
        let lines = read_log(&path)?;
        match (has(&lines, b"pre-stop-ran"), has(&lines, b"got-term")) {
            (Some(a), Some(b)) if a < b => Ok(Some(())),
            (Some(_), Some(_)) => bail!("SIGTERM before preStop: {lines:?}"),
            _ => Ok(None),
        }
    })
    .await?;
    // The container ignores SIGTERM after the trap; SIGKILL ends it and the pod goes.
    eventually("pod gone", TIMEOUT, || async {
        Ok(pods.get_opt("hooked").await?.is_none().then_some(()))
    })
    .await?;
    eventually("nothing left behind", TIMEOUT, || async {
        let l = s.node.leftovers()?;
        if l.is_empty() {
            Ok(Some(()))
        } else {
            bail!("{l:?}")
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_become_cgroup_limits_and_oom_kills_are_reported() -> Result<()> {
    let s = setup("kl-res").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let limits = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect(),
        )
    };
    let mut limited = sh_pod("limited", &s.node.name, "sleep 3600", "Always");
    limited.spec.as_mut().context("spec")?.containers[0].resources = Some(ResourceRequirements {
        limits: limits(&[("cpu", "500m"), ("memory", "64Mi")]),
        requests: limits(&[("cpu", "250m")]),
        ..Default::default()
    });
    // memhog holds 64 MiB; with a 32 MiB limit the kernel kills it.
    let mut hog = pod("hog", &s.node.name, &image("memhog"), None, "Never");
    hog.spec.as_mut().context("spec")?.containers[0].resources = Some(ResourceRequirements {
        limits: limits(&[("memory", "32Mi")]),
        ..Default::default()
    });
    pods.create(&PostParams::default(), &limited).await?;
    pods.create(&PostParams::default(), &hog).await?;

    let p = wait_phase(&pods, "limited", "Running").await?;
    let id = container_status(&p, false, "main")
        .and_then(|c| c.container_id)
        .context("containerID")?;
    let id = id.trim_start_matches("containerd://");
    // cgroup v1 (this machine) or v2.
    let read = |v1: &str, v2: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{v1}"))
            .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/{v2}")))
            .map(|s| s.trim().to_string())
    };
    let memory = read(
        &format!("memory/skiff/{id}/memory.limit_in_bytes"),
        &format!("skiff/{id}/memory.max"),
    )?;
    ensure!(memory == (64u64 << 20).to_string(), "memory limit {memory}");
    let quota = read(
        &format!("cpu/skiff/{id}/cpu.cfs_quota_us"),
        &format!("skiff/{id}/cpu.max"),
    )?;
    ensure!(
        quota == "50000" || quota == "50000 100000",
        "cpu quota {quota}"
    );
    if let Ok(shares) = read(&format!("cpu/skiff/{id}/cpu.shares"), "-") {
        ensure!(shares == "256", "cpu shares {shares}");
    }

    let p = wait_phase(&pods, "hog", "Failed").await?;
    let t = container_status(&p, false, "main")
        .and_then(|c| c.state?.terminated)
        .context("terminated")?;
    ensure!(
        t.reason.as_deref() == Some("OOMKilled") && t.exit_code == 137,
        "{t:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_from_config_maps_secrets_fields_and_services() -> Result<()> {
    let s = setup("kl-env").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(s.client.clone(), "default")
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("settings"),
                data: Some([("mode".to_string(), "fast".to_string())].into()),
                ..Default::default()
            },
        )
        .await?;
    Api::<Secret>::namespaced(s.client.clone(), "default")
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("creds"),
                data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
                ..Default::default()
            },
        )
        .await?;
    let svc = Api::<Service>::namespaced(s.client.clone(), "default")
        .create(
            &PostParams::default(),
            &Service {
                metadata: meta("my-db"),
                spec: Some(ServiceSpec {
                    ports: Some(vec![ServicePort {
                        name: Some("sql".into()),
                        port: 5432,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
    let ip = svc.spec.and_then(|s| s.cluster_ip).context("clusterIP")?;

    let var = |name: &str, source: EnvVarSource| EnvVar {
        name: name.into(),
        value_from: Some(source),
        ..Default::default()
    };
    let mut p = sh_pod("env", &s.node.name, "env | sort", "Never");
    let c = &mut p.spec.as_mut().context("spec")?.containers[0];
    c.env_from = Some(vec![EnvFromSource {
        prefix: Some("CFG_".into()),
        config_map_ref: Some(ConfigMapEnvSource {
            name: "settings".into(),
            optional: None,
        }),
        ..Default::default()
    }]);
    c.env = Some(vec![
        var(
            "POD_NAME",
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        var(
            "POD_IP",
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        var(
            "PASSWORD",
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "creds".into(),
                    key: "password".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        ),
        var(
            "MAYBE",
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "absent".into(),
                    key: "k".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        ),
    ]);
    // A required key that does not exist: CreateContainerConfigError, named.
    let mut missing = sh_pod("missing", &s.node.name, "env", "Never");
    missing.spec.as_mut().context("spec")?.containers[0].env = Some(vec![var(
        "X",
        EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "settings".into(),
                key: "nope".into(),
                optional: None,
            }),
            ..Default::default()
        },
    )]);
    let p = pods.create(&PostParams::default(), &p).await?;
    pods.create(&PostParams::default(), &missing).await?;
    let done = wait_phase(&pods, "env", "Succeeded").await?;
    let pod_ip = done
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("podIP")?;
    let path = logs::container_log_path(&log_dir(&s, &p)?, "main", 0);
    let env: Vec<String> = eventually("env printed", TIMEOUT, || async {
        let lines = read_log(&path)?;
        let env: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.content).into_owned())
            .collect();
        Ok(env
            .iter()
            .any(|l| l.starts_with("POD_NAME="))
            .then_some(env))
    })
    .await?;
    for want in [
        "CFG_mode=fast".to_string(),
        "POD_NAME=env".to_string(),
        format!("POD_IP={pod_ip}"),
        "PASSWORD=hunter2".to_string(),
        format!("MY_DB_SERVICE_HOST={ip}"),
        "MY_DB_SERVICE_PORT=5432".to_string(),
        "MY_DB_SERVICE_PORT_SQL=5432".to_string(),
        format!("MY_DB_PORT_5432_TCP=tcp://{ip}:5432"),
    ] {
        ensure!(env.contains(&want), "{want} not in {env:?}");
    }
    ensure!(!env.iter().any(|l| l.starts_with("MAYBE=")), "{env:?}");

    eventually("CreateContainerConfigError", TIMEOUT, || async {
        let p = pods.get("missing").await?;
        let w = container_status(&p, false, "main")
            .and_then(|c| c.state?.waiting)
            .context("waiting")?;
        if w.reason.as_deref() == Some("CreateContainerConfigError")
            && w.message
                .as_deref()
                .is_some_and(|m| m.contains("couldn't find key nope in ConfigMap default/settings"))
        {
            return Ok(Some(()));
        }
        bail!("{w:?}")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_recorded_and_missing_images_back_off() -> Result<()> {
    let s = setup("kl-events").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let missing = format!(
        "{}/skiff-test/does-not-exist:1",
        skiff_tests::kubelet::REGISTRY
    );
    pods.create(
        &PostParams::default(),
        &pod("ghost", &s.node.name, &missing, None, "Always"),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &sh_pod("hello", &s.node.name, "echo hi", "Never"),
    )
    .await?;
    eventually("ImagePullBackOff naming the image", TIMEOUT, || async {
        let p = pods.get("ghost").await?;
        let w = container_status(&p, false, "main")
            .and_then(|c| c.state?.waiting)
            .context("waiting")?;
        if w.reason.as_deref() == Some("ImagePullBackOff")
            && w.message.as_deref().is_some_and(|m| m.contains(&missing))
        {
            return Ok(Some(()));
        }
        bail!("{w:?}")
    })
    .await?;
    wait_phase(&pods, "hello", "Succeeded").await?;
    let events: Api<Event> = Api::namespaced(s.client.clone(), "default");
    eventually("events of both pods", TIMEOUT, || async {
        let list = events.list(&Default::default()).await?.items;
        let has = |pod: &str, reason: &str, text: &str| {
            list.iter().any(|e| {
                e.involved_object.name.as_deref() == Some(pod)
                    && e.reason.as_deref() == Some(reason)
                    && e.message.as_deref().is_some_and(|m| m.contains(text))
                    && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("kubelet")
            })
        };
        let want = [
            ("ghost", "Pulling", missing.as_str()),
            ("ghost", "Failed", missing.as_str()),
            ("ghost", "Failed", "ErrImagePull"),
            ("ghost", "BackOff", missing.as_str()),
            ("hello", "Created", "main"),
            ("hello", "Started", "main"),
        ];
        let absent: Vec<_> = want.iter().filter(|(p, r, t)| !has(p, r, t)).collect();
        if absent.is_empty() {
            return Ok(Some(()));
        }
        bail!(
            "missing {absent:?} in {:?}",
            list.iter()
                .map(|e| (e.reason.clone(), e.message.clone()))
                .collect::<Vec<_>>()
        )
    })
    .await?;
    Ok(())
}
