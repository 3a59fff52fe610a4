//! containerd through its gRPC API: the calls the kubelet makes, each with the
//! namespace header (and a lease header where content or snapshots are made).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::snapshots::{
    snapshots_client::SnapshotsClient, CommitSnapshotRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, ViewSnapshotRequest,
};
use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    images_client::ImagesClient, leases_client::LeasesClient, tasks_client::TasksClient,
    version_client::VersionClient, ApplyRequest, Container, CreateContainerRequest,
    CreateImageRequest, CreateRequest as CreateLeaseRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteProcessRequest, DeleteRequest as DeleteLeaseRequest,
    DeleteTaskRequest, ExecProcessRequest, GetImageRequest, GetRequest as GetTaskRequest, Image,
    InfoRequest, KillRequest, ListContainersRequest, ListImagesRequest, ReadContentRequest,
    StartRequest, UpdateImageRequest, WaitRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::{Descriptor, Mount};
use futures::StreamExt;
use tonic::transport::Channel;
use tonic::Request;

use crate::users::{self, ImageUsers};

/// The FIFOs of a task's process, and whether it runs on a terminal (whose one stream
/// is stdout).
#[derive(Clone, Copy, Debug)]
pub struct TaskIo<'a> {
    /// Input, for containers with `stdin: true`.
    pub stdin: Option<&'a Path>,
    /// Output (and, on a terminal, everything).
    pub stdout: &'a Path,
    /// Errors, unless on a terminal.
    pub stderr: Option<&'a Path>,
    /// A terminal (`tty: true`).
    pub terminal: bool,
}
use crate::{Error, Result};

/// The snapshotter every image and container uses.
pub const SNAPSHOTTER: &str = "overlayfs";

/// Labels the kubelet puts on its containers, with Kubernetes' names.
pub mod labels {
    /// The pod's uid.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The pod's name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The container's name in the pod spec.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// How many times the container was restarted before this one.
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
}

/// A process's exit as containerd reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit code (128 + signal for a killed process).
    pub code: u32,
    /// When it exited.
    pub at: Option<jiff::Timestamp>,
}

