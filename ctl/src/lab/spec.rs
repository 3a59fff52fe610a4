//! What a lab is made of: its machines, their addresses and the names of everything the
//! lab creates on the host. Pure: `lab up` makes these, `lab down` removes exactly these.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Store member counts a lab may have: odd, so that a majority survives a loss.
pub const MEMBER_COUNTS: [usize; 4] = [1, 3, 5, 7];

/// The most workers a lab's /24 leaves room for (addresses .21 to .99).
pub const MAX_WORKERS: usize = 79;

/// The API port of every apiserver and of the host's control-plane endpoint.
pub const API_PORT: u16 = 6443;

/// The registry's port on the host's bridge address.
pub const REGISTRY_PORT: u16 = 5000;

/// A machine's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// store + apiserver + scheduler + controller-manager.
    ControlPlane,
    /// kubelet + netd.
    Worker,
}

impl Role {
    /// As `machine-setup.sh --role` and `lab status` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

/// One machine of the lab: a network namespace with one veth into the lab's bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// `cp1`, `w2`: also its Node name and its store member name.
    pub name: String,
    /// Its job.
    pub role: Role,
    /// Its address on the lab's bridge.
    pub ip: Ipv4Addr,
    /// The network namespace (`ip netns` name).
    pub netns: String,
    /// The host end of its veth, enslaved to the bridge (`cut` takes it down).
    pub host_veth: String,
    /// Workers' containerd namespace.
    pub containerd_namespace: String,
}

/// A whole lab, as `lab up` was asked for it; saved in `<dir>/lab.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    /// The lab's name (`lab` unless `--name`): prefixes everything it creates.
    pub name: String,
    /// Where its configuration, data and logs live.
    pub dir: PathBuf,
    /// The bridge joining the machines.
    pub bridge: String,
    /// The host's address on the bridge: the control-plane endpoint and the registry.
    pub host_ip: Ipv4Addr,
    /// Control planes first, then workers.
    pub machines: Vec<Machine>,
    /// The test image archives the kubelets import.
    pub image_dir: PathBuf,
    /// The registry's storage (docker-registry's filesystem driver), if any.
    pub registry_dir: Option<PathBuf>,
    /// The `skiff` binary the supervisor runs.
    pub skiff_binary: PathBuf,
    /// The node controller's grace period (shorter than Kubernetes' 40 s).
    pub node_monitor_grace_period: String,
    /// How long pods tolerate a lost node (shorter than Kubernetes' 300 s).
    pub toleration_seconds: u32,
}

/// What `lab up` was asked for.
#[derive(Clone, Debug)]
pub struct Request {
    /// `--name`.
    pub name: String,
    /// `--members`.
    pub members: usize,
    /// `--workers`.
    pub workers: usize,
    /// `--subnet`: the bridge's /24, e.g. 10.77.0.0.
    pub subnet: Ipv4Addr,
    /// `--dir` (default `/var/lib/skiff/lab/<name>`).
    pub dir: Option<PathBuf>,
    /// `--image-dir`.
    pub image_dir: PathBuf,
    /// The registry's storage, when the test images were built.
    pub registry_dir: Option<PathBuf>,
    /// The `skiff` binary.
    pub skiff_binary: PathBuf,
}

/// Why a lab cannot be made as asked.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `--members` is not 1, 3, 5 or 7.
    #[error("--members {0}: a lab's store has 1, 3, 5 or 7 members (odd, so a majority survives losing some)")]
    Members(usize),
    /// `--workers` is 0 or too many.
    #[error("--workers {0}: give between 1 and {MAX_WORKERS} workers")]
    Workers(usize),
    /// `--name` has characters interface names cannot hold, or is too long.
    #[error("--name {0:?}: use 1 to 8 lowercase letters and digits, starting with a letter (it prefixes interface names, which hold 15 characters)")]
    Name(String),
    /// `--subnet` is not a /24 network address.
    #[error("--subnet {0}: give the network address of a /24, such as 10.77.0.0")]
    Subnet(Ipv4Addr),
}

/// The name of the kubeconfig context, cluster and user of lab `name`.
pub fn context_name(name: &str) -> String {
    format!("skiff-{name}")
}

