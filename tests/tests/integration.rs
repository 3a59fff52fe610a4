//! Every integration suite in one test binary.
//!
//! Each suite is a module here rather than a binary of its own: a release link of the
//! whole dependency graph costs tens of seconds on two cores, once per binary, and that
//! dominated CI. nextest still runs every test in its own process, so the suites share no
//! state. A new suite is a file beside this one plus a `mod` line below;
//! `every_suite_file_is_a_module` fails when the line is missing.

mod apiserver_admission;
mod apiserver_kubectl;
mod apiserver_kubectl_imperative;
mod apiserver_list;
mod apiserver_rest;
mod apiserver_tokens;
mod checker_etcd;
mod client_apiserver;
mod controllers;
mod etcdctl_compat;
mod faults;
mod harness_etcd;
mod kubelet;
mod kubelet_docker_archive;
mod kubelet_logs;
mod kubelet_registries;
mod kubelet_restart;
mod kubelet_streaming;
mod kubelet_volumes;
mod lab;
mod netd_cluster;
mod netd_proxy;
mod scheduler;
mod skiffctl;
mod skiffctl_streaming;
mod store_bad_input;
mod store_features;
mod tour;

/// With `autotests = false`, a suite file without its `mod` line would silently never run.
#[test]
fn every_suite_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = include_str!("integration.rs");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read tests/tests") {
        let path = entry.expect("dir entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs")
            && stem != "integration"
            && !this.lines().any(|l| l == format!("mod {stem};"))
        {
            missing.push(stem.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "suites in tests/tests without a `mod` line in integration.rs: {missing:?}"
    );
}
