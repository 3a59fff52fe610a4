//! Images: pulled from a registry over the Registry HTTP API, or imported from OCI
//! archives, into containerd's content store; unpacked with the Diff service onto
//! overlayfs snapshots; named by an image record. containerd 1.6 leaves all of this
//! to its clients.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use containerd_client::types::Descriptor;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::credentials::{Credential, Keyring};
use crate::reference::Reference;
use crate::registries::{Endpoint, RegistryConfig};
use crate::runtime::{Runtime, SNAPSHOTTER};
use crate::{Error, Result};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A descriptor as JSON manifests write it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JsonDescriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Platform, in an index.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

impl JsonDescriptor {
    fn to_proto(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: HashMap::new(),
        }
    }
}

/// An index's platform field.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Platform {
    /// e.g. `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// e.g. `linux`.
    #[serde(default)]
    pub os: String,
}

/// An image index or a manifest, told apart by its fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<JsonDescriptor>>,
    #[serde(default)]
    config: Option<JsonDescriptor>,
    #[serde(default)]
    layers: Vec<JsonDescriptor>,
}

/// The parts of an image config a container is built from.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ImageConfig {
    /// `config` of the image config.
    #[serde(default)]
    pub config: ProcessConfig,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
}

/// The image config's `config` object.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ProcessConfig {
    /// ENTRYPOINT.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// ENV, `KEY=value`.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// WORKDIR.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// USER.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

/// The image config's `rootfs`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct RootFs {
    /// `sha256:…` of each uncompressed layer, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// What a container needs from a local image.
#[derive(Clone, Debug)]
pub struct LocalImage {
    /// The image record's name.
    pub name: String,
    /// `repository@digest`, Kubernetes' imageID.
    pub image_id: String,
    /// Its config.
    pub config: ImageConfig,
    /// The snapshot to prepare container rootfs on.
    pub chain_id: String,
}

/// The chain ID of the top layer (OCI image spec: ChainID(L0) = DiffID(L0),
/// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))), and of each layer.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// The manifest of an index for this machine (linux/amd64).
pub fn select_platform(manifests: &[JsonDescriptor]) -> Option<&JsonDescriptor> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    manifests.iter().find(|m| {
        m.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    })
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn parse_manifest(image: &str, bytes: &[u8]) -> Result<Manifest> {
    serde_json::from_slice(bytes).map_err(|e| Error::Image {
        image: image.to_string(),
        message: format!("manifest is not valid JSON: {e}"),
    })
}

fn media_type_of(m: &Manifest, header: Option<&str>) -> String {
    m.media_type
        .clone()
        .or_else(|| header.map(|h| h.split(';').next().unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| {
            if m.manifests.is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        })
}

fn single<T>(item: T) -> futures::stream::BoxStream<'static, Result<Vec<u8>>>
where
    T: Into<Vec<u8>>,
{
    futures::stream::once(futures::future::ready(Ok(item.into()))).boxed()
}

/// A request's failure with its causes (reqwest's own message hides them), and what to
/// do about an untrusted certificate.
fn transport_error(url: &str, e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if text.contains("certificate") {
        text.push_str(
            " (the registry's certificate is not trusted here: add its CA to the machine's trust store, /usr/local/share/ca-certificates then update-ca-certificates, or set insecure = true for its location in --registry-config)",
        );
    } else if url.starts_with("https://") {
        text.push_str(
            " (if the registry serves plain HTTP, set insecure = true for its location in --registry-config; only loopback registries are plain HTTP without it)",
        );
    }
    text
}

/// Pulls images from registries over the Registry HTTP API.
#[derive(Clone, Debug)]
pub struct Puller {
    /// HTTPS with the machine's trusted certificates (/etc/ssl/certs), and plain HTTP.
    http: reqwest::Client,
    /// HTTPS without certificate checks, for registries configured `insecure = true`.
    http_unverified: reqwest::Client,
    registries: RegistryConfig,
    /// For insecure registries, the base URL found to answer (HTTPS tried first, then
    /// plain HTTP, as containers/image does), by host.
    insecure_bases: Arc<std::sync::Mutex<HashMap<String, String>>>,
}

/// The credentials one pull may offer a registry, and the one it took: blobs are
/// fetched with it at once rather than after another 401 each.
struct PullAuth {
    /// The registry's host, for messages.
    registry: String,
    /// From the pod's imagePullSecrets, most specific key first.
    candidates: Vec<Credential>,
    /// The `Authorization` value the registry accepted.
    accepted: std::sync::Mutex<Option<String>>,
}

impl PullAuth {
    fn accepted(&self) -> Option<String> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn accept(&self, header: String) {
        *self.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(header);
    }
}

/// Whether a request may skip certificate checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    Certificates,
    Skip,
}

