//! SPDY/3.1 framing, as much of it as Kubernetes' streaming protocols use: what kubectl
//! port-forward speaks (directly after `Upgrade: SPDY/3.1`, or tunnelled in WebSocket
//! binary messages).
//!
//! Every frame starts with 8 bytes. A control frame has the high bit set, the version
//! (3) and its type, then flags and a 24-bit length; a data frame has the stream id
//! there instead. Header blocks (in SYN_STREAM, SYN_REPLY and HEADERS) are compressed
//! with zlib, one stream per direction for the whole connection, primed with the
//! protocol's preset dictionary and sync-flushed after each block.
//!
//! Flow control (WINDOW_UPDATE) is read and ignored, as Go's spdystream (kubectl's and
//! the kubelet's library) does: it never sends window updates, so a sender that waited
//! for them would stall after the first 64 KiB. TCP's own flow control bounds the buffers.

use std::io;
use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this module speaks.
pub const VERSION: u16 = 3;

/// `FLAG_FIN`: the sender's last frame on the stream.
const FLAG_FIN: u8 = 0x01;

/// The largest header block accepted after decompression; kubectl's are a few dozen
/// bytes, and a bound keeps a compressed bomb from taking the kubelet's memory.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// RST_STREAM status codes (SPDY/3 section 2.6.3) skiff sends.
pub mod rst {
    /// The frame was not valid for the stream.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream id is already in use.
    pub const STREAM_IN_USE: u32 = 8;
}

/// GOAWAY status: the connection ends because of a protocol error.
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// The header names and values of a block, names lowercase as SPDY requires.
pub type Headers = Vec<(String, String)>;

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream's id (odd from the client).
        stream_id: u32,
        /// The opener sends nothing more.
        fin: bool,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The accepted stream.
        stream_id: u32,
        /// The replier sends nothing more.
        fin: bool,
        /// Reply headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (see [`rst`]).
        status: u32,
    },
    /// Connection settings; skiff needs none of them.
    Settings,
    /// Asks the peer to echo the id back.
    Ping {
        /// Odd from the client, even from the server.
        id: u32,
    },
    /// The sender accepts no new streams.
    GoAway {
        /// The last stream the sender processed.
        last_good_stream_id: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// The sender sends nothing more.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// Flow-control credit (ignored, see the module comment).
    WindowUpdate {
        /// The stream, or 0 for the connection.
        stream_id: u32,
        /// The credit.
        delta: u32,
    },
    /// Bytes of a stream.
    Data {
        /// The stream.
        stream_id: u32,
        /// The sender's last frame on this stream.
        fin: bool,
        /// The payload.
        data: Vec<u8>,
    },
    /// A control frame type SPDY/3.1 does not define; the spec says to ignore it.
    Unknown {
        /// The frame's type.
        kind: u16,
    },
}

/// SPDY/3's preset dictionary for header compression: 61 length-prefixed words, then
/// raw text. Its Adler-32 (`0xe3c6a7c2`) is the dictionary id in every zlib stream.
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        const WORDS: [&str; 61] = [
            "options", "head", "post", "put", "delete", "trace", "accept",
            "accept-charset", "accept-encoding", "accept-language", "accept-ranges", "age",
            "allow", "authorization", "cache-control", "connection", "content-base",
            "content-encoding", "content-language", "content-length", "content-location",
            "content-md5", "content-range", "content-type", "date", "etag", "expect",
            "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
            "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards",
            "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
            "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
            "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get",
            "status", "200 OK", "version", "HTTP/1.1", "url",
        ];
        const MORE_WORDS: [&str; 4] = ["public", "set-cookie", "keep-alive", "origin"];
        const STATUS_CODES: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505";
        const REASONS: &str = "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable";
        const DATES: &str = "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT";
        const VALUES: &str = "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
        let mut d = Vec::with_capacity(1423);
        for w in WORDS.iter().chain(&MORE_WORDS) {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        for tail in [STATUS_CODES, REASONS, DATES, VALUES] {
            d.extend_from_slice(tail.as_bytes());
        }
        d
    })
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The sending side's zlib stream for header blocks.
struct HeaderCompressor(Compress);

