//! A check of cron schedules in the standard five-field syntax (plus `@hourly`-style
//! descriptors), with the messages of the cron parser Kubernetes uses. A full cron
//! implementation will come with the CronJob controller.

/// Field names and ranges of the five fields, with the names allowed in place of numbers.
const FIELDS: [(u32, u32, &[&str]); 5] = [
    (0, 59, &[]),
    (0, 23, &[]),
    (1, 31, &[]),
    (
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Checks a schedule; `Err` carries the parser's message.
pub(crate) fn check_schedule(schedule: &str) -> Result<(), String> {
    let trimmed = schedule.trim();
    if let Some(rest) = trimmed.strip_prefix("@every ") {
        return check_duration(rest.trim())
            .map_err(|_| format!("failed to parse duration {trimmed}: {rest}"));
    }
    if trimmed.starts_with('@') {
        if DESCRIPTORS.contains(&trimmed) {
            return Ok(());
        }
        return Err(format!("unrecognized descriptor: {trimmed}"));
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, (min, max, names)) in fields.iter().zip(FIELDS) {
        for part in field.split(',') {
            check_range(part, min, max, names)?;
        }
    }
    Ok(())
}

fn check_range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => {
            if s.contains('/') {
                return Err(format!("too many slashes: {expr}"));
            }
            (r, Some(s))
        }
        None => (expr, None),
    };
    let (start, end) = if range == "*" || range == "?" {
        (min, max)
    } else {
        let mut bounds = range.split('-');
        let lo = bounds.next().unwrap_or("");
        let hi = bounds.next();
        if bounds.next().is_some() {
            return Err(format!("too many hyphens: {expr}"));
        }
        let lo = parse_value(lo, names)?;
        let hi = match hi {
            Some(h) => parse_value(h, names)?,
            None => lo,
        };
        (lo, hi)
    };
    if let Some(s) = step {
        let s = parse_int(s)?;
        if s == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

fn parse_value(s: &str, names: &[&str]) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        // Months count from 1, weekdays from 0.
        let base = if names.len() == 12 { 1 } else { 0 };
        return Ok(i as u32 + base);
    }
    parse_int(s)
}

fn parse_int(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
            super::go_quote(s)
        ));
    }
    s.parse()
        .map_err(|_| format!("failed to parse int from {s}: value out of range"))
}

/// A Go duration (`1h30m`, `90s`): numbers each followed by a unit.
fn check_duration(s: &str) -> Result<(), ()> {
    let units = ["ns", "us", "µs", "ms", "s", "m", "h"];
    let mut rest = s;
    if rest.is_empty() {
        return Err(());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(());
        }
        rest = &rest[digits..];
        let unit = units
            .iter()
            .filter(|u| rest.starts_with(*u))
            .max_by_key(|u| u.len())
            .ok_or(())?;
        rest = &rest[unit.len()..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert!(check_schedule("*/5 * * * *").is_ok());
        assert!(check_schedule("0 0 1 jan mon").is_ok());
        assert!(check_schedule("0 0-23/2 * * 1-5").is_ok());
        assert!(check_schedule("@hourly").is_ok());
        assert!(check_schedule("@every 1h30m").is_ok());
        assert_eq!(
            check_schedule("foo").unwrap_err(),
            "expected exactly 5 fields, found 1: [foo]"
        );
        assert_eq!(
            check_schedule("60 * * * *").unwrap_err(),
            "end of range (60) above maximum (59): 60"
        );
        assert!(check_schedule("* * * * * *").is_err());
        assert!(check_schedule("5-1 * * * *").is_err());
        assert!(check_schedule("*/0 * * * *").is_err());
        assert!(check_schedule("@often").is_err());
    }
}
