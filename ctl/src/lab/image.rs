//! `skiffctl image load FILE…`: puts image archives (an OCI layout or a `docker save`
//! tar, optionally gzipped) onto a lab's workers without a registry, as `kind load
//! image-archive` does for kind. The archive is copied into the directory every worker's
//! kubelet imports from (`--image-dir`); the command then waits until each worker's Node
//! lists the archive's images in `status.images`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::Which;
use crate::cluster::Ctx;

/// `image` subcommands.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Load image archives onto every worker of a lab (no registry needed).
    Load(LoadArgs),
}

/// `image load` flags.
#[derive(Args)]
pub struct LoadArgs {
    /// Archives: an OCI image layout or a `docker save` tar, optionally gzipped.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Give up waiting for the workers after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[command(flatten)]
    which: Which,
}

/// The image names an archive holds, as containerd (and skiff's kubelet) name them:
/// `io.containerd.image.name` annotations of an OCI index (or a full
/// `org.opencontainers.image.ref.name`), else a docker archive's RepoTags.
pub fn archive_image_names(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let gz = {
        let mut f = &file;
        f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b]
    };
    let file = std::fs::File::open(path)?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut index = None;
    let mut manifest = None;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .with_context(|| format!("{} is not a tar archive", path.display()))?;
    for entry in entries {
        let mut entry =
            entry.with_context(|| format!("{} is not a tar archive", path.display()))?;
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let slot = match name.as_str() {
            "index.json" => &mut index,
            "manifest.json" => &mut manifest,
            _ => continue,
        };
        let mut text = String::new();
        entry.read_to_string(&mut text)?;
        *slot = Some(
            serde_json::from_str::<Value>(&text)
                .with_context(|| format!("{name} in {} is not JSON", path.display()))?,
        );
    }
    let names = names_from(index.as_ref(), manifest.as_ref());
    if index.is_none() && manifest.is_none() {
        bail!(
            "{} is neither an OCI image layout (index.json) nor a docker archive (manifest.json)",
            path.display()
        );
    }
    if names.is_empty() {
        bail!(
            "{} names no image (no io.containerd.image.name annotation, no full ref.name, no RepoTags): the kubelet would import nothing",
            path.display()
        );
    }
    Ok(names)
}

/// The names in an OCI index or, without one, a docker manifest.json.
fn names_from(index: Option<&Value>, manifest: Option<&Value>) -> Vec<String> {
    let mut names = BTreeSet::new();
    if let Some(index) = index {
        for m in index["manifests"].as_array().into_iter().flatten() {
            let a = &m["annotations"];
            let name = a["io.containerd.image.name"].as_str().or_else(|| {
                a["org.opencontainers.image.ref.name"]
                    .as_str()
                    .filter(|r| r.contains('/') || r.contains(':'))
            });
            names.extend(name.map(str::to_string));
        }
    } else if let Some(manifest) = manifest {
        for m in manifest.as_array().into_iter().flatten() {
            for tag in m["RepoTags"].as_array().into_iter().flatten() {
                names.extend(tag.as_str().map(str::to_string));
            }
        }
    }
    names.into_iter().collect()
}