impl HeaderCompressor {
    fn new() -> io::Result<Self> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(dictionary())
            .map_err(|e| io::Error::other(format!("priming the header compressor: {e}")))?;
        Ok(Self(z))
    }

    fn compress(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = self.0.total_in();
            self.0
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(format!("compressing headers: {e}")))?;
            consumed += (self.0.total_in() - before) as usize;
            // A sync flush is complete once all input is taken and the output did not
            // fill: deflate stops early only when it runs out of room.
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's zlib stream for header blocks.
struct HeaderDecompressor(Decompress);

impl HeaderDecompressor {
    fn new() -> Self {
        Self(Decompress::new(true))
    }

    fn decompress(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(invalid(format!(
                        "a header block is larger than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.capacity().max(64));
            }
            let before = self.0.total_in();
            let result = self
                .0
                .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.0.total_in() - before) as usize;
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(invalid("the peer ended its header compression stream"))
                }
                Ok(_) if consumed == block.len() && out.len() < out.capacity() => return Ok(out),
                Ok(Status::BufError) if consumed == block.len() => return Ok(out),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(dictionary()).map_err(|e| {
                        invalid(format!(
                            "the peer's header compression uses another dictionary than SPDY/3's: {e}"
                        ))
                    })?;
                }
                Err(e) => return Err(invalid(format!("decompressing headers: {e}"))),
            }
        }
    }
}

/// Encodes a header block (before compression): a count, then length-prefixed names and
/// values.
pub fn encode_headers(headers: &Headers) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        for s in [name.to_ascii_lowercase().as_str(), value.as_str()] {
            b.extend_from_slice(&(s.len() as u32).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
        }
    }
    b
}

/// Decodes a decompressed header block. A value holding several values separated by
/// NUL becomes one entry per value, as HTTP headers would.
pub fn decode_headers(mut b: &[u8]) -> io::Result<Headers> {
    fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> io::Result<&'a [u8]> {
        if b.len() < n {
            return Err(invalid(format!("a header block ends inside {what}")));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn take_u32(b: &mut &[u8], what: &str) -> io::Result<usize> {
        let raw = take(b, 4, what)?;
        Ok(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
    }
    fn text(raw: &[u8], what: &str) -> io::Result<String> {
        String::from_utf8(raw.to_vec())
            .map_err(|_| invalid(format!("a header {what} is not UTF-8")))
    }
    let count = take_u32(&mut b, "the count")?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let n = take_u32(&mut b, "a name's length")?;
        let name = text(take(&mut b, n, "a name")?, "name")?;
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "header name {name:?} is empty or not lowercase"
            )));
        }
        let n = take_u32(&mut b, "a value's length")?;
        let value = text(take(&mut b, n, "a value")?, "value")?;
        for v in value.split('\0') {
            headers.push((name.clone(), v.to_string()));
        }
    }
    Ok(headers)
}

/// The first value of a header, by its lowercase name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn stream_id_at(b: &[u8], at: usize) -> u32 {
    u32_at(b, at) & 0x7fff_ffff
}

/// Reads frames from one direction of a connection.
pub struct FrameReader<R> {
    io: R,
    headers: HeaderDecompressor,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads from `io`.
    pub fn new(io: R) -> Self {
        Self {
            io,
            headers: HeaderDecompressor::new(),
        }
    }

