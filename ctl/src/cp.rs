//! `cp`: files and directories to and from a container, as kubectl does it: `tar` runs in
//! the container through `pods/exec` (`tar cf -` to read, `tar xf -` with stdin to
//! write) and skiffctl packs and unpacks the archive itself (the `tar` crate, no host
//! `tar`).

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::cluster::Ctx;
use crate::exec::{self, CommandExit, Input};

/// `cp` flags.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// The source: a local path, or `[NAMESPACE/]POD:PATH`.
    src: String,
    /// The destination: a local path, or `[NAMESPACE/]POD:PATH`.
    dest: String,
    /// The container (default: the pod's default-container annotation, else its first).
    #[arg(short = 'c', long)]
    container: Option<String>,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Spec {
    /// A path on this machine.
    Local(PathBuf),
    /// A path in a pod.
    Remote {
        /// The namespace, when given.
        namespace: Option<String>,
        /// The pod.
        pod: String,
        /// The path inside the container.
        path: String,
    },
}

/// Parses `[NAMESPACE/]POD:PATH` or a local path (kubectl's rule: a colon with a pod
/// before it; a path that starts with `/` or `.` is local).
pub fn parse_spec(s: &str) -> Result<Spec> {
    if s.starts_with('/') || s.starts_with('.') {
        return Ok(Spec::Local(PathBuf::from(s)));
    }
    let Some((who, path)) = s.split_once(':') else {
        return Ok(Spec::Local(PathBuf::from(s)));
    };
    if who.is_empty() || who.matches('/').count() > 1 {
        return Ok(Spec::Local(PathBuf::from(s)));
    }
    if path.is_empty() {
        bail!("filepath can not be empty");
    }
    let (namespace, pod) = match who.split_once('/') {
        Some((ns, pod)) => (Some(ns.to_string()), pod.to_string()),
        None => (None, who.to_string()),
    };
    Ok(Spec::Remote {
        namespace,
        pod,
        path: path.to_string(),
    })
}

/// The parent directory and last name of a path in the container (`/a/b/` -> `/a`, `b`).
pub fn split_remote(path: &str) -> (String, String) {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return ("/".into(), ".".into());
    }
    match trimmed.rsplit_once('/') {
        Some(("", base)) => ("/".into(), base.into()),
        Some((dir, base)) => (dir.into(), base.into()),
        None => (".".into(), trimmed.into()),
    }
}

/// Where an archive entry goes: its name below `prefix` joined onto `dest`; `None` for
/// entries outside the prefix or that would climb out of `dest`.
pub fn target_for(entry: &Path, prefix: &str, dest: &Path) -> Option<PathBuf> {
    let rest = entry.strip_prefix(prefix).ok()?;
    if rest
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    // Joining an empty path would add a trailing slash, which names a directory.
    if rest.as_os_str().is_empty() {
        return Some(dest.to_path_buf());
    }
    Some(dest.join(rest))
}

/// Packs a local file or directory into a tar archive under the name `name`.
pub fn pack(local: &Path, name: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(local)
        .with_context(|| format!("{}: no such file or directory", local.display()))?;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    if meta.is_dir() {
        builder.append_dir_all(name, local)?;
    } else {
        builder.append_path_with_name(local, name)?;
    }
    Ok(builder.into_inner()?)
}

/// Unpacks the entries below `prefix` of an archive onto `dest`; returns how many.
pub fn unpack(archive: &[u8], prefix: &str, dest: &Path) -> Result<usize> {
    let mut count = 0;
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        let Some(target) = target_for(&name, prefix, dest) else {
            eprintln!(
                "warning: skipping {}: it is outside {prefix} or climbs out of {}",
                name.display(),
                dest.display()
            );
            continue;
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("writing {}", target.display()))?;
        count += 1;
    }
    Ok(count)
}