/// The default directory of lab `name`.
pub fn default_dir(name: &str) -> PathBuf {
    PathBuf::from("/var/lib/skiff/lab").join(name)
}

/// Checks a lab name: it prefixes netns and interface names.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 8
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(SpecError::Name(name.to_string()))
    }
}

impl LabSpec {
    /// The lab `request` describes.
    pub fn new(request: &Request) -> Result<LabSpec, SpecError> {
        check_name(&request.name)?;
        if !MEMBER_COUNTS.contains(&request.members) {
            return Err(SpecError::Members(request.members));
        }
        if request.workers == 0 || request.workers > MAX_WORKERS {
            return Err(SpecError::Workers(request.workers));
        }
        let [a, b, c, d] = request.subnet.octets();
        if d != 0 {
            return Err(SpecError::Subnet(request.subnet));
        }
        let name = &request.name;
        let at = |host: u8| Ipv4Addr::new(a, b, c, host);
        let machine = |machine: String, role: Role, ip: Ipv4Addr| Machine {
            netns: format!("skiff-{name}-{machine}"),
            host_veth: format!("sk{name}-{machine}"),
            containerd_namespace: format!("skiff-{name}-{machine}"),
            name: machine,
            role,
            ip,
        };
        let mut machines = Vec::new();
        for i in 1..=request.members {
            machines.push(machine(
                format!("cp{i}"),
                Role::ControlPlane,
                at(10 + i as u8),
            ));
        }
        for i in 1..=request.workers {
            machines.push(machine(format!("w{i}"), Role::Worker, at(20 + i as u8)));
        }
        Ok(LabSpec {
            name: name.clone(),
            dir: request.dir.clone().unwrap_or_else(|| default_dir(name)),
            bridge: format!("sk{name}"),
            host_ip: at(1),
            machines,
            image_dir: request.image_dir.clone(),
            registry_dir: request.registry_dir.clone(),
            skiff_binary: request.skiff_binary.clone(),
            node_monitor_grace_period: "20s".into(),
            toleration_seconds: 30,
        })
    }

    /// The control-plane endpoint: the host's relay to every apiserver.
    pub fn api_server(&self) -> String {
        format!("http://{}:{API_PORT}", self.host_ip)
    }

    /// The registry on the host's bridge address.
    pub fn registry(&self) -> String {
        format!("{}:{REGISTRY_PORT}", self.host_ip)
    }

    /// The machines that run the store.
    pub fn control_planes(&self) -> impl Iterator<Item = &Machine> {
        self.machines
            .iter()
            .filter(|m| m.role == Role::ControlPlane)
    }

    /// The machines that run pods.
    pub fn workers(&self) -> impl Iterator<Item = &Machine> {
        self.machines.iter().filter(|m| m.role == Role::Worker)
    }

