//! The built `skiffctl` against `skiff apiserver` on a real 3-member store, verb by
//! verb, compared with the real kubectl on the same objects where their output should
//! be the same. One control plane serves the whole walk, as one user's session.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use skiff_tests::control_plane::{ControlPlane, KUBECTL};
use skiff_tests::skiffctl::{cells_without_age, Skiffctl};

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn manifest(name: &str) -> String {
    manifests().join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiffctl_behaves_like_kubectl() {
    let cp = ControlPlane::start(1).await.unwrap();
    let ctl = Skiffctl::new(&cp).unwrap();
    kubeconfig_contexts_and_namespaces(&cp).unwrap();
    create_apply_and_prune(&cp, &ctl).unwrap();
    get_matches_kubectl(&cp, &ctl).unwrap();
    get_watch_follows_changes(&ctl).await.unwrap();
    editing_verbs(&cp, &ctl).unwrap();
    nodes_taint_cordon_drain(&ctl).unwrap();
    rollout_verbs(&ctl).unwrap();
    describe_shows_sections_and_events(&ctl).unwrap();
    delete_forms(&ctl).unwrap();
    server_information(&cp, &ctl).unwrap();
}

fn kubectl_env(env: &[(&str, &str)], args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(KUBECTL);
    cmd.env_remove("KUBECONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output()?;
    ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Two files in `$KUBECONFIG`: the first to define a name wins, current-context comes
/// from the second; edits land in the file kubectl would write.
fn kubeconfig_contexts_and_namespaces(cp: &ControlPlane) -> Result<()> {
    let dir = cp.dir().join("kc");
    std::fs::create_dir_all(&dir)?;
    let a = dir.join("a.yaml");
    let b = dir.join("b.yaml");
    let server = cp.url(0);
    std::fs::write(
        &a,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n- name: dead\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: lab\n  context:\n    cluster: skiff\n    user: admin\nusers:\n- name: admin\n  user:\n    token: secret-token\n"
        ),
    )?;
    std::fs::write(
        &b,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: lab\n  context:\n    cluster: dead\n- name: team\n  context:\n    cluster: skiff\n    namespace: team\ncurrent-context: team\n",
    )?;
    let joined = format!("{}:{}", a.display(), b.display());
    let env = [("KUBECONFIG", joined.as_str())];
    let ctl = Skiffctl::with_env(&env)?;

    ensure!(ctl.ok(&["config", "current-context"])? == "team\n");
    for args in [
        &["config", "get-contexts"][..],
        &["config", "view"],
        &["config", "view", "--minify"],
        &["config", "get-contexts", "-o", "name"],
    ] {
        let ours = ctl.ok(args)?;
        let theirs = kubectl_env(&env, args)?;
        ensure!(
            ours == theirs,
            "{args:?} differs:\nskiffctl:\n{ours}\nkubectl:\n{theirs}"
        );
    }
    // kubectl's JSON keeps Go's field order; the content is what must agree.
    let args = ["config", "view", "--raw", "-o", "json"];
    let ours: Value = serde_json::from_str(&ctl.ok(&args)?)?;
    let theirs: Value = serde_json::from_str(&kubectl_env(&env, &args)?)?;
    ensure!(ours == theirs, "{ours}\n{theirs}");
    ensure!(ctl.ok(&["config", "view"])?.contains("token: REDACTED"));

    // `team` uses the skiff cluster (a.yaml's, first wins) and namespace team.
    ctl.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-settings\n  namespace: team\n",
    )?;
    ensure!(ctl
        .ok(&["get", "cm", "-o", "name"])?
        .contains("configmap/team-settings"));

    // use-context writes the file that already has a current-context (b.yaml).
    let a_before = std::fs::read_to_string(&a)?;
    ensure!(ctl.ok(&["config", "use-context", "lab"])? == "Switched to context \"lab\".\n");
    ensure!(
        std::fs::read_to_string(&a)? == a_before,
        "a.yaml must not change"
    );
    ensure!(kubectl_env(&env, &["config", "current-context"])? == "lab\n");
    let e = ctl.fails(&["config", "use-context", "nope"])?;
    ensure!(
        e.contains("no context exists with the name: \"nope\""),
        "{e}"
    );

    // set-context --current modifies lab where it is defined (a.yaml), as kubectl does.
    let out = ctl.ok(&["config", "set-context", "--current", "--namespace=team"])?;
    ensure!(out == "Context \"lab\" modified.\n", "{out}");
    ensure!(std::fs::read_to_string(&a)?.contains("namespace: team"));
    ensure!(
        kubectl_env(
            &env,
            &[
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.contexts[0].context.namespace}"
            ]
        )? == "team"
    );
    ensure!(ctl
        .ok(&["get", "cm", "-o", "name"])?
        .contains("configmap/team-settings"));
    // -n and -A override the context's namespace.
    ensure!(!ctl
        .ok(&["get", "cm", "-n", "default", "-o", "name"])?
        .contains("team-settings"));
    let all = ctl.ok(&["get", "cm", "-A"])?;
    ensure!(
        all.starts_with("NAMESPACE")
            && all
                .lines()
                .any(|l| l.starts_with("team ") && l.contains(" team-settings ")),
        "{all}"
    );
    ensure!(
        ctl.ok(&["config", "set-context", "new", "--cluster=skiff"])?
            == "Context \"new\" created.\n"
    );

    // --context picks another context; one on a dead cluster fails clearly.
    let e = ctl.fails(&["--context", "nope", "get", "pods"])?;
    ensure!(e.contains("context \"nope\" not found"), "{e}");
    ensure!(ctl
        .ok(&["--context", "team", "get", "cm", "-o", "name"])?
        .contains("team-settings"));

    // --kubeconfig beats $KUBECONFIG; ~/.kube/config is the last resort.
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".kube"))?;
    std::fs::copy(&a, home.join(".kube/config"))?;
    let home_ctl = Skiffctl::with_env(&[("HOME", home.to_str().unwrap_or_default())])?;
    let e = home_ctl.fails(&["config", "current-context"])?;
    ensure!(e.contains("current-context is not set"), "{e}");
    home_ctl.ok(&["config", "use-context", "lab"])?;
    ensure!(home_ctl.ok(&["get", "ns", "team", "-o", "name"])? == "namespace/team\n");
    let explicit = ctl.ok(&[
        "--kubeconfig",
        &cp.kubeconfig().display().to_string(),
        "config",
        "current-context",
    ])?;
    ensure!(explicit == "skiff\n", "{explicit}");
    let e = ctl.fails(&["--kubeconfig", "/nonexistent/kc", "get", "pods"])?;
    ensure!(e.contains("/nonexistent/kc"), "{e}");
    Ok(())
}