impl Puller {
    /// A puller with its own HTTP clients, the per-registry settings of
    /// `--registry-config`, and how long a registry may send nothing.
    pub fn new(registries: RegistryConfig, progress_deadline: Duration) -> Result<Puller> {
        let client = |skip_verify: bool| {
            skiff_client::reqwest_builder()
                .connect_timeout(progress_deadline.min(Duration::from_secs(10)))
                // Per read, so a slow but flowing blob is fine and a silent one is not.
                .read_timeout(progress_deadline)
                .tls_danger_accept_invalid_certs(skip_verify)
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))
        };
        Ok(Puller {
            http: client(false)?,
            http_unverified: client(true)?,
            registries,
            insecure_bases: Arc::default(),
        })
    }

    /// The base URL of an endpoint's registry API and how to check its certificates:
    /// HTTPS with checks normally; plain HTTP on loopback (as Docker treats loopback);
    /// for `insecure = true`, HTTPS without checks if the registry speaks TLS, else
    /// plain HTTP.
    async fn base_for(&self, endpoint: &Endpoint) -> (String, Verify) {
        if !endpoint.insecure {
            return (endpoint.registry_url(), Verify::Certificates);
        }
        let known = self
            .insecure_bases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&endpoint.host)
            .cloned();
        let base = match known {
            Some(base) => base,
            None => {
                let https = format!("https://{}", endpoint.host);
                // Any HTTP answer (401 and 404 included) means TLS works.
                let speaks_tls = self
                    .http_unverified
                    .get(format!("{https}/v2/"))
                    .timeout(std::time::Duration::from_secs(10))
                    .send()
                    .await
                    .is_ok();
                let base = if speaks_tls {
                    https
                } else {
                    format!("http://{}", endpoint.host)
                };
                tracing::info!(registry = %endpoint.host, %base, "insecure registry: chose how to reach it");
                self.insecure_bases
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(endpoint.host.clone(), base.clone());
                base
            }
        };
        (base, Verify::Skip)
    }

    async fn get(
        &self,
        image: &str,
        url: &str,
        accept: &str,
        verify: Verify,
        auth: &PullAuth,
    ) -> Result<reqwest::Response> {
        let err = |message: String| Error::Image {
            image: image.to_string(),
            message,
        };
        let client = match verify {
            Verify::Certificates => &self.http,
            Verify::Skip => &self.http_unverified,
        };
        let send = |authorization: Option<String>| {
            let mut request = client.get(url).header("Accept", accept);
            if let Some(value) = authorization {
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| err(format!("GET {url}: {}", transport_error(url, &e))))
            }
        };
        let accepted = auth.accepted();
        let mut resp = send(accepted.clone()).await?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let scheme = challenge.split_whitespace().next().unwrap_or("");
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(err(format!(
                    "GET {url}: 401 Unauthorized: the registry asks for {challenge:?}; skiff's kubelet authenticates to registries with basic authentication only"
                )));
            }
            if auth.candidates.is_empty() {
                return Err(err(format!(
                    "GET {url}: 401 Unauthorized: the registry asks for a username and password; give the pod an imagePullSecret with credentials for {} (kubectl create secret docker-registry)",
                    auth.registry
                )));
            }
            let mut refused = Vec::new();
            for candidate in &auth.candidates {
                let header = candidate.basic_authorization();
                if accepted.as_deref() != Some(header.as_str()) {
                    resp = send(Some(header.clone())).await?;
                    if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
                        auth.accept(header);
                        break;
                    }
                }
                refused.push(candidate.source.as_str());
            }
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
                return Err(err(format!(
                    "GET {url}: 401 Unauthorized: the registry refused the credentials for {} from {}",
                    auth.registry,
                    refused.join(", ")
                )));
            }
        }
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(err(format!("GET {url}: not found")));
        }
        if !status.is_success() {
            return Err(err(format!("GET {url}: {status}")));
        }
        Ok(resp)
    }

    /// Pulls `reference` into containerd and unpacks it; returns the image name. The
    /// mirrors of its `--registry-config` table are tried first, in order, then its
    /// location, as CRI-O does; the image keeps the name the pod gave it.
    pub async fn pull(
        &self,
        rt: &Runtime,
        reference: &Reference,
        keyring: &Keyring,
    ) -> Result<String> {
        let endpoints = self.registries.endpoints(reference)?;
        let mut failures = Vec::new();
        for endpoint in &endpoints {
            let auth = PullAuth {
                registry: endpoint.host.clone(),
                candidates: keyring.lookup(&endpoint.host, &endpoint.path),
                accepted: std::sync::Mutex::new(None),
            };
            match self.pull_from(rt, reference, endpoint, &auth).await {
                Ok(name) => {
                    if endpoint.mirror {
                        tracing::info!(image = %name, mirror = %endpoint.repository(), "pulled from a mirror");
                    }
                    return Ok(name);
                }
                Err(e) if endpoints.len() == 1 => return Err(e),
                Err(e) => {
                    tracing::info!(image = %reference.name(), from = %endpoint.repository(), error = %e, "pull failed; trying the next location");
                    let message = match e {
                        Error::Image { message, .. } => message,
                        other => other.to_string(),
                    };
                    failures.push(format!("{}: {message}", endpoint.repository()));
                }
            }
        }
        Err(Error::Image {
            image: reference.name(),
            message: format!("no mirror or location had it: {}", failures.join("; ")),
        })
    }

    async fn pull_from(
        &self,
        rt: &Runtime,
        reference: &Reference,
        endpoint: &Endpoint,
        auth: &PullAuth,
    ) -> Result<String> {
        let name = reference.name();
        let (root, verify) = self.base_for(endpoint).await;
        let base = format!("{root}/v2/{}", endpoint.path);
        let lease = format!("skiff-pull-{}", rand::random::<u64>());
        rt.create_lease(&lease).await?;
        let result = async {
            let accept = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(", ");
            let url = format!("{base}/manifests/{}", reference.manifest_reference());
            let resp = self.get(&name, &url, &accept, verify, auth).await?;
            let header = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = resp.bytes().await.map_err(|e| Error::Image {
                image: name.clone(),
                message: format!("GET {url}: {e}"),
            })?;
            let digest = sha256_digest(&bytes);
            if let Some(want) = &reference.digest {
                if &digest != want {
                    return Err(Error::Image {
                        image: name.clone(),
                        message: format!("the registry's manifest has digest {digest}, not {want}"),
                    });
                }
            }
            let top = parse_manifest(&name, &bytes)?;
            let media_type = media_type_of(&top, header.as_deref());
            let top_desc = Descriptor {
                media_type: media_type.clone(),
                digest: digest.clone(),
                size: bytes.len() as i64,
                annotations: HashMap::new(),
            };
            let (manifest_desc, manifest_bytes) = if let Some(list) = &top.manifests {
                let chosen = select_platform(list).ok_or_else(|| Error::Image {
                    image: name.clone(),
                    message: "no linux/amd64 image in the manifest list".into(),
                })?;
                let url = format!("{base}/manifests/{}", chosen.digest);
                let mbytes = self
                    .get(&name, &url, &accept, verify, auth)
                    .await?
                    .bytes()
                    .await
                    .map_err(|e| Error::Image {
                        image: name.clone(),
                        message: format!("GET {url}: {e}"),
                    })?;
                if sha256_digest(&mbytes) != chosen.digest {
                    return Err(Error::Image {
                        image: name.clone(),
                        message: format!("manifest {} does not match its digest", chosen.digest),
                    });
                }
                (chosen.to_proto(), mbytes.to_vec())
            } else {
                (top_desc.clone(), bytes.to_vec())
            };
            let manifest = parse_manifest(&name, &manifest_bytes)?;
            let fetch = |d: JsonDescriptor| {
                let url = format!("{base}/blobs/{}", d.digest);
                let name = name.clone();
                async move {
                    let resp = self.get(&name, &url, "*/*", verify, auth).await?;
                    let stream = resp.bytes_stream().map(move |c| {
                        c.map(|b| b.to_vec()).map_err(|e| Error::Image {
                            image: name.clone(),
                            message: format!("GET {url}: {e}"),
                        })
                    });
                    Ok::<_, Error>(stream.boxed())
                }
            };
            store_manifest(
                rt,
                &lease,
                &name,
                &manifest,
                &manifest_desc,
                manifest_bytes,
                fetch,
            )
            .await?;
            if top.manifests.is_some() {
                let mut labels = HashMap::new();
                labels.insert(
                    "containerd.io/gc.ref.content.m.0".to_string(),
                    manifest_desc.digest.clone(),
                );
                rt.write_content(
                    &lease,
                    &digest,
                    top_desc.size,
                    labels,
                    single(bytes.to_vec()),
                )
                .await?;
            }
            rt.put_image(&name, top_desc).await?;
            Ok(name.clone())
        }
        .await;
        let _ = rt.delete_lease(&lease).await;
        result
    }
}

