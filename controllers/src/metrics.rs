//! Prometheus metrics and the /healthz and /metrics endpoint.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;

use crate::{Error, Result};

/// Counters of the controller manager, in the spirit of client-go's workqueue metrics.
#[derive(Default)]
pub struct Metrics {
    // (controller, outcome) → count; outcome is "success" or "error".
    reconciles: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    leader: AtomicBool,
}

impl Metrics {
    /// Counts one reconcile of `controller`.
    pub fn reconciled(&self, controller: &'static str, ok: bool) {
        let outcome = if ok { "success" } else { "error" };
        let mut r = self.reconciles.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((controller, outcome)).or_insert(0) += 1;
    }

    /// Records whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.store(leading, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP skiff_controller_reconcile_total Reconciles by controller and outcome.\n# TYPE skiff_controller_reconcile_total counter\n");
        let r = self.reconciles.lock().unwrap_or_else(|e| e.into_inner());
        for ((controller, outcome), n) in r.iter() {
            let _ = writeln!(
                out,
                "skiff_controller_reconcile_total{{controller=\"{controller}\",result=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP leader_election_master_status Whether this process leads (1) or not (0).\n# TYPE leader_election_master_status gauge\n");
        let _ = writeln!(
            out,
            "leader_election_master_status{{name=\"kube-controller-manager\"}} {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        out
    }
}

/// The router of the health and metrics port.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
}

/// Binds `addr` (failing at once if it is taken) and returns the serving future, which
/// ends when `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = ()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Serve { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, "serving /healthz and /metrics");
    Ok(async move {
        if let Err(error) = axum::serve(listener, router(metrics))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "health and metrics server failed");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_leader_gauge() {
        let m = Metrics::default();
        m.reconciled("replicaset", true);
        m.reconciled("replicaset", true);
        m.reconciled("replicaset", false);
        m.set_leader(true);
        let text = m.render();
        assert!(text.contains(
            "skiff_controller_reconcile_total{controller=\"replicaset\",result=\"success\"} 2"
        ));
        assert!(text.contains("result=\"error\"} 1"));
        assert!(text.contains("leader_election_master_status{name=\"kube-controller-manager\"} 1"));
    }
}