    /// A machine by name.
    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// `cp1=10.77.0.11,cp2=…`: the store members for `machine-setup.sh --members`.
    pub fn members_flag(&self) -> String {
        self.control_planes()
            .map(|m| format!("{}={}", m.name, m.ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The store members as HOST:PORT. Without a scheme because etcdctl 3.4's
    /// `endpoint status` dials an endpoint with its scheme as the HTTP/2 authority
    /// (`http://…`), which skiff's HTTP/2 server refuses as malformed; every other call
    /// strips the scheme.
    pub fn store_endpoints(&self) -> Vec<String> {
        self.control_planes()
            .map(|m| format!("{}:2379", m.ip))
            .collect()
    }

    /// Where a machine's configuration goes (`--etc` of machine-setup.sh).
    pub fn etc_dir(&self, machine: &Machine) -> PathBuf {
        self.dir.join(&machine.name).join("etc")
    }

    /// Where a machine's state goes (`--data`).
    pub fn data_dir(&self, machine: &Machine) -> PathBuf {
        self.dir.join(&machine.name).join("data")
    }

    /// Where a machine's daemons log, one file each.
    pub fn log_dir(&self, machine_name: &str) -> PathBuf {
        self.dir.join(machine_name).join("logs")
    }

    /// The supervisor's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("supervisor.sock")
    }

    /// The arguments of `machine-setup.sh` for `machine`.
    pub fn setup_args(&self, machine: &Machine) -> Vec<String> {
        let mut args = vec![
            "--role".to_string(),
            machine.role.as_str().into(),
            "--name".into(),
            machine.name.clone(),
            "--ip".into(),
            machine.ip.to_string(),
            "--members".into(),
            self.members_flag(),
            "--api-server".into(),
            self.api_server(),
            "--etc".into(),
            self.etc_dir(machine).display().to_string(),
            "--data".into(),
            self.data_dir(machine).display().to_string(),
            "--containerd-namespace".into(),
            machine.containerd_namespace.clone(),
            "--node-monitor-grace-period".into(),
            self.node_monitor_grace_period.clone(),
            "--toleration-seconds".into(),
            self.toleration_seconds.to_string(),
        ];
        if machine.role == Role::Worker {
            args.push("--image-dir".into());
            args.push(self.image_dir.display().to_string());
            if self.registry_dir.is_some() {
                args.push("--registry".into());
                args.push(self.registry());
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(members: usize, workers: usize) -> Request {
        Request {
            name: "lab".into(),
            members,
            workers,
            subnet: Ipv4Addr::new(10, 77, 0, 0),
            dir: None,
            image_dir: "/images".into(),
            registry_dir: None,
            skiff_binary: "/bin/skiff".into(),
        }
    }

    #[test]
    fn machines_are_named_and_addressed_in_order() {
        let lab = LabSpec::new(&request(3, 2)).unwrap();
        let names: Vec<_> = lab.machines.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["cp1", "cp2", "cp3", "w1", "w2"]);
        assert_eq!(lab.machine("cp2").unwrap().ip, Ipv4Addr::new(10, 77, 0, 12));
        assert_eq!(lab.machine("w1").unwrap().ip, Ipv4Addr::new(10, 77, 0, 21));
        assert_eq!(
            lab.members_flag(),
            "cp1=10.77.0.11,cp2=10.77.0.12,cp3=10.77.0.13"
        );
        assert_eq!(lab.api_server(), "http://10.77.0.1:6443");
        assert_eq!(lab.dir, PathBuf::from("/var/lib/skiff/lab/lab"));
        assert_eq!(lab.workers().count(), 2);
    }

    #[test]
    fn interface_names_fit_in_fifteen_characters() {
        let mut r = request(7, MAX_WORKERS);
        r.name = "abcdefgh".into();
        let lab = LabSpec::new(&r).unwrap();
        assert!(lab.bridge.len() <= 15);
        for m in &lab.machines {
            assert!(m.host_veth.len() <= 15, "{} is too long", m.host_veth);
        }
        assert_eq!(
            lab.machines.last().unwrap().ip,
            Ipv4Addr::new(10, 77, 0, 99)
        );
    }

    #[test]
    fn bad_requests_name_the_flag() {
        assert_eq!(LabSpec::new(&request(2, 2)), Err(SpecError::Members(2)));
        assert_eq!(LabSpec::new(&request(3, 0)), Err(SpecError::Workers(0)));
        assert_eq!(LabSpec::new(&request(3, 80)), Err(SpecError::Workers(80)));
        let mut r = request(3, 2);
        r.subnet = Ipv4Addr::new(10, 77, 0, 5);
        assert!(LabSpec::new(&r)
            .unwrap_err()
            .to_string()
            .contains("--subnet"));
        for bad in ["", "Lab", "9lab", "lab-1", "abcdefghi"] {
            r = request(3, 2);
            r.name = bad.into();
            assert_eq!(
                LabSpec::new(&r),
                Err(SpecError::Name(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn workers_get_the_image_dir_and_their_containerd_namespace() {
        let lab = LabSpec::new(&request(1, 1)).unwrap();
        let w1 = lab.machine("w1").unwrap();
        let args = lab.setup_args(w1);
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(after("--image-dir"), "/images");
        assert_eq!(after("--containerd-namespace"), "skiff-lab-w1");
        assert_eq!(after("--etc"), "/var/lib/skiff/lab/lab/w1/etc");
        let cp1 = lab.machine("cp1").unwrap();
        assert!(!lab.setup_args(cp1).contains(&"--image-dir".to_string()));
    }
}