/// Stores a manifest's config and layers (fetched with `fetch` when missing), the
/// manifest itself with the garbage collector's references, and unpacks the layers.
async fn store_manifest<F, Fut>(
    rt: &Runtime,
    lease: &str,
    image: &str,
    manifest: &Manifest,
    desc: &Descriptor,
    bytes: Vec<u8>,
    fetch: F,
) -> Result<()>
where
    F: Fn(JsonDescriptor) -> Fut,
    Fut: std::future::Future<Output = Result<futures::stream::BoxStream<'static, Result<Vec<u8>>>>>,
{
    let config = manifest.config.clone().ok_or_else(|| Error::Image {
        image: image.to_string(),
        message: format!("{} is neither an index nor an image manifest", desc.digest),
    })?;
    let mut labels = HashMap::new();
    labels.insert(
        "containerd.io/gc.ref.content.config".to_string(),
        config.digest.clone(),
    );
    for (i, layer) in manifest.layers.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    for blob in std::iter::once(&config).chain(manifest.layers.iter()) {
        if !rt.content_exists(&blob.digest).await? {
            let chunks = fetch(blob.clone()).await?;
            rt.write_content(lease, &blob.digest, blob.size, HashMap::new(), chunks)
                .await?;
        }
    }
    let config_bytes = rt.read_content(&config.digest).await?;
    let image_config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| Error::Image {
            image: image.to_string(),
            message: format!("image config is not valid JSON: {e}"),
        })?;
    if image_config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::Image {
            image: image.to_string(),
            message: format!(
                "the config lists {} layers, the manifest {}",
                image_config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    let chains = chain_ids(&image_config.rootfs.diff_ids);
    let mut parent = String::new();
    for (layer, chain) in manifest.layers.iter().zip(&chains) {
        if !rt.snapshot_exists(chain).await? {
            let key = format!("extract-{}-{chain}", rand::random::<u32>());
            let mounts = rt.prepare_snapshot(&key, &parent, Some(lease)).await?;
            let applied = rt.apply_layer(layer.to_proto(), mounts).await;
            let committed = match applied {
                Ok(_) => rt.commit_snapshot(chain, &key, lease).await,
                Err(e) => Err(e),
            };
            if let Err(e) = committed {
                let _ = rt.remove_snapshot(&key).await;
                if !(e.is_already_exists()) {
                    return Err(e);
                }
            }
        }
        parent = chain.clone();
    }
    // The config references the unpacked snapshot, so the snapshot lives as long as the
    // image does (what containerd's own unpacker records).
    if let Some(top) = chains.last() {
        let mut l = HashMap::new();
        l.insert(
            format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
            top.clone(),
        );
        rt.label_content(&config.digest, l).await?;
    }
    if !rt.content_exists(&desc.digest).await? {
        rt.write_content(lease, &desc.digest, desc.size, labels, single(bytes))
            .await?;
    } else {
        rt.label_content(&desc.digest, labels).await?;
    }
    Ok(())
}

/// The bytes an image takes in the content store for this platform: its manifest,
/// config and layers (what Kubernetes reports as an image's `sizeBytes`).
pub async fn image_size(rt: &Runtime, name: &str, target: &Descriptor) -> Result<i64> {
    let mut size = target.size;
    let mut manifest = parse_manifest(name, &rt.read_content(&target.digest).await?)?;
    if let Some(chosen) = manifest
        .manifests
        .as_ref()
        .and_then(|list| select_platform(list))
    {
        size += chosen.size;
        manifest = parse_manifest(name, &rt.read_content(&chosen.digest).await?)?;
    }
    size += manifest.config.map_or(0, |c| c.size);
    size += manifest.layers.iter().map(|l| l.size).sum::<i64>();
    Ok(size)
}

/// Resolves an image record to what a container needs; `None` when it is not there or
/// not unpacked.
pub async fn local_image(rt: &Runtime, name: &str) -> Result<Option<LocalImage>> {
    let Some(image) = rt.get_image(name).await? else {
        return Ok(None);
    };
    let Some(target) = image.target else {
        return Ok(None);
    };
    let bad = |message: String| Error::Image {
        image: name.to_string(),
        message,
    };
    let mut digest = target.digest.clone();
    let mut manifest = parse_manifest(name, &rt.read_content(&digest).await?)?;
    if let Some(list) = &manifest.manifests {
        let chosen =
            select_platform(list).ok_or_else(|| bad("no linux/amd64 image in the index".into()))?;
        digest = chosen.digest.clone();
        manifest = parse_manifest(name, &rt.read_content(&digest).await?)?;
    }
    let config = manifest
        .config
        .ok_or_else(|| bad(format!("{digest} is not an image manifest")))?;
    let config: ImageConfig = serde_json::from_slice(&rt.read_content(&config.digest).await?)
        .map_err(|e| bad(format!("image config is not valid JSON: {e}")))?;
    let Some(chain_id) = chain_ids(&config.rootfs.diff_ids).pop() else {
        return Err(bad("the image has no layers".into()));
    };
    if !rt.snapshot_exists(&chain_id).await? {
        return Ok(None);
    }
    let repository = match Reference::parse(name) {
        Ok(r) => r.repository(),
        Err(_) => name.to_string(),
    };
    Ok(Some(LocalImage {
        name: name.to_string(),
        image_id: format!("{repository}@{}", target.digest),
        config,
        chain_id,
    }))
}

/// Imports an OCI archive (an OCI image layout in a tar, optionally gzipped): every
/// image its index names with `io.containerd.image.name` (or a full
/// `org.opencontainers.image.ref.name`); or a `docker save` archive (manifest.json
/// without index.json): every image under each of its RepoTags. Returns the names
/// imported.
pub async fn import_archive(rt: &Runtime, archive: &Path, scratch: &Path) -> Result<Vec<String>> {
    let dir = scratch.join(format!("import-{}", rand::random::<u64>()));
    let extract = {
        let (archive, dir) = (archive.to_path_buf(), dir.clone());
        tokio::task::spawn_blocking(move || extract_tar(&archive, &dir))
    };
    let result = async {
        extract.await.map_err(|e| Error::Image {
            image: archive.display().to_string(),
            message: format!("extracting: {e}"),
        })??;
        import_layout(rt, archive, &dir).await
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    result
}

fn extract_tar(archive: &Path, dir: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(archive).map_err(|e| Error::io("opening", archive, e))?;
    let mut magic = [0u8; 2];
    let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = std::fs::File::open(archive).map_err(|e| Error::io("opening", archive, e))?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    // unpack_in refuses entries that would land outside `dir`.
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|e| Error::io("reading", archive, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading", archive, e))?;
        entry
            .unpack_in(dir)
            .map_err(|e| Error::io("extracting", archive, e))?;
    }
    Ok(())
}

async fn import_layout(rt: &Runtime, archive: &Path, dir: &Path) -> Result<Vec<String>> {
    let what = archive.display().to_string();
    let bad = |message: String| Error::Image {
        image: what.clone(),
        message,
    };
    if dir.join("manifest.json").exists() && !dir.join("index.json").exists() {
        return import_docker(rt, archive, dir).await;
    }
    let index_bytes = tokio::fs::read(dir.join("index.json"))
        .await
        .map_err(|e| bad(format!("no index.json (not an OCI archive?): {e}")))?;
    let index = parse_manifest(&what, &index_bytes)?;
    let blob_path = |digest: &str| -> Result<std::path::PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad(format!("bad digest {digest:?}")))?;
        Ok(dir.join("blobs").join("sha256").join(hex))
    };
    let read_blob = |digest: String| {
        let path = blob_path(&digest);
        async move {
            let path = path?;
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| Error::io("reading", &path, e))?;
            if sha256_digest(&bytes) != digest {
                return Err(Error::Image {
                    image: path.display().to_string(),
                    message: format!("blob does not match its digest {digest}"),
                });
            }
            Ok(bytes)
        }
    };
    let lease = format!("skiff-import-{}", rand::random::<u64>());
    rt.create_lease(&lease).await?;
    let result = async {
        let mut names = Vec::new();
        for top in index.manifests.clone().unwrap_or_default() {
            let name = top
                .annotations
                .get("io.containerd.image.name")
                .cloned()
                .or_else(|| {
                    top.annotations
                        .get("org.opencontainers.image.ref.name")
                        .filter(|n| n.contains('/'))
                        .cloned()
                });
            let Some(name) = name else {
                tracing::warn!(archive = %what, digest = %top.digest, "image without a name (no io.containerd.image.name annotation): skipped");
                continue;
            };
            let name = Reference::parse(&name)?.name();
            let top_bytes = read_blob(top.digest.clone()).await?;
            let parsed = parse_manifest(&name, &top_bytes)?;
            let (mdesc, mbytes) = if let Some(list) = &parsed.manifests {
                let chosen = select_platform(list)
                    .ok_or_else(|| bad("no linux/amd64 image in the index".into()))?;
                (chosen.clone(), read_blob(chosen.digest.clone()).await?)
            } else {
                (top.clone(), top_bytes.clone())
            };
            let manifest = parse_manifest(&name, &mbytes)?;
            let fetch = |d: JsonDescriptor| {
                let bytes = read_blob(d.digest);
                async move { Ok::<_, Error>(single(bytes.await?)) }
            };
            store_manifest(rt, &lease, &name, &manifest, &mdesc.to_proto(), mbytes.clone(), fetch)
                .await?;
            let top_desc = Descriptor {
                media_type: media_type_of(&parsed, Some(top.media_type.as_str()).filter(|s| !s.is_empty())),
                digest: top.digest.clone(),
                size: top_bytes.len() as i64,
                annotations: HashMap::new(),
            };
            if parsed.manifests.is_some() {
                let mut labels = HashMap::new();
                labels.insert("containerd.io/gc.ref.content.m.0".into(), mdesc.digest.clone());
                rt.write_content(&lease, &top.digest, top_desc.size, labels, single(top_bytes))
                    .await?;
            }
            rt.put_image(&name, top_desc).await?;
            names.push(name);
        }
        Ok(names)
    }
    .await;
    let _ = rt.delete_lease(&lease).await;
    result
}

