//! Cron schedules as Kubernetes' CronJob reads them (robfig/cron's standard parser):
//! five fields (minute, hour, day of month, month, day of week) with `*`, `?`, lists,
//! ranges, steps and month/weekday names; the `@yearly`, `@monthly`, `@weekly`,
//! `@daily`, `@hourly` descriptors and `@every <duration>`; evaluated in a time zone.
//!
//! Written here over jiff, which the workspace already uses, rather than taking a cron
//! crate: the cron crates on crates.io are built on chrono and chrono-tz.

use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Five cron fields as bit sets.
    Fields {
        /// Minutes 0..=59.
        minute: u64,
        /// Hours 0..=23.
        hour: u64,
        /// Days of month 1..=31.
        dom: u64,
        /// Months 1..=12.
        month: u64,
        /// Weekdays 0..=6, Sunday 0.
        dow: u64,
        /// Day of month was `*` or `?`: then both day fields must match (else either).
        dom_star: bool,
        /// Day of week was `*` or `?`.
        dow_star: bool,
    },
    /// `@every <duration>`: a fixed interval.
    Every(Duration),
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], base: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + base);
    }
    s.parse()
        .map_err(|_| format!("failed to parse int from {s:?}"))
}

fn field(expr: &str, min: u32, max: u32, names: &[&str], base: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let (mut lo, mut hi) = if range == "*" || range == "?" {
            star = true;
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, base)?, value(b, names, base)?)
        } else {
            let v = value(range, names, base)?;
            (v, v)
        };
        let step = match step {
            Some(s) => {
                let s: u32 = s.parse().map_err(|_| format!("bad step in {part:?}"))?;
                if s == 0 {
                    return Err(format!("step of range should be a positive number: {part}"));
                }
                // "N/step" means N through the maximum.
                if lo == hi && range != "*" && range != "?" {
                    hi = max;
                }
                s
            }
            None => 1,
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        while lo <= hi {
            bits |= 1 << lo;
            lo += step;
        }
    }
    Ok((bits, star))
}

