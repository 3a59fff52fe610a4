//! Pure helpers of the benchmarks (the `skiff-bench` binaries), here so that their unit
//! tests run in `make test` while the benchmarks themselves are not built by it.

use serde_json::json;

/// Keys are 8 bytes: `format!("{:08}", n)` for n below this.
pub const KEY_SPACE: u64 = 10_000;

/// The 8-byte key of `n`.
pub fn key(n: u64) -> String {
    format!("{n:08}")
}

/// The `q` quantile (nearest rank) of sorted microsecond latencies, in milliseconds.
pub fn percentile_ms<T: Copy + Into<u64>>(sorted_us: &[T], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted_us.len() as f64 * q).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1].into() as f64 / 1000.0
}

/// etcdctl `check perf`'s verdict on one load.
pub struct CheckPerf {
    /// The load (`s`, `m`, `l`).
    pub load: &'static str,
    /// Whether it passed.
    pub pass: bool,
    /// Writes per second.
    pub throughput: Option<f64>,
    /// The slowest request, in seconds.
    pub slowest_s: Option<f64>,
    /// The standard deviation of request times, in seconds.
    pub stddev_s: Option<f64>,
    /// Its PASS/FAIL lines.
    pub details: Vec<String>,
}

/// Reads etcdctl's verdicts: `PASS: Throughput is 151 writes/s`, `PASS: Stddev is
/// 0.0007s`, …, then a lone `PASS` or `FAIL`. etcd 3.4 prints a slow request's verdict
/// without its `FAIL: ` ("Slowest request took too long: 0.93s"), and a verdict can
/// follow the progress bar on the same line, so verdicts are looked for by topic too.
pub fn parse_check_perf(load: &'static str, text: &str) -> CheckPerf {
    const STARTS: [&str; 5] = [
        "PASS: ",
        "FAIL: ",
        "Throughput",
        "Slowest request",
        "Stddev",
    ];
    let details: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let at = STARTS.iter().filter_map(|s| l.find(s)).min()?;
            let verdict = l[at..].trim();
            Some(
                if verdict.starts_with("PASS: ") || verdict.starts_with("FAIL: ") {
                    verdict.to_string()
                } else if verdict.contains(" too ") {
                    format!("FAIL: {verdict}")
                } else {
                    format!("PASS: {verdict}")
                },
            )
        })
        .collect();
    let verdicts: Vec<&str> = text.lines().map(str::trim).collect();
    let pass = verdicts.contains(&"PASS") && !verdicts.contains(&"FAIL");
    let detail = |topic: &str| details.iter().find(|l| l.contains(topic));
    let throughput = detail("Throughput").and_then(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "writes/s")?;
        words.get(at.checked_sub(1)?)?.parse().ok()
    });
    // The figure is the last word, in seconds: "…took 0.016644s", "…too high: 0.2s".
    let seconds = |topic: &str| {
        detail(topic).and_then(|l| l.split_whitespace().last()?.strip_suffix('s')?.parse().ok())
    };
    CheckPerf {
        load,
        pass,
        throughput,
        slowest_s: seconds("Slowest request"),
        stddev_s: seconds("Stddev"),
        details,
    }
}

/// A small realistic pod: one container with an image, a port and requests, one label.
pub fn pod_body(name: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{
            "name": "app",
            "image": "registry.k8s.io/nginx-slim:0.27",
            "ports": [{"containerPort": 80}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        }]},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_passing_check_perf() {
        let out = "59 / 60 Booooo 98.33%\n60 / 60 Boooo 100.00% 1m0s\nPASS: Throughput is 151 writes/s\nPASS: Slowest request took 0.016644s\nPASS: Stddev is 0.000692s\nPASS\n";
        let r = parse_check_perf("m", out);
        assert!(r.pass);
        assert_eq!(r.throughput, Some(151.0));
        assert_eq!(r.slowest_s, Some(0.016644));
        assert_eq!(r.stddev_s, Some(0.000692));
        assert_eq!(r.details.len(), 3);
    }

    #[test]
    fn parses_a_failing_check_perf() {
        let out = "60 / 60 Boooo 100.00% 1m0sFAIL: Throughput too low: 3000 writes/s\nSlowest request took too long: 0.6s\nPASS: Stddev is 0.01s\nFAIL\n";
        let r = parse_check_perf("l", out);
        assert!(!r.pass);
        assert_eq!(r.throughput, Some(3000.0));
        assert_eq!(r.slowest_s, Some(0.6));
        assert_eq!(r.stddev_s, Some(0.01));
        assert_eq!(r.details[0], "FAIL: Throughput too low: 3000 writes/s");
        assert_eq!(r.details[1], "FAIL: Slowest request took too long: 0.6s");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.50), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v, 1.0), 100.0);
        assert_eq!(percentile_ms(&[7000u64], 0.99), 7.0);
    }

    #[test]
    fn keys_are_eight_bytes() {
        assert_eq!(key(0).len(), 8);
        assert_eq!(key(KEY_SPACE - 1).len(), 8);
    }

    #[test]
    fn pod_bodies_are_pods() {
        let v: serde_json::Value = serde_json::from_str(&pod_body("p")).unwrap();
        assert_eq!(v["kind"], "Pod");
        assert_eq!(v["metadata"]["name"], "p");
        assert_eq!(v["spec"]["containers"].as_array().unwrap().len(), 1);
    }
}