/// create, apply (created / unchanged / configured, three-way removal, dry runs, stdin,
/// directories, -R) and apply --prune -l.
fn create_apply_and_prune(cp: &ControlPlane, ctl: &Skiffctl) -> Result<()> {
    let out = ctl.ok(&["create", "-f", &manifest("game-demo-configmap.yaml")])?;
    ensure!(out == "configmap/game-demo created\n", "{out}");
    let e = ctl.fails(&["create", "-f", &manifest("game-demo-configmap.yaml")])?;
    ensure!(
        e.starts_with("Error from server (AlreadyExists): error when creating")
            && e.contains("configmaps \"game-demo\" already exists"),
        "{e}"
    );

    let out = ctl.ok(&[
        "apply",
        "-f",
        &manifest("nginx-deployment.yaml"),
        "-f",
        &manifest("my-service.yaml"),
    ])?;
    ensure!(
        out == "deployment.apps/nginx-deployment created\nservice/my-service created\n",
        "{out}"
    );
    let out = ctl.ok(&["apply", "-f", &manifest("nginx-deployment.yaml")])?;
    ensure!(
        out == "deployment.apps/nginx-deployment unchanged\n",
        "{out}"
    );
    // kubectl reads skiffctl's last-applied annotation as its own.
    let kout = cp.kubectl_ok(&["apply", "-f", &manifest("nginx-deployment.yaml")])?;
    ensure!(
        kout == "deployment.apps/nginx-deployment unchanged\n",
        "{kout}"
    );

    let original = std::fs::read_to_string(manifest("nginx-deployment.yaml"))?;
    let edited = original
        .replace("nginx:1.14.2", "nginx:1.16.1")
        .replace("replicas: 3", "replicas: 2");
    ensure!(edited != original);
    for (flag, expect) in [
        ("--dry-run=client", " (dry run)"),
        ("--dry-run=server", " (server dry run)"),
    ] {
        let out = ctl.ok_stdin(&["apply", "-f", "-", flag], &edited)?;
        ensure!(
            out == format!("deployment.apps/nginx-deployment configured{expect}\n"),
            "{out}"
        );
    }
    let image = |ctl: &Skiffctl| {
        ctl.ok(&[
            "get",
            "deploy",
            "nginx-deployment",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.spec.replicas}",
        ])
    };
    ensure!(
        image(ctl)? == "nginx:1.14.2 3",
        "dry runs must not change the object"
    );
    ensure!(
        ctl.ok_stdin(&["apply", "-f", "-"], &edited)?
            == "deployment.apps/nginx-deployment configured\n"
    );
    ensure!(image(ctl)? == "nginx:1.16.1 2");

    // A label dropped from the manifest is removed; one added by someone else stays.
    let dir = cp.dir().join("apply");
    std::fs::create_dir_all(dir.join("sub"))?;
    let cm = |name: &str, labels: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n{labels}data:\n  k: v\n")
    };
    std::fs::write(
        dir.join("one.yaml"),
        cm("one", "    app: demo\n    stage: a\n"),
    )?;
    std::fs::write(dir.join("sub/two.yaml"), cm("two", "    app: demo\n"))?;
    std::fs::write(dir.join("notes.txt"), "not a manifest")?;
    let d = dir.display().to_string();
    ensure!(ctl.ok(&["apply", "-f", &d])? == "configmap/one created\n");
    ensure!(
        ctl.ok(&["apply", "-f", &d, "-R"])? == "configmap/one unchanged\nconfigmap/two created\n"
    );
    ctl.ok(&["label", "cm", "one", "owner=ops"])?;
    std::fs::write(dir.join("one.yaml"), cm("one", "    app: demo\n"))?;
    ensure!(ctl.ok(&["apply", "-f", &d])? == "configmap/one configured\n");
    let labels = ctl.ok(&["get", "cm", "one", "-o", "jsonpath={.metadata.labels}"])?;
    let labels: Value = serde_json::from_str(&labels)?;
    ensure!(
        labels == serde_json::json!({"app": "demo", "owner": "ops"}),
        "{labels}"
    );

    // --prune -l deletes what carries the annotation and the label but was not applied.
    std::fs::remove_file(dir.join("sub/two.yaml"))?;
    let out = ctl.ok(&["apply", "-f", &d, "-R", "--prune", "-l", "app=demo"])?;
    ensure!(
        out == "configmap/one unchanged\nconfigmap/two pruned\n",
        "{out}"
    );
    let e = ctl.fails(&["get", "cm", "two"])?;
    ensure!(
        e == "Error from server (NotFound): configmaps \"two\" not found\n",
        "{e}"
    );
    let e = ctl.fails(&["apply", "-f", &d, "--prune"])?;
    ensure!(e.contains("--all"), "{e}");
    Ok(())
}

