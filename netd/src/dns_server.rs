//! Cluster DNS served with `hickory-server`: questions in the cluster domain are
//! answered from the current [`Zone`]; the rest is forwarded to the node's upstream
//! resolver (from /etc/resolv.conf), with a timeout so that an upstream that hangs
//! costs a SERVFAIL, not a stuck client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Message, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, CNAME, SRV};
use hickory_server::proto::rr::{Name, RData, Record as DnsRecord, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::dns::{Answer, QueryType, Record, Zone, TTL};

/// How long a forwarded question may wait for the upstream resolver.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// What the DNS server shares with the daemon: the zone it answers from and counters.
#[derive(Debug, Default)]
pub struct DnsState {
    zone: RwLock<Arc<Zone>>,
    rotation: AtomicUsize,
    /// The upstream resolver, if the node has one.
    pub upstream: Option<SocketAddr>,
    /// Questions answered from the zone.
    pub answered: AtomicU64,
    /// Questions forwarded upstream.
    pub forwarded: AtomicU64,
    /// Forwarded questions that failed (timeout, unreachable, garbage).
    pub upstream_failures: AtomicU64,
}

impl DnsState {
    /// A state answering from an empty zone.
    pub fn new(upstream: Option<SocketAddr>) -> DnsState {
        DnsState {
            upstream,
            ..DnsState::default()
        }
    }

    /// Replaces the zone.
    pub fn set_zone(&self, zone: Zone) {
        *self.zone.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(zone);
    }

    fn zone(&self) -> Arc<Zone> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The first `nameserver` of a resolv.conf, on port 53; None when it names none, or
/// only `skip` (the cluster DNS address itself, which would loop).
pub fn upstream_from_resolv_conf(text: &str, skip: &[std::net::IpAddr]) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .find(|ip| !skip.contains(ip) && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// A running DNS server (UDP, and TCP when given a listener).
pub struct DnsServer(hickory_server::Server<Handler>);

impl DnsServer {
    /// Serves `state` on already bound sockets.
    pub fn start(
        state: Arc<DnsState>,
        udp: tokio::net::UdpSocket,
        tcp: Option<tokio::net::TcpListener>,
    ) -> DnsServer {
        let mut server = hickory_server::Server::new(Handler::new(state));
        server.register_socket(udp);
        if let Some(tcp) = tcp {
            server.register_listener(tcp, Duration::from_secs(10), 64);
        }
        DnsServer(server)
    }

    /// Stops serving and waits for in-flight answers.
    pub async fn shutdown(mut self) {
        let _ = self.0.shutdown_gracefully().await;
    }
}

/// The hickory request handler.
#[derive(Clone)]
pub struct Handler {
    state: Arc<DnsState>,
}

impl Handler {
    /// A handler over `state`.
    pub fn new(state: Arc<DnsState>) -> Handler {
        Handler { state }
    }
}

fn query_type(t: RecordType) -> QueryType {
    match t {
        RecordType::A => QueryType::A,
        RecordType::AAAA => QueryType::Aaaa,
        RecordType::SRV => QueryType::Srv,
        RecordType::CNAME => QueryType::Cname,
        _ => QueryType::Other,
    }
}

fn to_record(r: &Record) -> Option<DnsRecord> {
    let fqdn = |n: &str| Name::from_ascii(format!("{n}.")).ok();
    Some(match r {
        Record::A { name, ip } => DnsRecord::from_rdata(fqdn(name)?, TTL, RData::A(A(*ip))),
        Record::Cname { name, target } => {
            DnsRecord::from_rdata(fqdn(name)?, TTL, RData::CNAME(CNAME(fqdn(target)?)))
        }
        Record::Srv { name, port, target } => DnsRecord::from_rdata(
            fqdn(name)?,
            TTL,
            RData::SRV(SRV::new(0, 100, *port, fqdn(target)?)),
        ),
    })
}

/// Asks `upstream` the raw question over UDP and returns its parsed answer.
async fn forward(upstream: SocketAddr, question: &[u8]) -> std::io::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(question).await?;
    let mut buf = vec![0u8; 4096];
    let reply = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let n = socket.recv(&mut buf).await?;
            // Replies to another question id are ignored (a late answer, spoofing).
            if n >= 2 && question.len() >= 2 && buf[..2] == question[..2] {
                return Ok::<_, std::io::Error>(n);
            }
        }
    })
    .await
    .map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {UPSTREAM_TIMEOUT:?}"),
        )
    })??;
    Message::from_vec(&buf[..reply]).map_err(std::io::Error::other)
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let info = match request.request_info() {
            Ok(i) => i,
            Err(_) => {
                let msg = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return send(&mut response_handle, msg, &request.metadata).await;
            }
        };
        let name = info.query.name().to_string();
        let rotation = self.state.rotation.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .state
            .zone()
            .answer(&name, query_type(info.query.query_type()), rotation);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        match answer {
            Answer::Records(records) => {
                self.state.answered.fetch_add(1, Ordering::Relaxed);
                metadata.authoritative = true;
                let records: Vec<DnsRecord> = records.iter().filter_map(to_record).collect();
                let msg = builder.build(metadata, records.iter(), [], [], []);
                send(&mut response_handle, msg, &request.metadata).await
            }
            Answer::NoData => {
                self.state.answered.fetch_add(1, Ordering::Relaxed);
                metadata.authoritative = true;
                let msg = builder.build_no_records(metadata);
                send(&mut response_handle, msg, &request.metadata).await
            }
            Answer::NxDomain => {
                self.state.answered.fetch_add(1, Ordering::Relaxed);
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
                let msg = builder.build_no_records(metadata);
                send(&mut response_handle, msg, &request.metadata).await
            }
            Answer::Forward => {
                let Some(upstream) = self.state.upstream else {
                    metadata.response_code = ResponseCode::NXDomain;
                    let msg = builder.build_no_records(metadata);
                    return send(&mut response_handle, msg, &request.metadata).await;
                };
                self.state.forwarded.fetch_add(1, Ordering::Relaxed);
                match forward(upstream, request.as_slice()).await {
                    Ok(reply) => {
                        metadata.response_code = reply.metadata.response_code;
                        metadata.truncation = reply.metadata.truncation;
                        metadata.authoritative = reply.metadata.authoritative;
                        let msg = builder.build(
                            metadata,
                            reply.answers.iter(),
                            reply.authorities.iter(),
                            [],
                            reply.additionals.iter(),
                        );
                        send(&mut response_handle, msg, &request.metadata).await
                    }
                    Err(e) => {
                        self.state.upstream_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%upstream, question = %name, error = %e, "the upstream resolver failed; answering SERVFAIL");
                        metadata.response_code = ResponseCode::ServFail;
                        let msg = builder.build_no_records(metadata);
                        send(&mut response_handle, msg, &request.metadata).await
                    }
                }
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a DnsRecord> + Send + 'a,
        impl Iterator<Item = &'a DnsRecord> + Send + 'a,
        impl Iterator<Item = &'a DnsRecord> + Send + 'a,
        impl Iterator<Item = &'a DnsRecord> + Send + 'a,
    >,
    request: &Metadata,
) -> ResponseInfo {
    match handle.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS response failed");
            let mut metadata = Metadata::response_from_request(request);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(hickory_server::proto::op::Header {
                metadata,
                counts: Default::default(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_is_the_first_other_nameserver() {
        let conf = "search example.com\nnameserver 10.244.1.1\nnameserver 192.0.2.53\n";
        let skip = ["10.244.1.1".parse().unwrap()];
        assert_eq!(
            upstream_from_resolv_conf(conf, &skip),
            Some("192.0.2.53:53".parse().unwrap())
        );
        assert_eq!(upstream_from_resolv_conf("search x\n", &[]), None);
        assert_eq!(upstream_from_resolv_conf("nameserver bogus\n", &[]), None);
    }
}