/// The image names a Node reports in `status.images`.
fn node_images(node: &Value) -> BTreeSet<String> {
    node["status"]["images"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["names"].as_array().into_iter().flatten())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// Runs `image load`.
pub async fn run(ctx: &Ctx, command: ImageCommand) -> Result<()> {
    let ImageCommand::Load(a) = command;
    let spec = a.which.load()?;
    let workers: Vec<String> = spec.workers().map(|m| m.name.clone()).collect();
    let mut wanted = BTreeSet::new();
    let mut archives = Vec::new();
    for file in &a.files {
        let names = archive_image_names(file)?;
        let file_name = file
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".tar") || n.ends_with(".tar.gz") || n.ends_with(".tgz"))
            .with_context(|| {
                format!(
                    "{}: the kubelet imports files named *.tar, *.tar.gz or *.tgz; rename it",
                    file.display()
                )
            })?
            .to_string();
        wanted.extend(names.iter().cloned());
        archives.push((file, file_name, names));
    }
    for (file, file_name, _) in &archives {
        // Copied under a name the kubelet skips, then renamed: it never reads half a file.
        let partial = spec.image_dir.join(format!(".{file_name}.partial"));
        let target = spec.image_dir.join(file_name);
        std::fs::copy(file, &partial).with_context(|| {
            format!(
                "copying {} into {}",
                file.display(),
                spec.image_dir.display()
            )
        })?;
        std::fs::rename(&partial, &target)
            .with_context(|| format!("moving the copy to {}", target.display()))?;
    }
    let bar = crate::progress::spinner(&format!(
        "waiting for {} to import {} image(s)",
        workers.join(", "),
        wanted.len()
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    loop {
        let nodes = ctx.get_json("/api/v1/nodes").await?;
        let nodes = nodes["items"].as_array().cloned().unwrap_or_default();
        let missing: Vec<String> = workers
            .iter()
            .filter_map(|w| {
                let has = nodes
                    .iter()
                    .find(|n| n["metadata"]["name"] == w.as_str())
                    .map(node_images)
                    .unwrap_or_default();
                let lacking: Vec<&str> = wanted
                    .iter()
                    .filter(|i| !has.contains(*i))
                    .map(String::as_str)
                    .collect();
                (!lacking.is_empty()).then(|| format!("{w} lacks {}", lacking.join(", ")))
            })
            .collect();
        if missing.is_empty() {
            bar.finish_and_clear();
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bar.finish_and_clear();
            bail!(
                "the archives are in {} but after {} s {}; the kubelet's log (skiffctl lab status shows where) says why",
                spec.image_dir.display(),
                a.timeout,
                missing.join("; ")
            );
        }
        bar.set_message(format!("waiting: {}", missing.join("; ")));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (_, file_name, names) in &archives {
        for name in names {
            println!(
                "Image: {name:?} (from {file_name}) loaded onto {}",
                workers.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_come_from_the_index_annotations_else_repo_tags() {
        let index = json!({"manifests": [
            {"annotations": {"io.containerd.image.name": "reg/a:1",
                             "org.opencontainers.image.ref.name": "1"}},
            {"annotations": {"org.opencontainers.image.ref.name": "reg/b:2"}},
            {"annotations": {"org.opencontainers.image.ref.name": "latest"}},
        ]});
        assert_eq!(names_from(Some(&index), None), ["reg/a:1", "reg/b:2"]);
        let manifest = json!([{"RepoTags": ["x/y:1", "x/y:latest"]}, {"RepoTags": null}]);
        assert_eq!(names_from(None, Some(&manifest)), ["x/y:1", "x/y:latest"]);
    }

    #[test]
    fn an_archive_without_names_or_not_a_tar_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.tar");
        std::fs::write(
            &junk,
            b"not a tar at all, just some bytes that are not a header",
        )
        .unwrap();
        let e = archive_image_names(&junk).unwrap_err();
        assert!(format!("{e:#}").contains("junk.tar"), "{e:#}");

        let nameless = dir.path().join("nameless.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&nameless).unwrap());
        let body = br#"{"manifests":[{"annotations":{"org.opencontainers.image.ref.name":"1"}}]}"#;
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "index.json", &body[..]).unwrap();
        b.finish().unwrap();
        drop(b);
        let e = archive_image_names(&nameless).unwrap_err();
        assert!(e.to_string().contains("names no image"), "{e}");
    }

    #[test]
    fn node_images_reads_every_name() {
        let node = json!({"status": {"images": [
            {"names": ["a:1", "a@sha256:x"], "sizeBytes": 1}, {"names": ["b:2"]}]}});
        assert_eq!(
            node_images(&node),
            BTreeSet::from(["a:1".to_string(), "a@sha256:x".into(), "b:2".into()])
        );
    }
}
