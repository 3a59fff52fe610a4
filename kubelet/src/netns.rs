//! A pod's network, IPC and UTS namespaces, created by the kubelet and pinned by bind
//! mounts (as CNI's `ns` package and `ip netns` do), so that they outlive any process
//! and every container of the pod joins the same ones.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::{Error, Result};

/// Which namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Network.
    Net,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname.
    Uts,
}

impl Kind {
    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }

    fn proc_name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
        }
    }
}

/// Whether `path` is a pinned namespace (a bind mount of an nsfs file).
pub fn is_pinned(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = path.display().to_string();
    mounts.lines().any(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        fields.get(4) == Some(&target.as_str()) && l.contains(" - nsfs ")
    })
}

/// Creates a new namespace of `kind` pinned at `path`; for UTS, with `hostname` set.
/// A namespace already pinned there is kept.
pub fn create(kind: Kind, path: &Path, hostname: Option<&str>) -> Result<()> {
    if is_pinned(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    }
    std::fs::File::create(path).map_err(|e| Error::io("creating", path, e))?;
    let target = path.to_path_buf();
    let hostname = hostname.map(str::to_string);
    // unshare moves only the calling thread; a thread of our own (never a pooled one)
    // is moved, pins its namespace and ends.
    let joined = std::thread::spawn(move || -> std::result::Result<(), String> {
        unshare(kind.flag()).map_err(|e| format!("unshare: {e}"))?;
        if let Some(h) = hostname {
            nix::unistd::sethostname(h).map_err(|e| format!("sethostname: {e}"))?;
        }
        let source = format!(
            "/proc/self/task/{}/ns/{}",
            nix::unistd::gettid(),
            kind.proc_name()
        );
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind mount {source}: {e}"))
    })
    .join();
    let outcome = match joined {
        Ok(r) => r,
        Err(_) => Err("the namespace thread panicked".to_string()),
    };
    outcome.map_err(|message| {
        let _ = std::fs::remove_file(path);
        Error::io("creating namespace", path, std::io::Error::other(message))
    })
}

/// Unpins and removes a namespace file; a missing one is not an error.
pub fn remove(path: &Path) -> Result<()> {
    if is_pinned(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| Error::io("unmounting", path, std::io::Error::from(e)))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// The pinned namespace files of a pod.
#[derive(Clone, Debug)]
pub struct PodNamespacePaths {
    /// `<pod dir>/ns/net`. Not under /run/netns: `ip netns` bind-mounts that directory
    /// onto itself the first time it is used, hiding namespaces pinned there before.
    pub net: PathBuf,
    /// `<pod dir>/ns/ipc`.
    pub ipc: PathBuf,
    /// `<pod dir>/ns/uts`.
    pub uts: PathBuf,
}

impl PodNamespacePaths {
    /// The paths for a pod.
    pub fn new(pod_dir: &Path) -> Self {
        PodNamespacePaths {
            net: pod_dir.join("ns").join("net"),
            ipc: pod_dir.join("ns").join("ipc"),
            uts: pod_dir.join("ns").join("uts"),
        }
    }
}