/// Runs a command in the container, its stdout kept; a non-zero exit prints its stderr
/// and fails with its code.
async fn run_in(
    ctx: &Ctx,
    pod_path: &str,
    container: &str,
    command: &[&str],
    input: Option<Vec<u8>>,
) -> Result<(i32, Vec<u8>, Vec<u8>)> {
    let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    let url = format!(
        "{pod_path}/exec?{}",
        exec::exec_query(&command, container, input.is_some(), false)
    );
    let input = match input {
        Some(b) => Input::Bytes(b),
        None => Input::None,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = exec::stream(ctx, &url, input, false, &mut out, &mut err)
        .await
        .map_err(|e| {
            if e.to_string().contains("executable file not found")
                || e.to_string().contains("no such file or directory")
            {
                e.context("cp needs the 'tar' binary in the container image, and it did not start")
            } else {
                e
            }
        })?;
    Ok((code, out, err))
}

fn fail(code: i32, err: &[u8]) -> anyhow::Error {
    eprint!("{}", String::from_utf8_lossy(err));
    CommandExit(code).into()
}

/// Runs `cp`.
pub async fn run(ctx: &Ctx, a: CpArgs) -> Result<()> {
    match (parse_spec(&a.src)?, parse_spec(&a.dest)?) {
        (
            Spec::Remote {
                namespace,
                pod,
                path,
            },
            Spec::Local(local),
        ) => {
            let (pod_path, pod_obj) = exec::running_pod(ctx, namespace.as_deref(), &pod).await?;
            let container = exec::choose_container(&pod_obj, a.container.as_deref(), false)?;
            let (dir, base) = split_remote(&path);
            let (code, archive, err) = run_in(
                ctx,
                &pod_path,
                &container,
                &["tar", "cf", "-", "-C", &dir, &base],
                None,
            )
            .await?;
            if code != 0 {
                return Err(fail(code, &err));
            }
            let n = unpack(&archive, &base, &local)?;
            if n == 0 {
                bail!("{path}: no such file or directory");
            }
            Ok(())
        }
        (
            Spec::Local(local),
            Spec::Remote {
                namespace,
                pod,
                path,
            },
        ) => {
            if !local.exists() {
                bail!("{}: no such file or directory", local.display());
            }
            let (pod_path, pod_obj) = exec::running_pod(ctx, namespace.as_deref(), &pod).await?;
            let container = exec::choose_container(&pod_obj, a.container.as_deref(), false)?;
            // Into an existing directory the source keeps its name, as with cp(1).
            let (is_dir, _, _) =
                run_in(ctx, &pod_path, &container, &["test", "-d", &path], None).await?;
            let path = if is_dir == 0 {
                let name = local
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| ".".into());
                format!("{}/{name}", path.trim_end_matches('/'))
            } else {
                path
            };
            let (dir, base) = split_remote(&path);
            let archive = pack(&local, &base)?;
            let (code, _, err) = run_in(
                ctx,
                &pod_path,
                &container,
                &["tar", "xmf", "-", "-C", &dir],
                Some(archive),
            )
            .await?;
            if code != 0 {
                return Err(fail(code, &err));
            }
            Ok(())
        }
        (Spec::Local(_), Spec::Local(_)) => {
            bail!("one of src or dest must be a remote file specification")
        }
        (Spec::Remote { .. }, Spec::Remote { .. }) => {
            bail!("one of src or dest must be a local file specification")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_tell_pods_from_local_paths() {
        assert_eq!(
            parse_spec("ns/web:/tmp/x").unwrap(),
            Spec::Remote {
                namespace: Some("ns".into()),
                pod: "web".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(
            parse_spec("web:tmp").unwrap(),
            Spec::Remote {
                namespace: None,
                pod: "web".into(),
                path: "tmp".into()
            }
        );
        assert_eq!(
            parse_spec("/tmp/a:b").unwrap(),
            Spec::Local("/tmp/a:b".into())
        );
        assert_eq!(parse_spec("file").unwrap(), Spec::Local("file".into()));
        assert!(parse_spec("web:").is_err());
    }

    #[test]
    fn remote_paths_split_into_directory_and_name() {
        assert_eq!(split_remote("/tmp/x"), ("/tmp".into(), "x".into()));
        assert_eq!(split_remote("/tmp/dir/"), ("/tmp".into(), "dir".into()));
        assert_eq!(split_remote("/x"), ("/".into(), "x".into()));
        assert_eq!(split_remote("rel"), (".".into(), "rel".into()));
    }

    #[test]
    fn entries_map_below_the_destination_and_never_climb_out() {
        let dest = Path::new("/out");
        assert_eq!(target_for(Path::new("d"), "d", dest), Some("/out".into()));
        assert_eq!(
            target_for(Path::new("d/sub/f"), "d", dest),
            Some("/out/sub/f".into())
        );
        assert_eq!(target_for(Path::new("other/f"), "d", dest), None);
        assert_eq!(target_for(Path::new("d/../../etc"), "d", dest), None);
    }

    #[test]
    fn archives_round_trip_in_memory() {
        let mut b = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        b.append_data(&mut header.clone(), "d/sub/f.txt", &b"hello"[..])
            .unwrap();
        let bytes = b.into_inner().unwrap();
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(&bytes[..]);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let p = e.path().unwrap().into_owned();
            names.push(target_for(&p, "d", Path::new("/dest")));
        }
        assert_eq!(names, [Some(PathBuf::from("/dest/sub/f.txt"))]);
    }
}