fn same_table(cp: &ControlPlane, ctl: &Skiffctl, args: &[&str]) -> Result<()> {
    let ours = ctl.ok(args)?;
    let theirs = cp.kubectl_ok(args)?;
    ensure!(
        cells_without_age(&ours) == cells_without_age(&theirs),
        "{args:?} differs:\nskiffctl:\n{ours}\nkubectl:\n{theirs}"
    );
    Ok(())
}

fn same_output(cp: &ControlPlane, ctl: &Skiffctl, args: &[&str]) -> Result<()> {
    let ours = ctl.ok(args)?;
    let theirs = cp.kubectl_ok(args)?;
    ensure!(
        ours == theirs,
        "{args:?} differs:\nskiffctl:\n{ours}\nkubectl:\n{theirs}"
    );
    Ok(())
}

fn get_matches_kubectl(cp: &ControlPlane, ctl: &Skiffctl) -> Result<()> {
    for args in [
        &["get", "all"][..],
        &["get", "all", "-A"],
        &["get", "ns"],
        &["get", "deploy", "-o", "wide"],
        &["get", "svc,cm"],
        &["get", "deployments.apps/nginx-deployment", "svc/my-service"],
        &["get", "cm", "-l", "app=demo"],
        &["get", "services", "-A", "-o", "wide"],
    ] {
        same_table(cp, ctl, args)?;
    }
    for args in [
        &["get", "deploy", "nginx-deployment", "-o", "yaml"][..],
        &["get", "svc", "-o", "yaml"],
        &["get", "cm", "one", "-o", "json"],
        &["get", "all", "-o", "name"],
        &["get", "po,svc,cm", "-o", "name"],
        &[
            "get",
            "ns",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        ],
        &[
            "get",
            "deploy",
            "-o",
            "jsonpath={.items[0].spec.template.spec.containers[*].name}",
        ],
    ] {
        same_output(cp, ctl, args)?;
    }
    // Errors as kubectl words them.
    let e = ctl.fails(&["get", "foo"])?;
    ensure!(
        e == "error: the server doesn't have a resource type \"foo\"\n",
        "{e}"
    );
    let out = ctl.run(&["get", "svc", "my-service", "nope"])?;
    ensure!(!out.status.success());
    ensure!(String::from_utf8_lossy(&out.stdout).contains("my-service"));
    ensure!(
        String::from_utf8_lossy(&out.stderr)
            == "Error from server (NotFound): services \"nope\" not found\n"
    );
    let out = ctl.run(&["get", "pods"])?;
    ensure!(out.status.success());
    ensure!(String::from_utf8_lossy(&out.stderr) == "No resources found in default namespace.\n");
    Ok(())
}

