//! Progress display for long waits: an indicatif spinner on a terminal, nothing when
//! stderr is a pipe (tests and scripts read the final lines only).

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// A spinner with `message`, hidden unless stderr is a terminal.
pub fn spinner(message: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar of `total` steps with `message`, hidden unless stderr is a terminal.
pub fn bar(total: u64, message: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar
}

/// The image pulls under way among `events` for the pods named in `pods`: a container
/// whose newest image event is `Pulling` is still pulling. One line each,
/// `pulling "IMAGE" for POD on NODE (12s)`, oldest pull first.
pub fn pulls_in_progress(
    events: &[Value],
    pods: &HashSet<&str>,
    now: jiff::Timestamp,
) -> Vec<String> {
    // (pod, container field path) -> (time, whether it is a Pulling event, event)
    let mut newest: BTreeMap<(&str, &str), (jiff::Timestamp, bool, &Value)> = BTreeMap::new();
    for e in events {
        let io = &e["involvedObject"];
        let pod = io["name"].as_str().unwrap_or_default();
        if io["kind"] != "Pod" || !pods.contains(pod) {
            continue;
        }
        let pulling = match e["reason"].as_str() {
            Some("Pulling") => true,
            Some("Pulled" | "Failed" | "BackOff" | "ErrImageNeverPull") => false,
            _ => continue,
        };
        let Some(at) = event_time(e) else { continue };
        let key = (pod, io["fieldPath"].as_str().unwrap_or_default());
        // Event times have one-second resolution: on a tie the pull has ended, since an
        // end is never reported before its start.
        let newer = newest
            .get(&key)
            .is_none_or(|(t, was_pulling, _)| (at, !pulling) > (*t, !was_pulling));
        if newer {
            newest.insert(key, (at, pulling, e));
        }
    }
    let mut pulls: Vec<(jiff::Timestamp, String)> = newest
        .into_iter()
        .filter(|(_, (_, pulling, _))| *pulling)
        .map(|((pod, _), (at, _, e))| {
            let message = e["message"].as_str().unwrap_or_default();
            let image = message.strip_prefix("Pulling image ").unwrap_or(message);
            let node = e["source"]["host"]
                .as_str()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default();
            let secs = (now.as_second() - at.as_second()).max(0);
            (at, format!("pulling {image} for {pod}{node} ({secs}s)"))
        })
        .collect();
    pulls.sort();
    pulls.into_iter().map(|(_, line)| line).collect()
}

/// When an event last happened, from whichever of its timestamps is set.
fn event_time(e: &Value) -> Option<jiff::Timestamp> {
    [
        &e["lastTimestamp"],
        &e["eventTime"],
        &e["firstTimestamp"],
        &e["metadata"]["creationTimestamp"],
    ]
    .into_iter()
    .find_map(|t| t.as_str()?.parse().ok())
}

/// A bar message naming at most two pulls.
pub fn pulls_message(pulls: &[String]) -> String {
    match pulls {
        [] => String::new(),
        [one] => one.clone(),
        [one, two] => format!("{one}; {two}"),
        [one, two, rest @ ..] => format!("{one}; {two}; and {} more", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(pod: &str, container: &str, reason: &str, at: &str, message: &str) -> Value {
        json!({
            "involvedObject": {"kind": "Pod", "name": pod,
                "fieldPath": format!("spec.containers{{{container}}}")},
            "reason": reason, "message": message, "lastTimestamp": at,
            "source": {"component": "kubelet", "host": "w1"},
        })
    }

    #[test]
    fn only_containers_whose_newest_image_event_is_pulling_are_pulling() {
        let events = [
            event(
                "web-1",
                "app",
                "Pulling",
                "2026-11-28T10:00:00Z",
                "Pulling image \"greet:2\"",
            ),
            event(
                "web-2",
                "app",
                "Pulling",
                "2026-11-28T10:00:05Z",
                "Pulling image \"greet:2\"",
            ),
            event(
                "web-2",
                "app",
                "Pulled",
                "2026-11-28T10:00:05Z",
                "Successfully pulled",
            ),
            event(
                "web-3",
                "app",
                "Pulling",
                "2026-11-28T10:00:01Z",
                "Pulling image \"greet:2\"",
            ),
            event(
                "web-3",
                "app",
                "Failed",
                "2026-11-28T10:00:02Z",
                "Failed to pull",
            ),
            event(
                "web-3",
                "app",
                "Pulling",
                "2026-11-28T10:00:09Z",
                "Pulling image \"greet:2\"",
            ),
            event(
                "other",
                "app",
                "Pulling",
                "2026-11-28T10:00:00Z",
                "Pulling image \"x\"",
            ),
            event(
                "web-1",
                "app",
                "Scheduled",
                "2026-11-28T10:00:09Z",
                "assigned",
            ),
        ];
        let pods = HashSet::from(["web-1", "web-2", "web-3"]);
        let now: jiff::Timestamp = "2026-11-28T10:00:12Z".parse().unwrap();
        assert_eq!(
            pulls_in_progress(&events, &pods, now),
            vec![
                "pulling \"greet:2\" for web-1 on w1 (12s)",
                "pulling \"greet:2\" for web-3 on w1 (3s)",
            ]
        );
    }

    #[test]
    fn the_message_names_two_pulls_and_counts_the_rest() {
        let pulls: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(pulls_message(&pulls), "a; b; and 2 more");
        assert_eq!(pulls_message(&pulls[..1]), "a");
        assert_eq!(pulls_message(&[]), "");
    }
}
