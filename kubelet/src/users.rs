//! An image's USER resolved in the image's own `/etc/passwd` and `/etc/group`, as
//! containerd resolves it for Kubernetes: `name` or `uid`, optionally `:group` or
//! `:gid`; a user's primary group comes from its passwd line, and the groups that list
//! it as a member become its additional groups.

use std::path::{Path, PathBuf};

/// The users and groups of an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageUsers {
    passwd: Vec<(String, u32, u32)>,
    groups: Vec<(String, u32, Vec<String>)>,
}

/// The identity a container's process runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Further groups (from /etc/group, and the pod's supplementalGroups).
    pub additional_gids: Vec<u32>,
}

impl ImageUsers {
    /// Parses the two files; lines that are not `name:x:id:…` are skipped, as libc does.
    pub fn parse(passwd: &str, group: &str) -> ImageUsers {
        let fields = |line: &str| -> Vec<String> { line.split(':').map(str::to_string).collect() };
        let passwd = passwd
            .lines()
            .map(fields)
            .filter_map(|f| {
                Some((
                    f.first()?.clone(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ))
            })
            .collect();
        let groups = group
            .lines()
            .map(fields)
            .filter_map(|f| {
                let members = f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                Some((f.first()?.clone(), f.get(2)?.parse().ok()?, members))
            })
            .collect();
        ImageUsers { passwd, groups }
    }
}

/// Whether USER names a user or group (other than root), so that the image's files
/// must be read to run it.
pub fn names_anyone(user: &str) -> bool {
    user.split(':')
        .any(|part| !part.is_empty() && part != "root" && part.parse::<u32>().is_err())
}

/// Resolves USER (`""`, `uid`, `name`, `x:gid`, `x:group`). Without the image's files
/// only ids and `root` resolve; a numeric user keeps group 0 unless one is named.
pub fn resolve(user: &str, files: Option<&ImageUsers>) -> Result<ProcessUser, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let empty = ImageUsers::default();
    let db = files.unwrap_or(&empty);
    let (uid, name, mut gid) = if user_part.is_empty() || user_part == "root" {
        (0, Some("root".to_string()), 0)
    } else if let Ok(uid) = user_part.parse::<u32>() {
        let entry = db.passwd.iter().find(|(_, u, _)| *u == uid);
        (uid, entry.map(|e| e.0.clone()), entry.map_or(0, |e| e.2))
    } else {
        let (name, uid, gid) = db
            .passwd
            .iter()
            .find(|(n, _, _)| n == user_part)
            .ok_or_else(|| {
                format!("unable to find user {user_part}: no matching entries in passwd file")
            })?;
        (*uid, Some(name.clone()), *gid)
    };
    match group_part {
        None | Some("") => {}
        Some("root") => gid = 0,
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => db
                    .groups
                    .iter()
                    .find(|(n, _, _)| n == g)
                    .map(|(_, id, _)| *id)
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?,
            }
        }
    }
    let mut additional_gids: Vec<u32> = match &name {
        Some(n) => db
            .groups
            .iter()
            .filter(|(_, id, members)| *id != gid && members.iter().any(|m| m == n))
            .map(|(_, id, _)| *id)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids,
    })
}

/// The directories of a snapshot's layers, top first, from the mounts containerd gives
/// for it: a bind mount of one directory, or overlay's upper and lower directories.
pub fn layer_dirs(mounts: &[(String, String, Vec<String>)]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for (kind, source, options) in mounts {
        if kind == "bind" {
            dirs.push(PathBuf::from(source));
            continue;
        }
        for o in options {
            if let Some(upper) = o.strip_prefix("upperdir=") {
                dirs.insert(0, PathBuf::from(upper));
            }
        }
        for o in options {
            if let Some(lower) = o.strip_prefix("lowerdir=") {
                dirs.extend(lower.split(':').map(PathBuf::from));
            }
        }
    }
    dirs
}