async fn get_watch_follows_changes(ctl: &Skiffctl) -> Result<()> {
    let mut child = ctl
        .cmd()
        .args(["get", "cm", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().context("stdout")?;
    let _guard = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The initial table first, then the new object's row.
    let header = rx.recv_timeout(Duration::from_secs(60))?;
    ensure!(header.starts_with("NAME"), "{header}");
    ctl.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\n",
    )?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .context("no row for the new ConfigMap")?;
        if line.starts_with("watched ") {
            break;
        }
    }
    Ok(())
}

fn editing_verbs(cp: &ControlPlane, ctl: &Skiffctl) -> Result<()> {
    ensure!(
        ctl.ok(&["scale", "deploy", "nginx-deployment", "--replicas=4"])?
            == "deployment.apps/nginx-deployment scaled\n"
    );
    ensure!(
        ctl.ok(&[
            "get",
            "deploy/nginx-deployment",
            "-o",
            "jsonpath={.spec.replicas}"
        ])? == "4"
    );
    let e = ctl.fails(&[
        "scale",
        "deploy/nginx-deployment",
        "--replicas=5",
        "--current-replicas=3",
    ])?;
    ensure!(e.contains("Expected replicas to be 3, was 4"), "{e}");

    ensure!(
        ctl.ok(&["label", "deploy", "nginx-deployment", "tier=web"])?
            == "deployment.apps/nginx-deployment labeled\n"
    );
    let e = ctl.fails(&["label", "deploy", "nginx-deployment", "tier=db"])?;
    ensure!(
        e == "error: 'tier' already has a value (web), and --overwrite is false\n",
        "{e}"
    );
    ctl.ok(&["label", "deploy/nginx-deployment", "tier=db", "--overwrite"])?;
    ensure!(
        cp.kubectl_ok(&["get", "deploy", "-l", "tier=db", "-o", "name"])?
            == "deployment.apps/nginx-deployment\n"
    );
    ensure!(
        ctl.ok(&["label", "deploy", "nginx-deployment", "tier-"])?
            == "deployment.apps/nginx-deployment unlabeled\n"
    );
    ensure!(ctl
        .ok(&["get", "deploy", "-l", "tier", "-o", "name"])?
        .is_empty());
    ensure!(
        ctl.ok(&["annotate", "cm", "-l", "app=demo", "note=hello"])? == "configmap/one annotated\n"
    );
    ensure!(
        cp.kubectl_ok(&[
            "get",
            "cm",
            "one",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ])? == "hello"
    );
    Ok(())
}

