//! One watch request: newline-delimited JSON events decoded into [`WatchEvent`]s.

use futures::stream::{BoxStream, Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{Error, Result};

/// One event of a watch stream.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    /// An object was created (or existed when a watch without resourceVersion began).
    Added(K),
    /// An object changed.
    Modified(K),
    /// An object was deleted; this is its last state.
    Deleted(K),
    /// No change, but everything up to this resourceVersion has been sent.
    Bookmark(Bookmark),
    /// The server ended the watch with a Status; code 410 means the resourceVersion
    /// is too old and the caller must list again.
    Error(Box<Status>),
}

/// What a BOOKMARK event tells: how far the watch has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bookmark {
    /// The resourceVersion to watch from next time.
    pub resource_version: String,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    type_: String,
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct BookmarkObject {
    #[serde(default)]
    metadata: BookmarkMeta,
}

#[derive(Default, Deserialize)]
struct BookmarkMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

/// Decodes one line of a watch stream.
///
/// A bookmark's object is only read for its resourceVersion: it is an otherwise empty
/// object that a typed kind with required fields would refuse.
pub fn decode_event<K: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<K>, serde_json::Error> {
    use serde::de::Error as _;
    let raw: RawEvent = serde_json::from_slice(line)?;
    Ok(match raw.type_.as_str() {
        "ADDED" => WatchEvent::Added(serde_json::from_value(raw.object)?),
        "MODIFIED" => WatchEvent::Modified(serde_json::from_value(raw.object)?),
        "DELETED" => WatchEvent::Deleted(serde_json::from_value(raw.object)?),
        "BOOKMARK" => {
            let b: BookmarkObject = serde_json::from_value(raw.object)?;
            WatchEvent::Bookmark(Bookmark {
                resource_version: b.metadata.resource_version,
            })
        }
        "ERROR" => WatchEvent::Error(Box::new(serde_json::from_value(raw.object)?)),
        other => {
            return Err(serde_json::Error::custom(format!(
                "unknown watch event type {other:?}"
            )))
        }
    })
}

/// Splits a byte stream into lines; a line may arrive across several chunks and a
/// chunk may hold several lines.
#[derive(Debug, Default)]
pub struct LineDecoder {
    buf: Vec<u8>,
}

impl LineDecoder {
    /// Adds a chunk and returns the complete, non-blank lines it finished.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&rest[..i]);
            let line = std::mem::take(&mut self.buf);
            if !line.trim_ascii().is_empty() {
                lines.push(line);
            }
            rest = &rest[i + 1..];
        }
        self.buf.extend_from_slice(rest);
        lines
    }

    /// What is left after the stream ended: a last line without a newline, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let line = std::mem::take(&mut self.buf);
        (!line.trim_ascii().is_empty()).then_some(line)
    }
}

/// Turns a response body into decoded events. Ends after the body ends or fails;
/// `what` names the request in errors.
pub(crate) fn event_stream<K, S, B>(
    body: S,
    what: String,
) -> BoxStream<'static, Result<WatchEvent<K>>>
where
    K: DeserializeOwned + Send + 'static,
    S: Stream<Item = Result<B, reqwest::Error>> + Send + 'static,
    B: AsRef<[u8]>,
{
    struct State<S> {
        body: Option<std::pin::Pin<Box<S>>>,
        decoder: LineDecoder,
        ready: std::collections::VecDeque<Vec<u8>>,
        what: String,
    }

    let state = State {
        body: Some(Box::pin(body)),
        decoder: LineDecoder::default(),
        ready: Default::default(),
        what,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(line) = st.ready.pop_front() {
                let event = decode_event(&line).map_err(|source| Error::Decode {
                    what: format!(
                        "watch event from {} (line: {})",
                        st.what,
                        String::from_utf8_lossy(&line[..line.len().min(200)])
                    ),
                    source,
                });
                return Some((event, st));
            }
            let body = st.body.as_mut()?;
            match body.next().await {
                Some(Ok(chunk)) => st.ready.extend(st.decoder.push(chunk.as_ref())),
                Some(Err(source)) => {
                    st.body = None;
                    let err = Error::Http {
                        method: "GET".into(),
                        path: st.what.clone(),
                        source,
                    };
                    return Some((Err(err), st));
                }
                None => {
                    st.body = None;
                    st.ready.extend(st.decoder.finish());
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn decodes_each_event_type() {
        let added: WatchEvent<Pod> = decode_event(
            br#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","resourceVersion":"3"}}}"#,
        )
        .unwrap();
        let WatchEvent::Added(pod) = added else {
            panic!("{added:?}")
        };
        assert_eq!(pod.metadata.name.as_deref(), Some("a"));

        let e: WatchEvent<Pod> =
            decode_event(br#"{"type":"MODIFIED","object":{"metadata":{"name":"a"}}}"#).unwrap();
        assert!(matches!(e, WatchEvent::Modified(_)));
        let e: WatchEvent<Pod> =
            decode_event(br#"{"type":"DELETED","object":{"metadata":{"name":"a"}}}"#).unwrap();
        assert!(matches!(e, WatchEvent::Deleted(_)));

        let e: WatchEvent<Pod> = decode_event(
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12","annotations":{"k8s.io/initial-events-end":"true"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            WatchEvent::Bookmark(Bookmark {
                resource_version: "12".into()
            })
        );
    }

    #[test]
    fn decodes_error_events_with_status() {
        let e: WatchEvent<Pod> = decode_event(
            br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#,
        )
        .unwrap();
        let WatchEvent::Error(status) = e else {
            panic!("{e:?}")
        };
        assert_eq!(status.code, Some(410));
        assert_eq!(status.reason.as_deref(), Some("Expired"));
    }

    #[test]
    fn refuses_unknown_types_and_wrong_kinds() {
        assert!(decode_event::<Pod>(br#"{"type":"NOPE","object":{}}"#).is_err());
        assert!(decode_event::<Pod>(br#"{"type":"ADDED","object":{"kind":"Node"}}"#).is_err());
        assert!(decode_event::<Pod>(b"{not json").is_err());
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut d = LineDecoder::default();
        assert!(d.push(b"{\"a\":").is_empty());
        assert!(d.push(b"1").is_empty());
        assert_eq!(
            d.push(b"}\n{\"b\":2}\n\n{\"c\""),
            vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert_eq!(d.push(b":3}\r\n"), vec![b"{\"c\":3}\r".to_vec()]);
        assert_eq!(d.push(b"{\"d\":4}"), Vec::<Vec<u8>>::new());
        assert_eq!(d.finish(), Some(b"{\"d\":4}".to_vec()));
        assert_eq!(d.finish(), None);
    }

    #[tokio::test]
    async fn event_stream_decodes_chunked_body_and_reports_bad_lines() {
        let chunks: Vec<Result<&'static [u8], reqwest::Error>> = vec![
            Ok(b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n{\"type\":\"BOOK"),
            Ok(b"MARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\n"),
            Ok(b"garbage\n"),
            Ok(b"{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}"),
        ];
        let events: Vec<_> =
            event_stream::<Pod, _, _>(futures::stream::iter(chunks), "/api/v1/pods".into())
                .collect()
                .await;
        assert_eq!(events.len(), 4);
        assert!(matches!(events[0], Ok(WatchEvent::Added(_))));
        assert!(matches!(&events[1], Ok(WatchEvent::Bookmark(b)) if b.resource_version == "9"));
        let err = events[2].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("watch event from /api/v1/pods") && err.contains("garbage"),
            "{err}"
        );
        assert!(matches!(events[3], Ok(WatchEvent::Deleted(_))));
    }
}
