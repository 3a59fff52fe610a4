//! Probes (liveness, readiness, startup) and the actions of lifecycle hooks
//! (postStart, preStop): exec in the container, HTTP GET and TCP connect to the pod.
//!
//! [`Timing`], [`Tracker`] and the translation of the API's handlers into an
//! [`Action`] are pure and unit-tested; [`Action::run`] and [`prober`] do the I/O.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::runtime::Runtime;
use crate::{Error, Result};

/// A probe's timing fields with Kubernetes' defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// initialDelaySeconds (0).
    pub initial_delay: Duration,
    /// periodSeconds (10).
    pub period: Duration,
    /// timeoutSeconds (1).
    pub timeout: Duration,
    /// successThreshold (1).
    pub success_threshold: u32,
    /// failureThreshold (3).
    pub failure_threshold: u32,
}

impl Timing {
    /// The timing of `probe`; zero or negative values take the default, as the API
    /// server's defaulting would.
    pub fn of(probe: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(
                v.and_then(|v| u64::try_from(v).ok())
                    .filter(|v| *v >= min)
                    .unwrap_or(default),
            )
        };
        let count = |v: Option<i32>, default: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v >= 1)
                .unwrap_or(default)
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// Counts consecutive results and flips the verdict at the thresholds.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    successes: u32,
    failures: u32,
    verdict: Option<bool>,
}

impl Tracker {
    /// Records one result; returns the new verdict when it changes.
    pub fn record(&mut self, ok: bool, timing: &Timing) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let verdict = if self.successes >= timing.success_threshold {
            Some(true)
        } else if self.failures >= timing.failure_threshold {
            Some(false)
        } else {
            None
        };
        match verdict {
            Some(v) if self.verdict != Some(v) => {
                self.verdict = Some(v);
                Some(v)
            }
            _ => None,
        }
    }
}

/// What a probe or hook does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Runs a command in the container; exit 0 is success.
    Exec(Vec<String>),
    /// GETs a URL; a status from 200 to 399 is success.
    Http {
        /// host (the pod IP when empty).
        host: Option<String>,
        /// The port number.
        port: u16,
        /// The path, starting with '/'.
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// Opens a TCP connection.
    Tcp {
        /// host (the pod IP when empty).
        host: Option<String>,
        /// The port number.
        port: u16,
    },
    /// Sleeps (a hook's `sleep` action).
    Sleep(Duration),
}

fn port_of(port: &IntOrString, container: &Container) -> Result<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Spec(format!("port {n} is out of range"))),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    Error::Spec(format!(
                        "container {:?} has no port named {name:?}",
                        container.name
                    ))
                })
        }
    }
}

fn exec_action(e: &ExecAction) -> Result<Action> {
    let command = e.command.clone().unwrap_or_default();
    if command.is_empty() {
        return Err(Error::Spec("exec action without a command".into()));
    }
    Ok(Action::Exec(command))
}

fn http_action(h: &HTTPGetAction, container: &Container) -> Result<Action> {
    if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
        return Err(Error::Spec(format!(
            "httpGet scheme {:?}: skiff's kubelet only probes HTTP",
            h.scheme.as_deref().unwrap_or_default()
        )));
    }
    let path = h.path.clone().unwrap_or_default();
    Ok(Action::Http {
        host: h.host.clone().filter(|h| !h.is_empty()),
        port: port_of(&h.port, container)?,
        path: if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        },
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    })
}

fn tcp_action(t: &TCPSocketAction, container: &Container) -> Result<Action> {
    Ok(Action::Tcp {
        host: t.host.clone().filter(|h| !h.is_empty()),
        port: port_of(&t.port, container)?,
    })
}

/// The action of a probe.
pub fn probe_action(probe: &Probe, container: &Container) -> Result<Action> {
    match (&probe.exec, &probe.http_get, &probe.tcp_socket, &probe.grpc) {
        (Some(e), None, None, None) => exec_action(e),
        (None, Some(h), None, None) => http_action(h, container),
        (None, None, Some(t), None) => tcp_action(t, container),
        (None, None, None, Some(_)) => Err(Error::Spec(
            "grpc probes are not supported by skiff's kubelet yet".into(),
        )),
        _ => Err(Error::Spec(
            "a probe needs exactly one of exec, httpGet, tcpSocket".into(),
        )),
    }
}