    /// The next frame, or None at a clean end of the connection (between frames).
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        self.io.read_exact(&mut head[1..]).await?;
        let flags = head[4];
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; length];
        self.io.read_exact(&mut payload).await?;
        self.decode(head, flags, payload).map(Some)
    }

    fn decode(&mut self, head: [u8; 8], flags: u8, p: Vec<u8>) -> io::Result<Frame> {
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            return Ok(Frame::Data {
                stream_id: stream_id_at(&head, 0),
                fin,
                data: p,
            });
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(invalid(format!(
                "SPDY version {version} is not served; skiff speaks SPDY/3.1"
            )));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |n: usize, name: &str| {
            if p.len() < n {
                Err(invalid(format!(
                    "a {name} frame of {} bytes is shorter than {n}",
                    p.len()
                )))
            } else {
                Ok(())
            }
        };
        Ok(match kind {
            1 => {
                need(10, "SYN_STREAM")?;
                let headers = decode_headers(&self.headers.decompress(&p[10..])?)?;
                Frame::SynStream {
                    stream_id: stream_id_at(&p, 0),
                    fin,
                    headers,
                }
            }
            2 => {
                need(4, "SYN_REPLY")?;
                let headers = decode_headers(&self.headers.decompress(&p[4..])?)?;
                Frame::SynReply {
                    stream_id: stream_id_at(&p, 0),
                    fin,
                    headers,
                }
            }
            3 => {
                need(8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: stream_id_at(&p, 0),
                    status: u32_at(&p, 4),
                }
            }
            4 => Frame::Settings,
            6 => {
                need(4, "PING")?;
                Frame::Ping { id: u32_at(&p, 0) }
            }
            7 => {
                need(8, "GOAWAY")?;
                Frame::GoAway {
                    last_good_stream_id: stream_id_at(&p, 0),
                    status: u32_at(&p, 4),
                }
            }
            8 => {
                need(4, "HEADERS")?;
                let headers = decode_headers(&self.headers.decompress(&p[4..])?)?;
                Frame::Headers {
                    stream_id: stream_id_at(&p, 0),
                    fin,
                    headers,
                }
            }
            9 => {
                need(8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: stream_id_at(&p, 0),
                    delta: u32_at(&p, 4) & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        })
    }
}

/// Writes frames to one direction of a connection.
pub struct FrameWriter<W> {
    io: W,
    headers: HeaderCompressor,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Writes to `io`.
    pub fn new(io: W) -> io::Result<Self> {
        Ok(Self {
            io,
            headers: HeaderCompressor::new()?,
        })
    }

    /// Encodes and writes one frame.
    pub async fn write(&mut self, frame: &Frame) -> io::Result<()> {
        let bytes = self.encode(frame)?;
        self.io.write_all(&bytes).await?;
        self.io.flush().await
    }

    /// Ends the connection's sending side.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    fn encode(&mut self, frame: &Frame) -> io::Result<Vec<u8>> {
        let (kind, fin, body) = match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let mut b = Vec::with_capacity(8 + data.len());
                b.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                b.push(if *fin { FLAG_FIN } else { 0 });
                b.extend_from_slice(&length_bytes(data.len())?);
                b.extend_from_slice(data);
                return Ok(b);
            }
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                let mut b = stream_id.to_be_bytes().to_vec();
                b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                b.extend(self.headers.compress(&encode_headers(headers))?);
                (1, *fin, b)
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let mut b = stream_id.to_be_bytes().to_vec();
                b.extend(self.headers.compress(&encode_headers(headers))?);
                (2, *fin, b)
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let mut b = stream_id.to_be_bytes().to_vec();
                b.extend(self.headers.compress(&encode_headers(headers))?);
                (8, *fin, b)
            }
            Frame::RstStream { stream_id, status } => (3, false, pair(*stream_id, *status)),
            Frame::Settings => (4, false, 0u32.to_be_bytes().to_vec()),
            Frame::Ping { id } => (6, false, id.to_be_bytes().to_vec()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => (7, false, pair(*last_good_stream_id, *status)),
            Frame::WindowUpdate { stream_id, delta } => (9, false, pair(*stream_id, *delta)),
            Frame::Unknown { kind } => {
                return Err(io::Error::other(format!(
                    "frame type {kind} cannot be sent"
                )))
            }
        };
        let mut b = Vec::with_capacity(8 + body.len());
        b.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        b.extend_from_slice(&(kind as u16).to_be_bytes());
        b.push(if fin { FLAG_FIN } else { 0 });
        b.extend_from_slice(&length_bytes(body.len())?);
        b.extend(body);
        Ok(b)
    }
}

fn pair(a: u32, b: u32) -> Vec<u8> {
    let mut v = a.to_be_bytes().to_vec();
    v.extend_from_slice(&b.to_be_bytes());
    v
}

