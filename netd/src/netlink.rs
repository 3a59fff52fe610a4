//! The overlay applied to the kernel through netlink (`rtnetlink`): the VXLAN device,
//! the pods' bridge, and per peer a route, a neighbor and an FDB entry. Each sync reads
//! what the kernel has on netd's devices, compares it with what the API wants, and
//! applies the difference, so a restarted netd converges without duplicates and a
//! node that is gone leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::error::{Error, Result};
use crate::net::Ipv4Net;
use crate::overlay::{Peer, VNI, VXLAN_PORT};

/// The VXLAN device netd owns (flannel's is `flannel.1`).
pub const VXLAN_DEVICE: &str = "skiff.1";

/// A netlink connection in this network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

/// An underlay interface: its index, first IPv4 address and MTU.
#[derive(Debug, Clone, Copy)]
pub struct Underlay {
    /// Interface index.
    pub index: u32,
    /// Its first IPv4 address: the node's public IP for the overlay.
    pub ip: Ipv4Addr,
    /// Its MTU.
    pub mtu: u32,
}

/// What a peer sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Entries added or replaced (routes, neighbors, FDB entries).
    pub added: usize,
    /// Stale entries removed.
    pub removed: usize,
}

fn is_exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc_eexist())
}

// EEXIST is 17 on every Linux architecture.
const fn libc_eexist() -> i32 {
    17
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(a) => <[u8; 6]>::try_from(a.as_slice()).ok(),
        _ => None,
    })
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