/// The action of a lifecycle hook.
pub fn hook_action(hook: &LifecycleHandler, container: &Container) -> Result<Action> {
    match (&hook.exec, &hook.http_get, &hook.sleep, &hook.tcp_socket) {
        (Some(e), None, None, None) => exec_action(e),
        (None, Some(h), None, None) => http_action(h, container),
        (None, None, Some(s), None) => Ok(Action::Sleep(Duration::from_secs(
            u64::try_from(s.seconds).unwrap_or(0),
        ))),
        (None, None, None, Some(_)) => Err(Error::Spec(
            "tcpSocket is not a valid lifecycle hook (Kubernetes ignores it); use exec or httpGet"
                .into(),
        )),
        _ => Err(Error::Spec(
            "a hook needs exactly one of exec, httpGet, sleep".into(),
        )),
    }
}

/// Where an action runs: a container and its pod's IP.
#[derive(Clone, Debug)]
pub struct Target {
    /// containerd.
    pub rt: Runtime,
    /// The container's id in containerd.
    pub container_id: String,
    /// The container's OCI process spec (exec runs with its env, user and cwd).
    pub process: serde_json::Value,
    /// The pod's IP.
    pub pod_ip: Option<String>,
}

impl Action {
    /// Runs the action once; `Err` carries why it failed, as the probe's message.
    pub async fn run(&self, target: &Target, timeout: Duration) -> std::result::Result<(), String> {
        let host = |h: &Option<String>| {
            h.clone()
                .or_else(|| target.pod_ip.clone())
                .ok_or_else(|| "the pod has no IP".to_string())
        };
        match self {
            Action::Exec(command) => {
                let mut process = target.process.clone();
                process["args"] = serde_json::json!(command);
                process["terminal"] = serde_json::json!(false);
                match target
                    .rt
                    .exec_sync(&target.container_id, &process, timeout)
                    .await
                {
                    Ok(Some(0)) => Ok(()),
                    Ok(Some(code)) => Err(format!("command {command:?} exited with {code}")),
                    Ok(None) => Err(format!(
                        "command {command:?} timed out after {}s",
                        timeout.as_secs()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            Action::Http {
                host: h,
                port,
                path,
                headers,
            } => {
                let host = host(h)?;
                let authority = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                let url = format!("http://{authority}{path}");
                let client = skiff_client::reqwest_builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut req = client.get(&url).header("User-Agent", "kube-probe/1.33");
                for (k, v) in headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                match req.send().await {
                    Ok(r) if (200..400).contains(&r.status().as_u16()) => Ok(()),
                    Ok(r) => Err(format!(
                        "HTTP probe failed with statuscode: {}",
                        r.status().as_u16()
                    )),
                    Err(e) => Err(format!("Get \"{url}\": {e}")),
                }
            }
            Action::Tcp { host: h, port } => {
                let host = host(h)?;
                let addr = format!("{host}:{port}");
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
                    Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
                }
            }
            Action::Sleep(d) => {
                tokio::time::sleep((*d).min(timeout)).await;
                Ok(())
            }
        }
    }
}

/// What a container's prober tells its pod worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeEvent {
    /// The startup probe succeeded: liveness and readiness probes begin.
    Started,
    /// The readiness verdict changed.
    Ready(bool),
    /// A probe failed (message for the Unhealthy event).
    Unhealthy(String),
    /// The liveness or startup probe failed past its threshold: restart the container.
    Kill(String),
}

/// The probes of one container, resolved.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// startupProbe.
    pub startup: Option<(Action, Timing)>,
    /// livenessProbe.
    pub liveness: Option<(Action, Timing)>,
    /// readinessProbe.
    pub readiness: Option<(Action, Timing)>,
}

impl Probes {
    /// The probes of `container`.
    pub fn of(container: &Container) -> Result<Probes> {
        let one = |p: &Option<Probe>| -> Result<Option<(Action, Timing)>> {
            p.as_ref()
                .map(|p| Ok((probe_action(p, container)?, Timing::of(p))))
                .transpose()
        };
        Ok(Probes {
            startup: one(&container.startup_probe)?,
            liveness: one(&container.liveness_probe)?,
            readiness: one(&container.readiness_probe)?,
        })
    }

