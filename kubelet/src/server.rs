//! /healthz and /metrics.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::node::RuntimeHealth;
use crate::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<RwLock<RuntimeHealth>>,
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<RwLock<RuntimeHealth>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(AppState { metrics, health });
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "healthz server failed");
    }
}

/// The kubelet process answers; the runtime's state is in the node's Ready condition.
async fn healthz() -> &'static str {
    "ok"
}

async fn render_metrics(State(s): State<AppState>) -> (StatusCode, String) {
    let m = &s.metrics;
    let up = matches!(
        *s.health.read().unwrap_or_else(|p| p.into_inner()),
        RuntimeHealth::Up(_)
    );
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    put(
        "kubelet_containers_started_total",
        "counter",
        "Containers started.",
        m.containers_started.load(Ordering::Relaxed),
    );
    put(
        "kubelet_image_pulls_total",
        "counter",
        "Images pulled from registries.",
        m.image_pulls.load(Ordering::Relaxed),
    );
    put(
        "kubelet_image_archive_imports_total",
        "counter",
        "Image archives imported from --image-dir.",
        m.image_imports.load(Ordering::Relaxed),
    );
    put(
        "kubelet_node_status_posts_total",
        "counter",
        "Node status updates written.",
        m.node_status_posts.load(Ordering::Relaxed),
    );
    put(
        "kubelet_node_lease_renewals_total",
        "counter",
        "Node Lease renewals.",
        m.lease_renewals.load(Ordering::Relaxed),
    );
    put(
        "kubelet_pod_workers",
        "gauge",
        "Pods this kubelet is running or cleaning up.",
        m.pod_workers.load(Ordering::Relaxed),
    );
    put(
        "kubelet_container_runtime_up",
        "gauge",
        "1 when containerd answered at the last check.",
        u64::from(up),
    );
    (StatusCode::OK, out)
}
