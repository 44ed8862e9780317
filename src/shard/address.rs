//! A client's address as a connection keeps it: the IP and port, without the IPv6 flow
//! and scope fields `SocketAddr` carries (20 bytes instead of 32, in every connection).

use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Address {
    ip: IpAddr,
    port: u16,
}

impl Address {
    pub fn ip(self) -> IpAddr {
        self.ip
    }

    pub fn socket_addr(self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address {
            ip: addr.ip(),
            port: addr.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_keeps_ip_and_port_in_20_bytes() {
        for text in ["127.0.0.1:9000", "[2001:db8::1]:443"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(Address::from(addr).socket_addr(), addr);
        }
        assert!(std::mem::size_of::<Address>() <= 20);
    }
}