fn nodes_taint_cordon_drain(ctl: &Skiffctl) -> Result<()> {
    ctl.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: lonely\nspec:\n  nodeName: worker-1\n  containers:\n  - name: c\n    image: busybox\n",
    )?;
    ensure!(
        ctl.ok(&["taint", "nodes", "worker-1", "dedicated=gpu:NoSchedule"])?
            == "node/worker-1 tainted\n"
    );
    let e = ctl.fails(&["taint", "nodes", "worker-1", "dedicated=gpu:NoSchedule"])?;
    ensure!(
        e.contains("already has dedicated taint(s) with same effect(s) and --overwrite is false"),
        "{e}"
    );
    ensure!(
        ctl.ok(&[
            "get",
            "node",
            "worker-1",
            "-o",
            "jsonpath={.spec.taints[0].key}={.spec.taints[0].value}:{.spec.taints[0].effect}"
        ])? == "dedicated=gpu:NoSchedule"
    );
    ensure!(
        ctl.ok(&["taint", "node/worker-1", "dedicated:NoSchedule-"])?
            == "node/worker-1 untainted\n"
    );
    let e = ctl.fails(&["taint", "nodes", "worker-1", "dedicated-"])?;
    ensure!(e.contains("not found"), "{e}");

    ensure!(ctl.ok(&["cordon", "worker-1"])? == "node/worker-1 cordoned\n");
    ensure!(ctl.ok(&["cordon", "worker-1"])? == "node/worker-1 already cordoned\n");
    ensure!(
        ctl.ok(&[
            "get",
            "node",
            "worker-1",
            "-o",
            "jsonpath={.spec.unschedulable}"
        ])? == "true"
    );
    ensure!(ctl.ok(&["uncordon", "worker-1"])? == "node/worker-1 uncordoned\n");

    // A pod without a controller needs --force, as in kubectl.
    let e = ctl.fails(&["drain", "worker-1", "--grace-period=0", "--timeout=60s"])?;
    ensure!(e.contains("cannot delete Pods that declare no controller (use --force to override): default/lonely"), "{e}");
    let out = ctl.ok(&[
        "drain",
        "worker-1",
        "--force",
        "--grace-period=0",
        "--timeout=60s",
    ])?;
    ensure!(
        out.contains("evicting pod default/lonely\n")
            && out.ends_with("pod/lonely evicted\nnode/worker-1 drained\n"),
        "{out}"
    );
    ensure!(ctl.fails(&["get", "pod", "lonely"])?.contains("NotFound"));
    ctl.ok(&["uncordon", "worker-1"])?;
    Ok(())
}

fn rollout_verbs(ctl: &Skiffctl) -> Result<()> {
    // No controller-manager runs here: status reports the wait without blocking.
    let out = ctl.ok(&[
        "rollout",
        "status",
        "deploy/nginx-deployment",
        "--watch=false",
    ])?;
    ensure!(out.starts_with("Waiting for deployment "), "{out}");
    let e = ctl.fails(&[
        "rollout",
        "status",
        "deploy/nginx-deployment",
        "--timeout=2s",
    ])?;
    ensure!(e.contains("timed out waiting for the condition"), "{e}");

    ensure!(
        ctl.ok(&["rollout", "restart", "deployment", "nginx-deployment"])?
            == "deployment.apps/nginx-deployment restarted\n"
    );
    let tmpl = ctl.ok(&[
        "get",
        "deploy",
        "nginx-deployment",
        "-o",
        "jsonpath={.spec.template.metadata.annotations}",
    ])?;
    ensure!(tmpl.contains("kubectl.kubernetes.io/restartedAt"), "{tmpl}");

    // Two ReplicaSets owned by the Deployment stand for revisions 1 and 2.
    let uid = ctl.ok(&[
        "get",
        "deploy",
        "nginx-deployment",
        "-o",
        "jsonpath={.metadata.uid}",
    ])?;
    let rs = |rev: u32, image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: nginx-deployment-r{rev}\n  annotations:\n    deployment.kubernetes.io/revision: \"{rev}\"\n  ownerReferences:\n  - apiVersion: apps/v1\n    kind: Deployment\n    name: nginx-deployment\n    uid: {uid}\n    controller: true\nspec:\n  replicas: 0\n  selector:\n    matchLabels:\n      app: nginx\n  template:\n    metadata:\n      labels:\n        app: nginx\n        pod-template-hash: r{rev}\n    spec:\n      containers:\n      - name: nginx\n        image: {image}\n"
        )
    };
    ctl.ok_stdin(
        &["create", "-f", "-"],
        &format!("{}---\n{}", rs(1, "nginx:1.14.2"), rs(2, "nginx:1.16.1")),
    )?;
    ctl.ok(&[
        "annotate",
        "deploy",
        "nginx-deployment",
        "deployment.kubernetes.io/revision=2",
    ])?;
    let out = ctl.ok(&["rollout", "history", "deploy/nginx-deployment"])?;
    ensure!(
        out == "deployment.apps/nginx-deployment \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n",
        "{out:?}"
    );
    ensure!(
        ctl.ok(&["rollout", "undo", "deploy/nginx-deployment"])?
            == "deployment.apps/nginx-deployment rolled back\n"
    );
    let img = ctl.ok(&[
        "get",
        "deploy",
        "nginx-deployment",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])?;
    ensure!(img == "nginx:1.14.2", "{img}");
    let e = ctl.fails(&[
        "rollout",
        "undo",
        "deploy/nginx-deployment",
        "--to-revision=7",
    ])?;
    ensure!(e.contains("unable to find specified revision 7"), "{e}");
    Ok(())
}