/// A Go duration such as `1h30m` or `90s`.
fn go_duration(s: &str) -> Result<Duration, String> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("bad number in duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

impl Schedule {
    /// Parses a schedule, with messages naming what is wrong.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if let Some(d) = spec.strip_prefix("@every ") {
            let d = go_duration(d.trim())?;
            // robfig rounds to whole seconds, and at least one.
            return Ok(Schedule::Every(Duration::from_secs(d.as_secs().max(1))));
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec:?}",
                f.len()
            ));
        }
        let (minute, _) = field(f[0], 0, 59, &[], 0)?;
        let (hour, _) = field(f[1], 0, 23, &[], 0)?;
        let (dom, dom_star) = field(f[2], 1, 31, &[], 0)?;
        let (month, _) = field(f[3], 1, 12, MONTHS, 1)?;
        // 7 is Sunday too, as robfig accepts it.
        let (mut dow, dow_star) = field(f[4], 0, 7, DAYS, 0)?;
        if dow & (1 << 7) != 0 {
            dow = (dow & !(1 << 7)) | 1;
        }
        Ok(Schedule::Fields {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, dt: DateTime) -> bool {
        let Schedule::Fields {
            dom,
            dow,
            dom_star,
            dow_star,
            ..
        } = self
        else {
            return true;
        };
        let d = dom & (1 << dt.day()) != 0;
        let w = dow & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        if *dom_star || *dow_star {
            d && w
        } else {
            d || w
        }
    }

    /// The first time strictly after `after` that the schedule fires, in `tz`; None when
    /// there is none within five years (e.g. February 30).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, month) = match self {
            Schedule::Every(d) => {
                let secs = i64::try_from(d.as_secs()).ok()?;
                return Timestamp::from_second(after.as_second() + secs).ok();
            }
            Schedule::Fields {
                minute,
                hour,
                month,
                ..
            } => (*minute, *hour, *month),
        };
        let start = tz.to_datetime(after);
        // The next whole minute.
        let mut dt = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + 5;
        while dt.year() <= limit {
            if month & (1 << dt.month()) == 0 {
                dt = dt
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .start_of_day();
                continue;
            }
            if !self.day_matches(dt) {
                dt = dt.start_of_day().checked_add(1.day()).ok()?;
                continue;
            }
            if hour & (1 << dt.hour()) == 0 {
                dt = dt
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if minute & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            // A wall time skipped by a DST change resolves to the later offset.
            let ts = tz.to_timestamp(dt).ok()?;
            if ts > after {
                return Some(ts);
            }
            dt = dt.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// The time zone named `name` from the system's zoneinfo (`timeZone` of a CronJob), or
/// the process's local zone (`TZ`, then /etc/localtime) for None, as the controller
/// manager evaluates schedules without timeZone in its own zone. UTC when the system
/// has no zone data for the local zone.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    let name = match name {
        Some(n) => n.to_string(),
        None => match std::env::var("TZ") {
            Ok(tz) if !tz.is_empty() => tz.trim_start_matches(':').to_string(),
            _ => {
                return Ok(std::fs::read("/etc/localtime")
                    .ok()
                    .and_then(|b| TimeZone::tzif("localtime", &b).ok())
                    .unwrap_or(TimeZone::UTC));
            }
        },
    };
    if name == "UTC" || name == "Etc/UTC" {
        return Ok(TimeZone::UTC);
    }
    let safe = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != ".." && p != ".")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
    if !safe {
        return Err(format!("invalid time zone name {name:?}"));
    }
    let bytes = std::fs::read(format!("/usr/share/zoneinfo/{name}"))
        .map_err(|e| format!("unknown time zone {name}: {e}"))?;
    TimeZone::tzif(&name, &bytes).map_err(|e| format!("time zone {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn standard_fields() {
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:16:00Z"),
            "2024-01-01T10:30:00Z"
        );
        assert_eq!(
            next("5 4 * * *", "2024-01-01T10:00:00Z"),
            "2024-01-02T04:05:00Z"
        );
        assert_eq!(
            next("0 0 1 jan *", "2024-03-01T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2024-01-05T10:00:00Z"),
            "2024-01-08T09:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("30 2/6 * * *", "2024-01-01T03:00:00Z"),
            "2024-01-01T08:30:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: either matches (the 13th, or a Friday).
        assert_eq!(
            next("0 0 13 * fri", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * fri", "2024-01-12T00:00:00Z"),
            "2024-01-13T00:00:00Z"
        );
        // One is `*`: both must.
        assert_eq!(
            next("0 0 * * fri", "2024-01-06T00:00:00Z"),
            "2024-01-12T00:00:00Z"
        );
    }

    #[test]
    fn descriptors_and_every() {
        assert_eq!(
            next("@hourly", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2024-01-01T10:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-01-01T10:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-01-31T10:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 1h30m", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:30:00Z"
        );
        assert!(Schedule::parse("@fortnightly").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("*/0 * * * *").is_err());
        assert!(Schedule::parse("0 0 30 2 *")
            .unwrap()
            .next(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC)
            .is_none());
    }

    #[test]
    fn time_zones() {
        let tz = time_zone(Some("UTC")).unwrap();
        assert_eq!(tz, TimeZone::UTC);
        assert!(time_zone(Some("../etc/passwd")).is_err());
        assert!(time_zone(Some("Not/AZone")).is_err());
        // 09:00 in Berlin in winter is 08:00 UTC. The zone data is Debian's tzdata,
        // which `make deps` installs.
        let berlin = time_zone(Some("Europe/Berlin"))
            .expect("no Europe/Berlin in /usr/share/zoneinfo: install tzdata (make deps)");
        let s = Schedule::parse("0 9 * * *").unwrap();
        let t = s.next(ts("2024-01-01T00:00:00Z"), &berlin).unwrap();
        assert_eq!(t.to_string(), "2024-01-01T08:00:00Z");
    }
}