/// A file of the image's filesystem read through its layers: the topmost layer that has
/// it wins, and an overlay whiteout (a character device) there means it was deleted.
pub fn read_in_layers(dirs: &[PathBuf], relative: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    for dir in dirs {
        let path = dir.join(relative);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_char_device() => return None,
            Ok(m) if m.is_file() => return std::fs::read_to_string(&path).ok(),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> ImageUsers {
        ImageUsers::parse(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\nweb:x:101:101::/:/bin/sh\nbroken line\n",
            "root:x:0:\nnogroup:x:65534:\nweb:x:101:\nstaff:x:50:web,nobody\nlog:x:4:web\n",
        )
    }

    #[test]
    fn users_resolve_as_containerd_resolves_them() {
        let f = files();
        let r = |u: &str| resolve(u, Some(&f));
        assert_eq!(r("").unwrap(), ProcessUser::default());
        assert_eq!(
            r("web").unwrap(),
            ProcessUser {
                uid: 101,
                gid: 101,
                additional_gids: vec![4, 50]
            }
        );
        assert_eq!(r("nobody:staff").unwrap().gid, 50);
        assert_eq!(
            r("nobody:staff").unwrap().additional_gids,
            Vec::<u32>::new()
        );
        assert_eq!(
            r("101").unwrap().gid,
            101,
            "a uid's primary group comes from passwd"
        );
        assert_eq!(
            r("4242").unwrap(),
            ProcessUser {
                uid: 4242,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(r("4242:7").unwrap().gid, 7);
        assert!(r("ghost")
            .unwrap_err()
            .contains("unable to find user ghost: no matching entries in passwd file"));
        assert!(r("web:ghosts")
            .unwrap_err()
            .contains("unable to find group ghosts"));
        // Without the files, ids still resolve.
        assert_eq!(resolve("1000:50", None).unwrap().gid, 50);
        assert!(resolve("web", None).is_err());
    }

    #[test]
    fn only_names_need_the_files() {
        assert!(names_anyone("web"));
        assert!(names_anyone("1000:staff"));
        assert!(!names_anyone("1000:50"));
        assert!(!names_anyone("root"));
        assert!(!names_anyone(""));
    }

    #[test]
    fn layers_are_read_top_first_and_whiteouts_hide() {
        let mounts = vec![(
            "overlay".to_string(),
            "overlay".to_string(),
            vec![
                "index=off".to_string(),
                "lowerdir=/s/3/fs:/s/2/fs:/s/1/fs".to_string(),
            ],
        )];
        assert_eq!(
            layer_dirs(&mounts),
            ["/s/3/fs", "/s/2/fs", "/s/1/fs"].map(PathBuf::from)
        );
        let bind = vec![(
            "bind".to_string(),
            "/s/1/fs".to_string(),
            vec!["ro".to_string()],
        )];
        assert_eq!(layer_dirs(&bind), [PathBuf::from("/s/1/fs")]);

        let tmp = std::env::temp_dir().join(format!("skiff-users-{}", rand::random::<u64>()));
        let (top, bottom) = (tmp.join("top"), tmp.join("bottom"));
        for d in [&top, &bottom] {
            std::fs::create_dir_all(d.join("etc")).unwrap();
        }
        std::fs::write(bottom.join("etc/passwd"), "old").unwrap();
        std::fs::write(bottom.join("etc/group"), "kept").unwrap();
        std::fs::write(top.join("etc/passwd"), "new").unwrap();
        let dirs = [top.clone(), bottom.clone()];
        assert_eq!(
            read_in_layers(&dirs, Path::new("etc/passwd")).as_deref(),
            Some("new")
        );
        assert_eq!(
            read_in_layers(&dirs, Path::new("etc/group")).as_deref(),
            Some("kept")
        );
        assert_eq!(read_in_layers(&dirs, Path::new("etc/shadow")), None);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