fn describe_shows_sections_and_events(ctl: &Skiffctl) -> Result<()> {
    ctl.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: described\n  labels:\n    app: d\nspec:\n  nodeName: worker-1\n  containers:\n  - name: web\n    image: busybox\n    ports:\n    - containerPort: 80\n---\napiVersion: v1\nkind: Event\nmetadata:\n  name: described.1\ninvolvedObject:\n  kind: Pod\n  name: described\n  namespace: default\nreason: Scheduled\nmessage: Successfully assigned default/described to worker-1\ntype: Normal\nsource:\n  component: default-scheduler\n",
    )?;
    let out = ctl.ok(&["describe", "pod", "described"])?;
    for want in [
        "Name:             described\n",
        "Namespace:        default\n",
        "Node:             worker-1\n",
        "Labels:           app=d\n",
        "Containers:\n  web:\n",
        "    Image:        busybox\n",
        "    Port:         80/TCP\n",
        "Events:\n  Type    Reason     Age",
        "Normal  Scheduled",
        "default-scheduler  Successfully assigned default/described to worker-1",
    ] {
        ensure!(out.contains(want), "describe pod lacks {want:?}:\n{out}");
    }
    let out = ctl.ok(&["describe", "deploy", "nginx-deployment"])?;
    for want in [
        "Name:                   nginx-deployment\n",
        "Replicas:               4 desired",
        "StrategyType:",
        "Pod Template:",
        "Image:",
        "Events:",
    ] {
        ensure!(out.contains(want), "describe deploy lacks {want:?}:\n{out}");
    }
    let out = ctl.ok(&["describe", "svc", "my-service"])?;
    for want in [
        "Selector:           app.kubernetes.io/name=MyApp\n",
        "Type:               ClusterIP\n",
        "TargetPort:         9376/TCP\n",
        "Endpoints:          <none>\n",
        "Events:  <none>\n",
    ] {
        ensure!(out.contains(want), "describe svc lacks {want:?}:\n{out}");
    }
    let out = ctl.ok(&["describe", "node", "worker-1"])?;
    for want in [
        "Name:               worker-1\n",
        "Unschedulable:      false\n",
        "Non-terminated Pods:",
        "default    described",
    ] {
        ensure!(out.contains(want), "describe node lacks {want:?}:\n{out}");
    }
    // A name prefix describes the matching objects, as kubectl does.
    ensure!(ctl
        .ok(&["describe", "cm", "on"])?
        .contains("Name:               one\n"));
    let e = ctl.fails(&["describe", "pod", "zzz"])?;
    ensure!(e.contains("pods \"zzz\" not found"), "{e}");
    Ok(())
}

fn delete_forms(ctl: &Skiffctl) -> Result<()> {
    let out = ctl.ok(&["delete", "-f", &manifest("my-service.yaml")])?;
    ensure!(out == "service \"my-service\" deleted\n", "{out}");
    let e = ctl.fails(&["delete", "svc", "my-service"])?;
    ensure!(
        e == "Error from server (NotFound): services \"my-service\" not found\n",
        "{e}"
    );
    ensure!(ctl
        .ok(&["delete", "svc", "my-service", "--ignore-not-found"])?
        .is_empty());
    ctl.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x1\n  labels: {batch: b}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x2\n  labels: {batch: b}\n",
    )?;
    let out = ctl.ok(&["delete", "cm", "-l", "batch=b", "--wait"])?;
    ensure!(
        out == "configmap \"x1\" deleted\nconfigmap \"x2\" deleted\n",
        "{out}"
    );
    let e = ctl.fails(&["delete", "cm"])?;
    ensure!(e.contains("no name was specified"), "{e}");
    let out = ctl.ok(&["delete", "rs", "--all", "--grace-period=0", "--wait=false"])?;
    ensure!(
        out.contains("replicaset.apps \"nginx-deployment-r1\" deleted\n"),
        "{out}"
    );
    // No kubelet runs here to finish a graceful pod deletion: delete at once.
    let out = ctl.ok(&[
        "delete",
        "deployment/nginx-deployment",
        "pod/described",
        "--grace-period=0",
        "--force",
    ])?;
    ensure!(
        out == "deployment.apps \"nginx-deployment\" deleted\npod \"described\" deleted\n",
        "{out}"
    );
    Ok(())
}

