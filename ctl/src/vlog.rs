//! `-v N`: kubectl's klog-style request logging on stderr, from the client's per-request
//! trace events (6: each response's verb, URL, status and time; 8: headers; 9: bodies).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The layer; `server` turns the response's path back into a URL.
pub struct KlogLayer {
    /// `-v`.
    pub level: u8,
    /// The API server's base URL.
    pub server: std::sync::Mutex<String>,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = format!("{value:?}");
        if field.name() != "message" {
            // Display-captured values (`%x`) come through here unquoted already.
            s = s.trim_matches('"').to_string();
        }
        self.0.insert(field.name().to_string(), s);
    }
}

fn prefix(file_line: &str) -> String {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    format!(
        "I{:02}{:02} {:02}:{:02}:{:02}.{:06} {:>7} {file_line}] ",
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.subsec_nanosecond() / 1000,
        std::process::id()
    )
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn headers_block(h: &str) -> String {
    let mut out = String::from("<\n");
    for line in h.lines() {
        let _ = writeln!(out, "\t{line}");
    }
    out.push_str(" >");
    out
}

impl KlogLayer {
    fn wants(&self, meta: &Metadata<'_>) -> bool {
        if self.level < 6 {
            return false;
        }
        match meta.target() {
            skiff_client::HTTP_LOG_TARGET => self.level >= 8 || *meta.level() <= Level::DEBUG,
            "skiffctl::loader" => true,
            _ => false,
        }
    }
}

impl<S: Subscriber> Layer<S> for KlogLayer {
    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.wants(meta)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !self.wants(meta) {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let get = |k: &str| f.0.get(k).cloned().unwrap_or_default();
        let message = get("message");
        let mut out = String::new();
        if meta.target() == "skiffctl::loader" {
            out.push_str(&prefix("loader.go:402"));
            let _ = write!(out, "Config loaded from file:  {}", get("path"));
            if let Ok(mut s) = self.server.lock() {
                *s = get("server");
            }
            eprintln!("{out}");
            return;
        }
        match message.as_str() {
            "Request" => {
                if self.level >= 9 {
                    let _ = writeln!(
                        out,
                        "{}\"Request Body\" body={}",
                        prefix("helper.go:105"),
                        quote(&get("body"))
                    );
                }
                let mut headers = format!("Accept: {}", get("accept"));
                if !get("content_type").is_empty() {
                    let _ = write!(headers, "\nContent-Type: {}", get("content_type"));
                }
                let _ = write!(
                    out,
                    "{}\"Request\" verb={} url={} headers={}",
                    prefix("round_trippers.go:527"),
                    quote(&get("verb")),
                    quote(&get("url")),
                    headers_block(&headers)
                );
            }
            "Response" => {
                let server = self.server.lock().map(|s| s.clone()).unwrap_or_default();
                if self.level >= 8 {
                    let _ = write!(
                        out,
                        "{}\"Response\" status={} headers={} milliseconds={}",
                        prefix("round_trippers.go:632"),
                        quote(&get("status")),
                        headers_block(&get("headers")),
                        get("milliseconds")
                    );
                } else {
                    let _ = write!(
                        out,
                        "{}\"Response\" verb={} url={} status={} milliseconds={}",
                        prefix("round_trippers.go:632"),
                        quote(&get("verb")),
                        quote(&format!("{server}{}", get("path"))),
                        quote(&get("status")),
                        get("milliseconds")
                    );
                }
                if self.level >= 9 && !get("body").is_empty() {
                    let _ = write!(
                        out,
                        "\n{}\"Response Body\" body={}",
                        prefix("helper.go:105"),
                        quote(&get("body"))
                    );
                }
            }
            _ => return,
        }
        eprintln!("{out}");
    }
}