fn vxlan_info(link: &LinkMessage) -> Vec<InfoVxlan> {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(v)) => Some(v.clone()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

impl Netlink {
    /// Opens a netlink socket; its connection runs as a task on the current runtime.
    pub fn connect() -> Result<Netlink> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::io("opening a netlink socket", e))?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The link named `name`, if any.
    pub async fn link(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(|e| Error::netlink("listing links", e))?
        {
            if link_name(&link) == Some(name) {
                return Ok(Some(link));
            }
        }
        Ok(None)
    }

    /// The interface of the IPv4 default route in the main table.
    pub async fn default_route_iface(&self) -> Result<String> {
        let mut routes = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut oif = None;
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(|e| Error::netlink("listing routes", e))?
        {
            if r.header.destination_prefix_length == 0 && route_table(&r) == 254 {
                oif = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                if oif.is_some() {
                    break;
                }
            }
        }
        let oif = oif.ok_or_else(|| {
            Error::Config(
                "no IPv4 default route to pick the underlay interface: give --iface".into(),
            )
        })?;
        let mut links = self.handle.link().get().match_index(oif).execute();
        let link = links
            .try_next()
            .await
            .map_err(|e| Error::netlink("reading the default route's link", e))?
            .ok_or_else(|| Error::Config(format!("the default route's interface {oif} is gone")))?;
        link_name(&link)
            .map(str::to_string)
            .ok_or_else(|| Error::Config("the default route's interface has no name".into()))
    }

    /// The underlay interface `name`: index, first IPv4 address, MTU.
    pub async fn underlay(&self, name: &str) -> Result<Underlay> {
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| Error::Config(format!("--iface {name}: no such interface")))?;
        let index = link.header.index;
        let ip = self
            .ipv4_addresses(index)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::Config(format!(
                    "--iface {name} has no IPv4 address to carry VXLAN traffic"
                ))
            })?;
        Ok(Underlay {
            index,
            ip: ip.0,
            mtu: link_mtu(&link).unwrap_or(1500),
        })
    }

    async fn ipv4_addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let mut out = Vec::new();
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(a) = addresses
            .try_next()
            .await
            .map_err(|e| Error::netlink("listing addresses", e))?
        {
            for attr in &a.attributes {
                if let AddressAttribute::Local(IpAddr::V4(ip)) = attr {
                    out.push((*ip, a.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    /// Makes `index` carry exactly the IPv4 address `ip/prefix`: adds it, and removes
    /// any other IPv4 address (a podCIDR that changed leaves none behind).
    pub async fn ensure_only_address(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut present = false;
        let mut stale = Vec::new();
        while let Some(a) = addresses
            .try_next()
            .await
            .map_err(|e| Error::netlink("listing addresses", e))?
        {
            if a.header.family != AddressFamily::Inet {
                continue;
            }
            let local = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if local == Some(ip) && a.header.prefix_len == prefix {
                present = true;
            } else {
                stale.push(a);
            }
        }
        for a in stale {
            self.handle
                .address()
                .del(a)
                .execute()
                .await
                .map_err(|e| Error::netlink("removing a stale address", e))?;
        }
        if !present {
            match self
                .handle
                .address()
                .add(index, IpAddr::V4(ip), prefix)
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if is_exists(&e) => {}
                Err(e) => return Err(Error::netlink(format!("adding {ip}/{prefix}"), e)),
            }
        }
        Ok(())
    }

    /// Creates (or keeps, when it matches) the VXLAN device: VNI 1, UDP 8472, local
    /// address `underlay.ip` on the underlay device, no learning, MTU 50 below the
    /// underlay's; brings it up. Returns its index and MAC.
    pub async fn ensure_vxlan(&self, underlay: Underlay, mtu: u32) -> Result<(u32, [u8; 6])> {
        if let Some(link) = self.link(VXLAN_DEVICE).await? {
            let info = vxlan_info(&link);
            let matches = link_kind(&link) == Some(&InfoKind::Vxlan)
                && info.contains(&InfoVxlan::Id(VNI))
                && info.contains(&InfoVxlan::Port(VXLAN_PORT))
                && info.contains(&InfoVxlan::Local(underlay.ip))
                && info.contains(&InfoVxlan::Link(underlay.index))
                && info.contains(&InfoVxlan::Learning(false));
            if matches {
                self.set_up(link.header.index, mtu).await?;
                let mac = link_mac(&link)
                    .ok_or_else(|| Error::Config(format!("{VXLAN_DEVICE} has no MAC")))?;
                return Ok((link.header.index, mac));
            }
            tracing::warn!(
                device = VXLAN_DEVICE,
                "the VXLAN device does not match this node's settings (VNI, port, local address or underlay changed); recreating it"
            );
            self.handle
                .link()
                .del(link.header.index)
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("deleting {VXLAN_DEVICE}"), e))?;
        }
        let message = LinkVxlan::new(VXLAN_DEVICE, VNI)
            .dev(underlay.index)
            .local(underlay.ip)
            .port(VXLAN_PORT)
            .learning(false)
            .mtu(mtu)
            .up()
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("creating {VXLAN_DEVICE}"), e))?;
        let link = self
            .link(VXLAN_DEVICE)
            .await?
            .ok_or_else(|| Error::Config(format!("{VXLAN_DEVICE} vanished after creation")))?;
        let mac =
            link_mac(&link).ok_or_else(|| Error::Config(format!("{VXLAN_DEVICE} has no MAC")))?;
        Ok((link.header.index, mac))
    }

    /// Creates (or keeps) the pods' bridge with the gateway address, before any pod
    /// exists, so cluster DNS can listen on it; the CNI bridge plugin then finds it
    /// ready. Bridged IPv4 goes through netfilter so Service NAT also works between
    /// pods of one node.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<u32> {
        let index = match self.link(name).await? {
            Some(link) => link.header.index,
            None => {
                let message = LinkBridge::new(name)
                    .nf_call_iptables(true)
                    .mtu(mtu)
                    .build();
                match self.handle.link().add(message).execute().await {
                    Ok(()) => {}
                    Err(e) if is_exists(&e) => {}
                    Err(e) => return Err(Error::netlink(format!("creating bridge {name}"), e)),
                }
                self.link(name)
                    .await?
                    .ok_or_else(|| Error::Config(format!("bridge {name} vanished after creation")))?
                    .header
                    .index
            }
        };
        self.set_up(index, mtu).await?;
        self.ensure_only_address(index, gateway, prefix).await?;
        Ok(index)
    }

    /// Puts `ip/32` on the loopback device (keeping its other addresses): the
    /// node-local address cluster DNS answers on, NodeLocal DNSCache's arrangement.
    /// Every node has the same one, so every kubelet gets the same `--cluster-dns`
    /// before its podCIDR is known. Loopback rather than a dummy device because not
    /// every kernel has the dummy driver.
    pub async fn ensure_local_address(&self, ip: Ipv4Addr) -> Result<()> {
        let lo = self
            .link("lo")
            .await?
            .ok_or_else(|| Error::Config("no loopback device".into()))?;
        match self
            .handle
            .address()
            .add(lo.header.index, IpAddr::V4(ip), 32)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_exists(&e) => Ok(()),
            Err(e) => Err(Error::netlink(format!("adding {ip}/32 to lo"), e)),
        }
    }

    async fn set_up(&self, index: u32, mtu: u32) -> Result<()> {
        let message = LinkUnspec::new_with_index(index).mtu(mtu).up().build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| Error::netlink("setting a link up", e))
    }

    /// Makes the routes, neighbors and FDB entries on the VXLAN device exactly those
    /// of `peers`.
    pub async fn sync_peers(&self, vxlan: u32, peers: &[Peer]) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        self.sync_routes(vxlan, peers, &mut report).await?;
        self.sync_neighbors(vxlan, peers, &mut report).await?;
        self.sync_fdb(vxlan, peers, &mut report).await?;
        Ok(report)
    }

    async fn sync_routes(&self, vxlan: u32, peers: &[Peer], report: &mut SyncReport) -> Result<()> {
        let want: BTreeMap<(Ipv4Addr, u8), Ipv4Addr> = peers
            .iter()
            .map(|p| ((p.pod_cidr.addr, p.pod_cidr.prefix), p.vtep_ip))
            .collect();
        let mut have = BTreeMap::new();
        let mut routes = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(|e| Error::netlink("listing routes", e))?
        {
            if route_table(&r) != u32::from(RouteHeader::RT_TABLE_MAIN)
                || route_oif(&r) != Some(vxlan)
            {
                continue;
            }
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let gw = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            match (dst, gw) {
                (Some(dst), Some(gw))
                    if want.get(&(dst, r.header.destination_prefix_length)) == Some(&gw) =>
                {
                    have.insert((dst, r.header.destination_prefix_length), gw);
                }
                _ => {
                    let mut r = r;
                    r.attributes.retain(|a| {
                        matches!(
                            a,
                            RouteAttribute::Destination(_)
                                | RouteAttribute::Gateway(_)
                                | RouteAttribute::Oif(_)
                                | RouteAttribute::Table(_)
                                | RouteAttribute::Priority(_)
                        )
                    });
                    self.handle
                        .route()
                        .del(r)
                        .execute()
                        .await
                        .map_err(|e| Error::netlink("removing a stale overlay route", e))?;
                    report.removed += 1;
                }
            }
        }
        for ((dst, prefix), gw) in &want {
            if have.contains_key(&(*dst, *prefix)) {
                continue;
            }
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(*dst, *prefix)
                .gateway(*gw)
                .output_interface(vxlan)
                .onlink()
                .build();
            self.handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("adding the route to {dst}/{prefix}"), e))?;
            report.added += 1;
        }
        Ok(())
    }

    async fn sync_neighbors(
        &self,
        vxlan: u32,
        peers: &[Peer],
        report: &mut SyncReport,
    ) -> Result<()> {
        let want: BTreeMap<Ipv4Addr, [u8; 6]> =
            peers.iter().map(|p| (p.vtep_ip, p.vtep_mac)).collect();
        let mut have = BTreeSet::new();
        let mut neighbors = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute();
        let mut stale: Vec<NeighbourMessage> = Vec::new();
        while let Some(n) = neighbors
            .try_next()
            .await
            .map_err(|e| Error::netlink("listing neighbors", e))?
        {
            if n.header.ifindex != vxlan {
                continue;
            }
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let mac = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(m) => <[u8; 6]>::try_from(m.as_slice()).ok(),
                _ => None,
            });
            match dst {
                Some(ip)
                    if want.get(&ip) == mac.as_ref()
                        && n.header.state == NeighbourState::Permanent =>
                {
                    have.insert(ip);
                }
                _ => stale.push(identifying(n)),
            }
        }
        for n in stale {
            self.handle
                .neighbours()
                .del(n)
                .execute()
                .await
                .map_err(|e| Error::netlink("removing a stale neighbor", e))?;
            report.removed += 1;
        }
        for (ip, mac) in &want {
            if have.contains(ip) {
                continue;
            }
            self.handle
                .neighbours()
                .add(vxlan, IpAddr::V4(*ip))
                .link_layer_address(mac)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("adding the neighbor {ip}"), e))?;
            report.added += 1;
        }
        Ok(())
    }

    async fn sync_fdb(&self, vxlan: u32, peers: &[Peer], report: &mut SyncReport) -> Result<()> {
        let want: BTreeMap<[u8; 6], Ipv4Addr> =
            peers.iter().map(|p| (p.vtep_mac, p.public_ip)).collect();
        let mut have = BTreeSet::new();
        let mut stale = Vec::new();
        let mut entries = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        while let Some(n) = entries
            .try_next()
            .await
            .map_err(|e| Error::netlink("listing FDB entries", e))?
        {
            if n.header.ifindex != vxlan {
                continue;
            }
            // In an AF_BRIDGE dump the destination is not parsed as an IPv4 address.
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                }
                _ => None,
            });
            let mac = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(m) => <[u8; 6]>::try_from(m.as_slice()).ok(),
                _ => None,
            });
            // Only remote entries (with a destination) are netd's.
            let (Some(dst), Some(mac)) = (dst, mac) else {
                continue;
            };
            if want.get(&mac) == Some(&dst) && !have.contains(&mac) {
                have.insert(mac);
            } else {
                stale.push(identifying(n));
            }
        }
        for n in stale {
            self.handle
                .neighbours()
                .del(n)
                .execute()
                .await
                .map_err(|e| Error::netlink("removing a stale FDB entry", e))?;
            report.removed += 1;
        }
        for (mac, dst) in &want {
            if have.contains(mac) {
                continue;
            }
            self.handle
                .neighbours()
                .add_bridge(vxlan, mac)
                .destination(IpAddr::V4(*dst))
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("adding the FDB entry for {dst}"), e))?;
            report.added += 1;
        }
        Ok(())
    }
}

/// A neighbor or FDB entry reduced to what names it, for a delete request (the
/// kernel's policy may refuse dump-only attributes such as cache info).
fn identifying(mut n: NeighbourMessage) -> NeighbourMessage {
    n.attributes.retain(|a| {
        matches!(
            a,
            NeighbourAttribute::Destination(_)
                | NeighbourAttribute::LinkLayerAddress(_)
                | NeighbourAttribute::Vni(_)
                | NeighbourAttribute::Port(_)
        )
    });
    n
}

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// The bridge's gateway: the first address of the pod CIDR.
pub fn gateway(pod_cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(pod_cidr.addr).saturating_add(1))
}
