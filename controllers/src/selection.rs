//! Which controllers run: kube-controller-manager's `--controllers` list (`*` for every
//! controller that is on by default, `foo` to enable one, `-foo` to disable one).

use crate::{Error, Result};

/// One controller this manager knows: its kube-controller-manager name and the short
/// alias older releases used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    /// The name kube-controller-manager 1.33 uses, e.g. `replicaset-controller`.
    pub name: &'static str,
    /// The short alias, e.g. `replicaset`.
    pub alias: &'static str,
    /// Whether skiff has built it yet.
    pub built: bool,
}

/// Every controller of kube-controller-manager that skiff means to have, built or not.
pub const KNOWN: &[Known] = &[
    Known {
        name: "replicaset-controller",
        alias: "replicaset",
        built: true,
    },
    Known {
        name: "garbage-collector-controller",
        alias: "garbagecollector",
        built: true,
    },
    Known {
        name: "namespace-controller",
        alias: "namespace",
        built: true,
    },
    Known {
        name: "deployment-controller",
        alias: "deployment",
        built: true,
    },
    Known {
        name: "serviceaccount-controller",
        alias: "serviceaccount",
        built: true,
    },
    Known {
        name: "endpoints-controller",
        alias: "endpoint",
        built: true,
    },
    Known {
        name: "endpointslice-controller",
        alias: "endpointslice",
        built: true,
    },
    Known {
        name: "statefulset-controller",
        alias: "statefulset",
        built: true,
    },
    Known {
        name: "daemonset-controller",
        alias: "daemonset",
        built: true,
    },
    Known {
        name: "job-controller",
        alias: "job",
        built: true,
    },
    Known {
        name: "cronjob-controller",
        alias: "cronjob",
        built: true,
    },
    Known {
        name: "ttl-after-finished-controller",
        alias: "ttl-after-finished",
        built: true,
    },
    Known {
        name: "horizontal-pod-autoscaler-controller",
        alias: "horizontalpodautoscaling",
        built: false,
    },
    Known {
        name: "node-ipam-controller",
        alias: "nodeipam",
        built: true,
    },
    Known {
        name: "node-lifecycle-controller",
        alias: "nodelifecycle",
        built: true,
    },
];

fn lookup(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name || k.alias == name)
}

/// The parsed `--controllers` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    star: bool,
    enabled: Vec<&'static str>,
    disabled: Vec<&'static str>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            star: true,
            enabled: Vec::new(),
            disabled: Vec::new(),
        }
    }
}

impl Selection {
    /// Parses `--controllers` (comma-separated). Unknown names are an error, as are
    /// controllers named explicitly that skiff has not built yet: asking for one must
    /// not look as if it ran.
    pub fn parse(list: &str) -> Result<Selection> {
        let mut s = Selection {
            star: false,
            enabled: Vec::new(),
            disabled: Vec::new(),
        };
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                s.star = true;
                continue;
            }
            let (negated, name) = match item.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, item),
            };
            let known = lookup(name).ok_or_else(|| {
                Error::Config(format!(
                    "--controllers: {name:?} is not a known controller; known: {}",
                    KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ))
            })?;
            if negated {
                s.disabled.push(known.name);
            } else if !known.built {
                return Err(Error::Config(format!(
                    "--controllers: {} is not built in skiff yet",
                    known.name
                )));
            } else {
                s.enabled.push(known.name);
            }
        }
        Ok(s)
    }

    /// Whether the controller `name` (either spelling) runs.
    pub fn is_enabled(&self, name: &str) -> bool {
        let Some(known) = lookup(name) else {
            return false;
        };
        if !known.built || self.disabled.contains(&known.name) {
            return false;
        }
        self.star || self.enabled.contains(&known.name)
    }

    /// Controllers `*` would run in kube-controller-manager that skiff has not built.
    pub fn missing(&self) -> Vec<&'static str> {
        if !self.star {
            return Vec::new();
        }
        KNOWN
            .iter()
            .filter(|k| !k.built && !self.disabled.contains(&k.name))
            .map(|k| k.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_enables_every_built_controller_and_minus_disables() {
        let s = Selection::parse("*,-garbagecollector").unwrap();
        assert!(s.is_enabled("replicaset"));
        assert!(s.is_enabled("replicaset-controller"));
        assert!(!s.is_enabled("garbage-collector-controller"));
        assert!(s.is_enabled("cronjob"));
        assert!(
            !s.is_enabled("horizontalpodautoscaling"),
            "not built: never runs"
        );
        assert!(s
            .missing()
            .contains(&"horizontal-pod-autoscaler-controller"));
    }

    #[test]
    fn without_star_only_named_controllers_run() {
        let s = Selection::parse("replicaset,garbage-collector-controller").unwrap();
        assert!(s.is_enabled("replicaset-controller"));
        assert!(s.is_enabled("garbagecollector"));
        assert!(!s.is_enabled("namespace"));
        assert!(s.missing().is_empty());
    }

    #[test]
    fn unknown_or_unbuilt_names_are_refused() {
        let e = Selection::parse("*,frobnicator").unwrap_err();
        assert!(e.to_string().contains("frobnicator"), "{e}");
        let e = Selection::parse("horizontalpodautoscaling").unwrap_err();
        assert!(e.to_string().contains("not built"), "{e}");
        assert!(Selection::parse("-horizontalpodautoscaling").is_ok());
    }
}