    /// Whether there is any probe to run.
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.liveness.is_none() && self.readiness.is_none()
    }
}

/// Runs a container's probes from its start until aborted, reporting through `tx`
/// as `(container name, container id, event)`.
pub async fn prober(
    probes: Probes,
    target: Target,
    name: String,
    tx: mpsc::UnboundedSender<(String, String, crate::pod::ContainerEvent)>,
) {
    let started = Instant::now();
    let id = target.container_id.clone();
    let send = |e: ProbeEvent| {
        let _ = tx.send((
            name.clone(),
            id.clone(),
            crate::pod::ContainerEvent::Probe(e),
        ));
    };
    if let Some((action, timing)) = &probes.startup {
        tokio::time::sleep_until(started + timing.initial_delay).await;
        let mut tracker = Tracker::default();
        loop {
            let r = action.run(&target, timing.timeout).await;
            if let Err(m) = &r {
                send(ProbeEvent::Unhealthy(format!("Startup probe failed: {m}")));
            }
            match tracker.record(r.is_ok(), timing) {
                Some(true) => {
                    send(ProbeEvent::Started);
                    break;
                }
                Some(false) => {
                    send(ProbeEvent::Kill(format!(
                        "Container {name} failed startup probe, will be restarted"
                    )));
                    return;
                }
                None => {}
            }
            tokio::time::sleep(timing.period).await;
        }
    }
    let liveness = async {
        let Some((action, timing)) = &probes.liveness else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(started + timing.initial_delay).await;
        let mut tracker = Tracker::default();
        loop {
            let r = action.run(&target, timing.timeout).await;
            if let Err(m) = &r {
                send(ProbeEvent::Unhealthy(format!("Liveness probe failed: {m}")));
            }
            if tracker.record(r.is_ok(), timing) == Some(false) {
                send(ProbeEvent::Kill(format!(
                    "Container {name} failed liveness probe, will be restarted"
                )));
                return;
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    let readiness = async {
        let Some((action, timing)) = &probes.readiness else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(started + timing.initial_delay).await;
        let mut tracker = Tracker::default();
        loop {
            let r = action.run(&target, timing.timeout).await;
            if let Err(m) = &r {
                send(ProbeEvent::Unhealthy(format!(
                    "Readiness probe failed: {m}"
                )));
            }
            if let Some(v) = tracker.record(r.is_ok(), timing) {
                send(ProbeEvent::Ready(v));
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    // A liveness kill ends the prober; readiness goes with it. A missing probe
    // waits forever rather than ending the other.
    tokio::select! {
        _ = liveness => {}
        _ = readiness => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn timing_defaults() {
        let t = Timing::of(&Probe::default());
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let t = Timing::of(&Probe {
            initial_delay_seconds: Some(2),
            period_seconds: Some(1),
            timeout_seconds: Some(0),
            failure_threshold: Some(1),
            success_threshold: Some(2),
            ..Default::default()
        });
        assert_eq!(t.initial_delay, Duration::from_secs(2));
        assert_eq!(t.period, Duration::from_secs(1));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (2, 1));
    }

    #[test]
    fn tracker_flips_at_thresholds() {
        let timing = Timing {
            success_threshold: 2,
            failure_threshold: 3,
            ..Timing::of(&Probe::default())
        };
        let mut t = Tracker::default();
        assert_eq!(t.record(true, &timing), None);
        assert_eq!(t.record(true, &timing), Some(true));
        assert_eq!(t.record(true, &timing), None);
        assert_eq!(t.record(false, &timing), None);
        assert_eq!(t.record(false, &timing), None);
        // A success in between resets the count.
        assert_eq!(t.record(true, &timing), None);
        assert_eq!(t.record(false, &timing), None);
        assert_eq!(t.record(false, &timing), None);
        assert_eq!(t.record(false, &timing), Some(false));
        assert_eq!(t.record(false, &timing), None);
    }

    #[test]
    fn actions_resolve_named_ports() {
        let container = Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("healthz".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_action(&probe, &container).unwrap(),
            Action::Http {
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: vec![],
            }
        );
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("nope".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(probe_action(&probe, &container).is_err());
        assert!(probe_action(&Probe::default(), &container).is_err());
        let https = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(1),
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(probe_action(&https, &container).is_err());
    }
}