/// One image of a `docker save` archive (an entry of its manifest.json).
#[derive(Debug, Deserialize, PartialEq)]
pub struct DockerArchiveImage {
    /// The config file's path in the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// The names the image is saved under (`busybox:1`).
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// The layer files' paths, bottom first.
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The manifest containerd makes for an image of a docker archive (Docker's schema 2),
/// from its config and layers as (bytes' digest, size, gzipped).
pub fn docker_archive_manifest(
    config: (&str, i64),
    layers: &[(String, i64, bool)],
) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(digest, size, gz)| serde_json::json!({
            "mediaType": if *gz { DOCKER_LAYER_GZIP } else { DOCKER_LAYER },
            "digest": digest,
            "size": size,
        })).collect::<Vec<_>>(),
    })
}

/// A path of an archive's manifest, inside the extracted directory.
fn archive_file(dir: &Path, rel: &str) -> Option<std::path::PathBuf> {
    let p = Path::new(rel);
    let inside = !p.is_absolute()
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    inside.then(|| dir.join(p))
}

async fn import_docker(rt: &Runtime, archive: &Path, dir: &Path) -> Result<Vec<String>> {
    let what = archive.display().to_string();
    let bad = |message: String| Error::Image {
        image: what.clone(),
        message,
    };
    let manifest_bytes = tokio::fs::read(dir.join("manifest.json"))
        .await
        .map_err(|e| Error::io("reading", dir.join("manifest.json"), e))?;
    let images: Vec<DockerArchiveImage> = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| bad(format!("manifest.json of a docker archive: {e}")))?;
    let lease = format!("skiff-import-{}", rand::random::<u64>());
    rt.create_lease(&lease).await?;
    let result = async {
        let mut names = Vec::new();
        for image in images {
            let tags = image.repo_tags.clone().unwrap_or_default();
            if tags.is_empty() {
                tracing::warn!(archive = %what, config = %image.config, "image without RepoTags: skipped");
                continue;
            }
            let file = |rel: &str| {
                archive_file(dir, rel)
                    .ok_or_else(|| bad(format!("{rel:?} is not a path inside the archive")))
            };
            let config_path = file(&image.config)?;
            let config_bytes = tokio::fs::read(&config_path)
                .await
                .map_err(|e| Error::io("reading", &config_path, e))?;
            let config_digest = sha256_digest(&config_bytes);
            let mut paths: HashMap<String, std::path::PathBuf> = HashMap::new();
            paths.insert(config_digest.clone(), config_path);
            let mut layers = Vec::new();
            for l in &image.layers {
                let path = file(l)?;
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| Error::io("reading", &path, e))?;
                let digest = sha256_digest(&bytes);
                let gz = bytes.starts_with(&[0x1f, 0x8b]);
                layers.push((digest.clone(), bytes.len() as i64, gz));
                paths.insert(digest, path);
            }
            let manifest_json =
                docker_archive_manifest((&config_digest, config_bytes.len() as i64), &layers);
            let mbytes = serde_json::to_vec(&manifest_json)
                .map_err(|e| bad(format!("encoding the manifest: {e}")))?;
            let first = Reference::parse(&tags[0])?.name();
            let manifest = parse_manifest(&first, &mbytes)?;
            let desc = Descriptor {
                media_type: DOCKER_MANIFEST.into(),
                digest: sha256_digest(&mbytes),
                size: mbytes.len() as i64,
                annotations: HashMap::new(),
            };
            let paths = &paths;
            let fetch = |d: JsonDescriptor| async move {
                let path = paths
                    .get(&d.digest)
                    .cloned()
                    .ok_or_else(|| Error::Image {
                        image: d.digest.clone(),
                        message: "not in the archive".into(),
                    })?;
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| Error::io("reading", &path, e))?;
                Ok::<_, Error>(single(bytes))
            };
            store_manifest(rt, &lease, &first, &manifest, &desc, mbytes.clone(), fetch).await?;
            for tag in &tags {
                let name = Reference::parse(tag)?.name();
                rt.put_image(&name, desc.clone()).await?;
                names.push(name);
            }
        }
        Ok(names)
    }
    .await;
    let _ = rt.delete_lease(&lease).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(
            chains[1],
            format!("sha256:{}", hex::encode(Sha256::digest(format!("{a} {b}"))))
        );
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn platform_selection_picks_linux_amd64() {
        let list: Vec<JsonDescriptor> = serde_json::from_str(
            r#"[{"mediaType":"x","digest":"sha256:1","size":1,"platform":{"architecture":"arm64","os":"linux"}},
                {"mediaType":"x","digest":"sha256:2","size":1,"platform":{"architecture":"amd64","os":"windows"}},
                {"mediaType":"x","digest":"sha256:3","size":1,"platform":{"architecture":"amd64","os":"linux"}}]"#,
        )
        .unwrap();
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(select_platform(&list).unwrap().digest, "sha256:3");
        }
        assert!(select_platform(
            &list[..2]
                .iter()
                .filter(|d| d.platform.as_ref().unwrap().os == "windows")
                .cloned()
                .collect::<Vec<_>>()
        )
        .is_none());
    }

    #[test]
    fn image_config_fields() {
        let c: ImageConfig = serde_json::from_str(
            r#"{"config":{"Entrypoint":["/e"],"Cmd":["c"],"Env":["A=1"],"WorkingDir":"/w","User":"10:20"},"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}"#,
        )
        .unwrap();
        assert_eq!(c.config.entrypoint, Some(vec!["/e".to_string()]));
        assert_eq!(c.config.user.as_deref(), Some("10:20"));
        assert_eq!(c.rootfs.diff_ids.len(), 1);
    }

    #[test]
    fn docker_archives_get_a_schema2_manifest() {
        let entries: Vec<DockerArchiveImage> = serde_json::from_str(
            r#"[{"Config":"abc.json","RepoTags":["busybox:1"],"Layers":["l1/layer.tar"]}]"#,
        )
        .unwrap();
        assert_eq!(
            entries[0].repo_tags.as_deref(),
            Some(&["busybox:1".to_string()][..])
        );
        let m = docker_archive_manifest(
            ("sha256:c", 10),
            &[("sha256:a".into(), 5, false), ("sha256:b".into(), 6, true)],
        );
        let parsed = parse_manifest("x", &serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(parsed.config.unwrap().media_type, DOCKER_CONFIG);
        assert_eq!(parsed.layers[0].media_type, DOCKER_LAYER);
        assert_eq!(parsed.layers[1].media_type, DOCKER_LAYER_GZIP);
        assert!(archive_file(Path::new("/d"), "../etc/passwd").is_none());
        assert!(archive_file(Path::new("/d"), "/etc/passwd").is_none());
        assert_eq!(
            archive_file(Path::new("/d"), "l1/layer.tar"),
            Some(std::path::PathBuf::from("/d/l1/layer.tar"))
        );
    }
}
