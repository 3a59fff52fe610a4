//! IPv4 networks, as the flags and Node objects spell them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An IPv4 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// The prefix length, 0–32.
    pub prefix: u8,
}

impl FromStr for Ipv4Net {
    type Err = Error;

    fn from_str(s: &str) -> Result<Ipv4Net> {
        let bad = || Error::Config(format!("{s:?} is not an IPv4 CIDR such as 10.244.0.0/16"));
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        if u32::from(addr) & !mask != 0 {
            return Err(Error::Config(format!(
                "{s} has host bits set: the network is {}/{prefix}",
                Ipv4Addr::from(u32::from(addr) & mask)
            )));
        }
        Ok(Ipv4Net { addr, prefix })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Ipv4Net {
    /// The netmask as a number.
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `ip` is in this network.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether the two networks share an address.
    pub fn overlaps(self, other: Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}