fn length_bytes(n: usize) -> io::Result<[u8; 3]> {
    if n > 0x00ff_ffff {
        return Err(io::Error::other(format!(
            "a frame of {n} bytes does not fit SPDY's 24-bit length"
        )));
    }
    let [_, a, b, c] = (n as u32).to_be_bytes();
    Ok([a, b, c])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"utf-,*,enq=0."));
        // zlib names a preset dictionary by its Adler-32; Go's spdy framer (kubectl's)
        // compresses with the one whose id is 0xe3c6a7c2.
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in d {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn frames_survive_a_round_trip_with_one_compression_stream() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                fin: false,
                headers: headers(&[
                    ("streamtype", "error"),
                    ("port", "8080"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynStream {
                stream_id: 3,
                fin: true,
                headers: headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream_id: 3,
                fin: false,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                fin: false,
                headers: headers(&[("a", "1"), ("a", "2")]),
            },
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: vec![7; 70_000],
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: vec![],
            },
            Frame::Ping { id: 1 },
            Frame::RstStream {
                stream_id: 5,
                status: rst::REFUSED_STREAM,
            },
            Frame::WindowUpdate {
                stream_id: 3,
                delta: 65536,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
            Frame::Settings,
        ];
        let mut bytes = Vec::new();
        let mut w = FrameWriter::new(&mut bytes).unwrap();
        for f in &frames {
            w.write(f).await.unwrap();
        }
        let mut r = FrameReader::new(bytes.as_slice());
        let mut read = Vec::new();
        while let Some(f) = r.next().await.unwrap() {
            read.push(f);
        }
        // Two values of one name travel NUL-joined only when the sender joins them;
        // skiff sends them as two entries, and each decodes as itself.
        assert_eq!(read, frames);
    }

    #[tokio::test]
    async fn a_go_style_header_block_decodes() {
        // What Go's framer sends: one zlib stream primed with the dictionary (FDICT
        // set), one sync-flushed block per frame. flate2 with the dictionary stands in
        // for it; the decoder must ask for and accept the dictionary itself.
        let mut z = HeaderCompressor::new().unwrap();
        let first = z
            .compress(&encode_headers(&headers(&[("streamtype", "error")])))
            .unwrap();
        assert_eq!(first[1] & 0x20, 0x20, "FDICT is set");
        assert_eq!(&first[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        let second = z
            .compress(&encode_headers(&headers(&[
                ("streamtype", "data"),
                ("x", "a\0b"),
            ])))
            .unwrap();
        let mut d = HeaderDecompressor::new();
        assert_eq!(
            decode_headers(&d.decompress(&first).unwrap()).unwrap(),
            headers(&[("streamtype", "error")])
        );
        assert_eq!(
            decode_headers(&d.decompress(&second).unwrap()).unwrap(),
            headers(&[("streamtype", "data"), ("x", "a"), ("x", "b")])
        );
    }

    #[tokio::test]
    async fn bad_frames_are_errors_not_panics() {
        // SPDY/2.
        let v2 = [0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        let e = FrameReader::new(&v2[..]).next().await.unwrap_err();
        assert!(e.to_string().contains("SPDY version 2"), "{e}");
        // A PING too short.
        let short = [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 1];
        assert!(FrameReader::new(&short[..]).next().await.is_err());
        // A SYN_STREAM whose header block is not zlib.
        let mut junk = vec![0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14];
        junk.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        assert!(FrameReader::new(junk.as_slice()).next().await.is_err());
        // A frame cut short by the end of the connection.
        let cut = [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0];
        assert!(FrameReader::new(&cut[..]).next().await.is_err());
        // Header blocks that lie about their lengths, or use uppercase names.
        assert!(decode_headers(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        assert!(decode_headers(&encode_headers(&headers(&[("ok", "v")]))).is_ok());
        let mut upper = vec![0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0];
        assert!(decode_headers(&upper).is_err());
        upper[8] = b'a';
        assert_eq!(decode_headers(&upper).unwrap(), headers(&[("a", "")]));
        // Unknown control types are skipped, as the spec says.
        let unknown = [0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 1, 9];
        assert_eq!(
            FrameReader::new(&unknown[..]).next().await.unwrap(),
            Some(Frame::Unknown { kind: 10 })
        );
    }
}