/// A connection to containerd, scoped to one namespace.
#[derive(Clone)]
pub struct Runtime {
    channel: Channel,
    namespace: String,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn call(op: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |source| Error::Containerd { op, source }
}

impl Runtime {
    /// Connects to containerd's socket. The connection is lazy in tonic's sense: a
    /// containerd that restarts is reconnected to on the next call.
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Runtime> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|source| Error::Connect {
                    path: socket.to_path_buf(),
                    source,
                })?;
        if namespace.is_empty()
            || !namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(Error::Config(format!(
                "--containerd-namespace {namespace:?}: letters, digits, . _ - only"
            )));
        }
        Ok(Runtime {
            channel,
            namespace: namespace.to_string(),
        })
    }

    /// The containerd namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn req<T>(&self, msg: T) -> Request<T> {
        self.req_lease(msg, None)
    }

    pub(crate) fn req_lease<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(msg);
        // The namespace was validated in connect(), so it is a valid header value.
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", v);
        }
        if let Some(Ok(v)) = lease.map(str::parse) {
            req.metadata_mut().insert("containerd-lease", v);
        }
        req
    }

    pub(crate) fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    pub(crate) fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// containerd's version, e.g. `1.6.20~ds1`: the liveness check of the runtime.
    pub async fn version(&self) -> Result<String> {
        let v = VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(call("Version"))?;
        Ok(v.into_inner().version)
    }

    /// Creates a lease that protects content and snapshots made under it from
    /// containerd's garbage collector until it is deleted (or expires after an hour,
    /// should the kubelet die holding it).
    pub async fn create_lease(&self, id: &str) -> Result<()> {
        let mut labels = HashMap::new();
        let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        labels.insert("containerd.io/gc.expire".to_string(), expire.to_string());
        LeasesClient::new(self.channel.clone())
            .create(self.req(CreateLeaseRequest {
                id: id.to_string(),
                labels,
            }))
            .await
            .map_err(call("Leases.Create"))?;
        Ok(())
    }

    /// Deletes a lease; what it protected is collected unless referenced elsewhere.
    pub async fn delete_lease(&self, id: &str) -> Result<()> {
        match LeasesClient::new(self.channel.clone())
            .delete(self.req(DeleteLeaseRequest {
                id: id.to_string(),
                sync: false,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(call("Leases.Delete")(s)),
        }
    }

    /// Whether the content store has a blob.
    pub async fn content_exists(&self, digest: &str) -> Result<bool> {
        match self
            .content()
            .info(self.req(InfoRequest {
                digest: digest.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(call("Content.Info")(s)),
        }
    }

    /// Reads a whole blob (manifests and configs: small).
    pub async fn read_content(&self, digest: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .content()
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(call("Content.Read"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.map_err(call("Content.Read"))?.data);
        }
        Ok(out)
    }

    /// Writes a blob into the content store from a stream of chunks, verified against
    /// `digest` and `size` by containerd on commit. `labels` are set on the blob (the
    /// garbage collector's references to its children).
    pub async fn write_content<S>(
        &self,
        lease: &str,
        digest: &str,
        size: i64,
        labels: HashMap<String, String>,
        mut chunks: S,
    ) -> Result<()>
    where
        S: futures::Stream<Item = Result<bytes_like::Bytes>> + Unpin + Send + 'static,
    {
        let reference = format!("skiff-{}-{}", digest, rand::random::<u32>());
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        let (err_tx, mut err_rx) = tokio::sync::oneshot::channel::<Error>();
        let expected = digest.to_string();
        let producer_ref = reference.clone();
        tokio::spawn(async move {
            let mut offset = 0i64;
            while let Some(chunk) = chunks.next().await {
                let data = match chunk {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = err_tx.send(e);
                        return;
                    }
                };
                let len = data.len() as i64;
                let msg = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: producer_ref.clone(),
                    total: size,
                    expected: expected.clone(),
                    offset,
                    data: data.to_vec(),
                    labels: HashMap::new(),
                };
                offset += len;
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            let _ = tx
                .send(WriteContentRequest {
                    action: WriteAction::Commit as i32,
                    r#ref: producer_ref,
                    total: size,
                    expected,
                    offset,
                    data: Vec::new(),
                    labels,
                })
                .await;
        });
        let result = async {
            let mut responses = self
                .content()
                .write(self.req_lease(tokio_stream::wrappers::ReceiverStream::new(rx), Some(lease)))
                .await
                .map_err(call("Content.Write"))?
                .into_inner();
            while let Some(r) = responses.next().await {
                let r = r.map_err(call("Content.Write"))?;
                if r.action == WriteAction::Commit as i32 {
                    return Ok(());
                }
            }
            Err(Error::Image {
                image: digest.to_string(),
                message: "the content store closed the write before it was committed".into(),
            })
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => {
                // What was written so far goes either way: on a full disk it is what
                // fills it.
                let _ =
                    self.content()
                        .abort(self.req(containerd_client::services::v1::AbortRequest {
                            r#ref: reference,
                        }))
                        .await;
                // A failure of the source (the registry) is the real cause.
                Err(err_rx.try_recv().unwrap_or(e))
            }
        }
    }

    /// Sets labels on an existing blob (keeps what else is set).
    pub async fn label_content(&self, digest: &str, labels: HashMap<String, String>) -> Result<()> {
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.content()
            .update(self.req(containerd_client::services::v1::UpdateRequest {
                info: Some(containerd_client::services::v1::Info {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .map_err(call("Content.Update"))?;
        Ok(())
    }

    /// Whether a snapshot exists.
    pub async fn snapshot_exists(&self, key: &str) -> Result<bool> {
        match SnapshotsClient::new(self.channel.clone())
            .stat(self.req(StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(call("Snapshots.Stat")(s)),
        }
    }

    /// Prepares an active snapshot on `parent` and returns its mounts.
    pub async fn prepare_snapshot(
        &self,
        key: &str,
        parent: &str,
        lease: Option<&str>,
    ) -> Result<Vec<Mount>> {
        let r = SnapshotsClient::new(self.channel.clone())
            .prepare(self.req_lease(
                PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.to_string(),
                    parent: parent.to_string(),
                    labels: HashMap::new(),
                },
                lease,
            ))
            .await
            .map_err(call("Snapshots.Prepare"))?;
        Ok(r.into_inner().mounts)
    }

    /// Commits an active snapshot under `name`.
    pub async fn commit_snapshot(&self, name: &str, key: &str, lease: &str) -> Result<()> {
        SnapshotsClient::new(self.channel.clone())
            .commit(self.req_lease(
                CommitSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    name: name.to_string(),
                    key: key.to_string(),
                    labels: HashMap::new(),
                },
                Some(lease),
            ))
            .await
            .map_err(call("Snapshots.Commit"))?;
        Ok(())
    }

    /// The users and groups of the image whose top layer is `chain_id`: its
    /// /etc/passwd and /etc/group, read through a read-only view of its layers (under a
    /// lease of its own, removed at once) without mounting anything.
    pub async fn image_users(&self, chain_id: &str) -> Result<ImageUsers> {
        let key = format!("skiff-users-{:016x}", rand::random::<u64>());
        self.create_lease(&key).await?;
        let result = async {
            let mounts = SnapshotsClient::new(self.channel.clone())
                .view(self.req_lease(
                    ViewSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: key.clone(),
                        parent: chain_id.to_string(),
                        labels: HashMap::new(),
                    },
                    Some(&key),
                ))
                .await
                .map_err(call("Snapshots.View"))?
                .into_inner()
                .mounts;
            let mounts: Vec<(String, String, Vec<String>)> = mounts
                .into_iter()
                .map(|m| (m.r#type, m.source, m.options))
                .collect();
            let dirs = users::layer_dirs(&mounts);
            // Plain file reads, kept off the runtime's worker threads.
            let (passwd, group) = tokio::task::spawn_blocking(move || {
                let read = |f: &str| users::read_in_layers(&dirs, Path::new(f)).unwrap_or_default();
                (read("etc/passwd"), read("etc/group"))
            })
            .await
            .unwrap_or_default();
            Ok(ImageUsers::parse(&passwd, &group))
        }
        .await;
        let _ = self.remove_snapshot(&key).await;
        let _ = self.delete_lease(&key).await;
        result
    }

    /// Removes a snapshot; a missing one is not an error.
    pub async fn remove_snapshot(&self, key: &str) -> Result<()> {
        match SnapshotsClient::new(self.channel.clone())
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(call("Snapshots.Remove")(s)),
        }
    }

    /// Applies a layer blob onto mounts with the Diff service.
    pub async fn apply_layer(&self, layer: Descriptor, mounts: Vec<Mount>) -> Result<Descriptor> {
        let r = DiffClient::new(self.channel.clone())
            .apply(self.req(ApplyRequest {
                diff: Some(layer),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            }))
            .await
            .map_err(call("Diff.Apply"))?;
        r.into_inner().applied.ok_or_else(|| Error::Image {
            image: String::new(),
            message: "Diff.Apply answered without a descriptor".into(),
        })
    }

    /// The image record named `name`, if any.
    pub async fn get_image(&self, name: &str) -> Result<Option<Image>> {
        match ImagesClient::new(self.channel.clone())
            .get(self.req(GetImageRequest {
                name: name.to_string(),
            }))
            .await
        {
            Ok(r) => Ok(r.into_inner().image),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(call("Images.Get")(s)),
        }
    }

    /// Every image record of the namespace.
    pub async fn list_images(&self) -> Result<Vec<Image>> {
        let r = ImagesClient::new(self.channel.clone())
            .list(self.req(ListImagesRequest {
                filters: Vec::new(),
            }))
            .await
            .map_err(call("Images.List"))?;
        Ok(r.into_inner().images)
    }

    /// Creates (or points an existing one at a new target) the image record `name`.
    pub async fn put_image(&self, name: &str, target: Descriptor) -> Result<()> {
        let image = Image {
            name: name.to_string(),
            target: Some(target),
            ..Default::default()
        };
        let mut images = ImagesClient::new(self.channel.clone());
        match images
            .create(self.req(CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                images
                    .update(self.req(UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".into()],
                        }),
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(call("Images.Update"))?;
                Ok(())
            }
            Err(s) => Err(call("Images.Create")(s)),
        }
    }

    /// Creates a container record.
    pub async fn create_container(
        &self,
        id: &str,
        image: &str,
        spec: &serde_json::Value,
        snapshot_key: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        let spec = prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: serde_json::to_vec(spec).map_err(|e| Error::Spec(e.to_string()))?,
        };
        ContainersClient::new(self.channel.clone())
            .create(self.req(CreateContainerRequest {
                container: Some(Container {
                    id: id.to_string(),
                    labels,
                    image: image.to_string(),
                    runtime: Some(ContainerRuntime {
                        name: "io.containerd.runc.v2".into(),
                        options: None,
                    }),
                    spec: Some(spec),
                    snapshotter: SNAPSHOTTER.into(),
                    snapshot_key: snapshot_key.to_string(),
                    ..Default::default()
                }),
            }))
            .await
            .map_err(call("Containers.Create"))?;
        Ok(())
    }

    /// Every container of the namespace whose labels match `filter` (containerd's
    /// filter syntax, e.g. `labels."io.kubernetes.pod.uid"==UID`).
    pub async fn list_containers(&self, filter: Option<String>) -> Result<Vec<Container>> {
        let r = ContainersClient::new(self.channel.clone())
            .list(self.req(ListContainersRequest {
                filters: filter.into_iter().collect(),
            }))
            .await
            .map_err(call("Containers.List"))?;
        Ok(r.into_inner().containers)
    }

    /// Deletes a container record; a missing one is not an error.
    pub async fn delete_container(&self, id: &str) -> Result<()> {
        match ContainersClient::new(self.channel.clone())
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(call("Containers.Delete")(s)),
        }
    }

    /// Creates the task (the process, not yet started) of a container; its stdout and
    /// stderr go to the FIFOs `stdout` and `stderr` (made by the caller).
    pub async fn create_task(&self, id: &str, rootfs: Vec<Mount>, io: TaskIo<'_>) -> Result<u32> {
        let path = |p: Option<&Path>| p.map(|p| p.display().to_string()).unwrap_or_default();
        let r = TasksClient::new(self.channel.clone())
            .create(self.req(CreateTaskRequest {
                container_id: id.to_string(),
                rootfs,
                stdin: path(io.stdin),
                stdout: io.stdout.display().to_string(),
                stderr: path(io.stderr),
                terminal: io.terminal,
                checkpoint: None,
                options: None,
                runtime_path: String::new(),
            }))
            .await
            .map_err(call("Tasks.Create"))?;
        Ok(r.into_inner().pid)
    }

    /// Starts a created task.
    pub async fn start_task(&self, id: &str) -> Result<()> {
        TasksClient::new(self.channel.clone())
            .start(self.req(StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(call("Tasks.Start"))?;
        Ok(())
    }

    /// Waits for a task to exit.
    pub async fn wait_task(&self, id: &str) -> Result<Exit> {
        let r = TasksClient::new(self.channel.clone())
            .wait(self.req(WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(call("Tasks.Wait"))?
            .into_inner();
        Ok(Exit {
            code: r.exit_status,
            at: r.exited_at.and_then(timestamp),
        })
    }

    /// The task's state: `None` when there is no task, else whether it runs and, when
    /// stopped, its exit.
    pub async fn task_state(&self, id: &str) -> Result<Option<(bool, Exit)>> {
        match TasksClient::new(self.channel.clone())
            .get(self.req(GetTaskRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
        {
            Ok(r) => {
                let Some(p) = r.into_inner().process else {
                    return Ok(None);
                };
                use containerd_client::types::v1::Status;
                let running = matches!(
                    Status::try_from(p.status),
                    Ok(Status::Running | Status::Created | Status::Paused | Status::Pausing)
                );
                Ok(Some((
                    running,
                    Exit {
                        code: p.exit_status,
                        at: p.exited_at.and_then(timestamp),
                    },
                )))
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(call("Tasks.Get")(s)),
        }
    }

    /// Sends a signal to every process of a task.
    pub async fn kill_task(&self, id: &str, signal: u32) -> Result<()> {
        match TasksClient::new(self.channel.clone())
            .kill(self.req(KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal,
                all: true,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(call("Tasks.Kill")(s)),
        }
    }

    /// Runs `process` (an OCI process spec) in a running container and returns its exit
    /// code; past `timeout` the process is killed and `None` returned. Its output is
    /// not kept.
    pub async fn exec_sync(
        &self,
        id: &str,
        process: &serde_json::Value,
        timeout: std::time::Duration,
    ) -> Result<Option<u32>> {
        let exec_id = format!("skiff-{:016x}", rand::random::<u64>());
        let spec = prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(process).map_err(|e| Error::Spec(e.to_string()))?,
        };
        let mut tasks = TasksClient::new(self.channel.clone());
        tasks
            .exec(self.req(ExecProcessRequest {
                container_id: id.to_string(),
                stdin: String::new(),
                stdout: String::new(),
                stderr: String::new(),
                terminal: false,
                spec: Some(spec),
                exec_id: exec_id.clone(),
            }))
            .await
            .map_err(call("Tasks.Exec"))?;
        let result = async {
            tasks
                .start(self.req(StartRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                }))
                .await
                .map_err(call("Tasks.Start"))?;
            let mut waiter = tasks.clone();
            let wait = waiter.wait(self.req(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.clone(),
            }));
            match tokio::time::timeout(timeout, wait).await {
                Ok(r) => Ok(Some(
                    r.map_err(call("Tasks.Wait"))?.into_inner().exit_status,
                )),
                Err(_) => {
                    let _ = tasks
                        .kill(self.req(KillRequest {
                            container_id: id.to_string(),
                            exec_id: exec_id.clone(),
                            signal: libc::SIGKILL as u32,
                            all: false,
                        }))
                        .await;
                    let mut waiter = tasks.clone();
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        waiter.wait(self.req(WaitRequest {
                            container_id: id.to_string(),
                            exec_id: exec_id.clone(),
                        })),
                    )
                    .await;
                    Ok(None)
                }
            }
        }
        .await;
        let _ = tasks
            .delete_process(self.req(DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id,
            }))
            .await;
        result
    }

    /// Deletes a stopped task; a missing one is not an error.
    pub async fn delete_task(&self, id: &str) -> Result<()> {
        match TasksClient::new(self.channel.clone())
            .delete(self.req(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(call("Tasks.Delete")(s)),
        }
    }
}

fn timestamp(t: prost_types::Timestamp) -> Option<jiff::Timestamp> {
    // containerd reports the zero time (year 1) for "not yet".
    if t.seconds <= 0 {
        return None;
    }
    jiff::Timestamp::new(t.seconds, t.nanos).ok()
}

/// Byte chunks for [`Runtime::write_content`].
pub mod bytes_like {
    /// A chunk of a blob.
    pub type Bytes = Vec<u8>;
}

/// Where a pod's files live under `--root-dir`.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}