fn server_information(cp: &ControlPlane, ctl: &Skiffctl) -> Result<()> {
    same_output(cp, ctl, &["api-resources"])?;
    same_output(
        cp,
        ctl,
        &["api-resources", "--namespaced=false", "-o", "name"],
    )?;
    let out = ctl.ok(&["explain", "deployment.spec.replicas"])?;
    ensure!(
        out.contains("KIND:       Deployment\nVERSION:    v1\n")
            && out.contains("FIELD: replicas <integer>"),
        "{out}"
    );
    let out = ctl.ok(&["explain", "pods"])?;
    ensure!(
        out.contains("FIELDS:\n") && out.contains("  spec\t<PodSpec>"),
        "{out}"
    );
    let out = ctl.ok(&["version"])?;
    ensure!(out.contains("Server Version: v1.33"), "{out}");
    let v: Value = serde_json::from_str(&ctl.ok(&["version", "-o", "json"])?)?;
    ensure!(v["serverVersion"]["minor"] == "33");
    for shell in ["bash", "zsh"] {
        let out = ctl.ok(&["completion", shell])?;
        ensure!(
            out.contains("skiffctl") && out.contains("api-resources"),
            "{shell}"
        );
    }
    ensure!(ctl
        .fails(&["completion", "fish"])?
        .contains("Unsupported shell type"));

    // -v 6: one line per response, as kubectl's round-tripper logging.
    let out = ctl.run(&["get", "pods", "-v", "6"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "\"Response\" verb=\"GET\" url=\"{}/api/v1/namespaces/default/pods\" status=\"200 OK\" milliseconds=",
        cp.url(0)
    );
    ensure!(
        err.contains(&want) && err.contains("Config loaded from file:"),
        "{err}"
    );
    ensure!(!err.contains("Request Body"));
    let out = ctl.run(&["get", "ns", "default", "-v=9"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("Accept: application/json;as=Table") && err.contains("\"Response Body\""),
        "{err}"
    );

    // logs: the same answer as kubectl's for a pod on a node (whatever the apiserver
    // says about reaching its kubelet), and kubectl's NotFound for a missing pod.
    ctl.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: logged\nspec:\n  nodeName: worker-1\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    image: busybox\n",
    )?;
    let ours = ctl.run(&["logs", "logged", "-c", "b", "--tail=5"])?;
    let theirs = cp.kubectl(&["logs", "logged", "-c", "b", "--tail=5"])?;
    ensure!(ours.status.success() == theirs.status.success());
    ensure!(
        ours.stdout == theirs.stdout && ours.stderr == theirs.stderr,
        "{ours:?}\n{theirs:?}"
    );
    let e = ctl.fails(&["logs", "nope"])?;
    ensure!(
        e == "Error from server (NotFound): pods \"nope\" not found\n",
        "{e}"
    );
    // skiff serves no metrics.k8s.io: top answers as kubectl does without metrics-server.
    for args in [&["top", "pods"][..], &["top", "node", "worker-1"]] {
        let ours = ctl.run(args)?;
        let theirs = cp.kubectl(args)?;
        ensure!(!ours.status.success() && !theirs.status.success());
        ensure!(
            ours.stderr == theirs.stderr && ours.stderr == b"error: Metrics API not available\n",
            "{args:?}: {ours:?}\n{theirs:?}"
        );
    }
    ensure!(ctl
        .fails(&["top", "pods", "--sort-by", "disk"])?
        .contains("--sort-by accepts only cpu or memory"));
    // No kubelet here: exec reaches the apiserver, which says why it cannot go on.
    let e = ctl.fails(&["exec", "logged", "--", "ls"])?;
    ensure!(e.contains("reports no address for its kubelet"), "{e}");
    Ok(())
}
