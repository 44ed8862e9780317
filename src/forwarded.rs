//! Who a request comes from: the TCP peer, or, when that peer is a trusted reverse proxy,
//! the client the proxy names in `X-Forwarded-For` or `Forwarded` (RFC 7239).
//!
//! Each proxy appends the address it heard from to the right of the list, so everything
//! left of the nearest untrusted hop was written by the client and proves nothing: the
//! client is the rightmost hop that is not a trusted proxy. `X-Forwarded-For` is read when
//! present, since most proxies (nginx, HAProxy, Envoy, Caddy, Traefik, load balancers)
//! write it, and `Forwarded` otherwise.
//!
//! The keyless HTTP API trusts loopback callers, so "local" is decided more strictly than
//! the address: a request relayed by an untrusted peer is never local, whatever its peer
//! address, and a request from a trusted proxy is local only when every forwarding header
//! it carries names a loopback client (a client cannot then win by sending the header its
//! proxy does not write).

use std::net::{IpAddr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};

use crate::config::ConfigError;
use crate::http::RequestHead;

/// Where a request comes from, once forwarding headers have been weighed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client's address: the TCP peer, or the client a trusted proxy names (port 0
    /// when the proxy gives none).
    pub addr: SocketAddr,
    /// The request comes from this host itself, directly or through trusted proxies only.
    pub local: bool,
}

/// The proxies whose forwarding headers are believed (`http.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Reads addresses (`127.0.0.1`, `::1`) and networks (`10.0.0.0/8`, `fd00::/8`).
    pub fn new(entries: &[String]) -> Result<TrustedProxies, ConfigError> {
        let networks = entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(canonical)
                    .map_err(|_| {
                        ConfigError::invalid(
                            "http.trusted_proxies",
                            format!("http.trusted_proxies: {entry:?} is neither an address nor a network (e.g. \"127.0.0.1\", \"10.0.0.0/8\")"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks })
    }

    /// No proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Peers and hops are compared in their canonical form (an IPv4-mapped IPv6 address
    /// as IPv4), so the networks are kept in that form too.
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `head`.
    pub fn client(&self, peer: SocketAddr, head: &RequestHead) -> ClientAddress {
        if !self.trusts(peer.ip()) {
            return ClientAddress {
                addr: peer,
                local: is_loopback(peer.ip()) && !head.relayed,
            };
        }
        let from_xff = head
            .x_forwarded_for
            .as_deref()
            .map(|list| self.rightmost_untrusted(peer, list.split(',').map(parse_node)));
        let from_forwarded = head
            .forwarded
            .as_deref()
            .map(|list| self.rightmost_untrusted(peer, forwarded_for(list)));
        match (from_xff, from_forwarded) {
            (Some(xff), Some(forwarded)) => ClientAddress {
                addr: xff.addr,
                local: xff.local && forwarded.local,
            },
            (Some(client), None) | (None, Some(client)) => client,
            // A trusted proxy that names no client sent the request on its own account,
            // or was set up to hide the client: the address is the proxy's, and nothing
            // proves the request local.
            (None, None) => ClientAddress {
                addr: peer,
                local: false,
            },
        }
    }

    /// Walks the hops from the right (the nearest) past trusted proxies. A hop that names
    /// no address (`unknown`, an obfuscated name, garbage) ends the walk: the client is
    /// unknown, and the nearest address known stands for it. The request is local only if
    /// every address on the way, the peer's included, is a loopback one: a proxy on
    /// another host that names its own loopback client speaks of that host, not this one.
    fn rightmost_untrusted(
        &self,
        peer: SocketAddr,
        hops: impl Iterator<Item = Option<SocketAddr>>,
    ) -> ClientAddress {
        let hops: Vec<Option<SocketAddr>> = hops.collect();
        let mut nearest = peer;
        let mut on_this_host = is_loopback(peer.ip());
        for hop in hops.into_iter().rev() {
            match hop {
                Some(addr) if self.trusts(addr.ip()) => {
                    nearest = addr;
                    on_this_host &= is_loopback(addr.ip());
                }
                Some(addr) => {
                    return ClientAddress {
                        addr,
                        local: on_this_host && is_loopback(addr.ip()),
                    }
                }
                None => {
                    return ClientAddress {
                        addr: nearest,
                        local: false,
                    }
                }
            }
        }
        ClientAddress {
            addr: nearest,
            local: on_this_host,
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// `net` with an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it
/// stands for.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`, possibly
/// quoted (as `Forwarded` writes IPv6). Port 0 when it has none.
fn parse_node(node: &str) -> Option<SocketAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip.to_canonical(), 0));
    }
    if let Some(v6) = node.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip.to_canonical(), 0));
    }
    node.parse::<SocketAddr>()
        .ok()
        .map(|addr| SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

/// The `for=` node of each element of a `Forwarded` list, in order. An element without
/// `for=` is a hop that did not say whom it heard from.
///
/// Elements are split at every comma, quoted or not. No `for=` node holds a comma, and a
/// client must not be able to open a quote that swallows the element its proxy appends:
/// a quoted comma elsewhere (`by="a,b"`) only yields a piece without `for=`, a hop that
/// names nobody, which ends the walk on the safe side.
fn forwarded_for(list: &str) -> impl Iterator<Item = Option<SocketAddr>> + '_ {
    list.split(',').map(|element| {
        element
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
            .and_then(|(_, node)| parse_node(node))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(xff: Option<&str>, forwarded: Option<&str>) -> RequestHead {
        RequestHead {
            x_forwarded_for: xff.map(str::to_owned),
            forwarded: forwarded.map(str::to_owned),
            relayed: xff.is_some() || forwarded.is_some(),
            ..RequestHead::default()
        }
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_and_its_headers_make_it_remote() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let local = addr("127.0.0.1:5000");
        let direct = trusted.client(local, &head(None, None));
        assert_eq!(
            direct,
            ClientAddress {
                addr: local,
                local: true
            }
        );
        let relayed = trusted.client(local, &head(Some("127.0.0.1"), None));
        assert_eq!(
            relayed,
            ClientAddress {
                addr: local,
                local: false
            }
        );
        let mut via = head(None, None);
        via.relayed = true;
        assert!(!trusted.client(local, &via).local);
    }

    #[test]
    fn a_trusted_proxy_names_the_rightmost_untrusted_hop() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let proxy = addr("127.0.0.1:5000");
        // The client wrote the first entry itself; the proxies appended the rest.
        let client = trusted.client(proxy, &head(Some("127.0.0.1, 203.0.113.9, 10.1.2.3"), None));
        assert_eq!(
            client,
            ClientAddress {
                addr: addr("203.0.113.9:0"),
                local: false
            }
        );
        // Only trusted hops: the leftmost is the client.
        let client = trusted.client(proxy, &head(Some("127.0.0.1"), None));
        assert_eq!(
            client,
            ClientAddress {
                addr: addr("127.0.0.1:0"),
                local: true
            }
        );
        // A hop that names nobody: unknown client, never local.
        let client = trusted.client(proxy, &head(Some("203.0.113.9, unknown, 10.1.2.3"), None));
        assert_eq!(
            client,
            ClientAddress {
                addr: addr("10.1.2.3:0"),
                local: false
            }
        );
        // No header at all from a trusted proxy.
        assert!(!trusted.client(proxy, &head(None, None)).local);
    }

    #[test]
    fn forwarded_elements_are_read_with_quotes_and_ports() {
        let trusted = proxies(&["::1"]);
        let proxy = addr("[::1]:5000");
        let list = r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https;by=_p"#;
        let client = trusted.client(proxy, &head(None, Some(list)));
        assert_eq!(client.addr, addr("[2001:db8:cafe::17]:4711"));
        let client = trusted.client(proxy, &head(None, Some("for=_hidden")));
        assert_eq!(
            client,
            ClientAddress {
                addr: proxy,
                local: false
            }
        );
    }

    #[test]
    fn a_quote_the_client_leaves_open_cannot_swallow_its_proxys_entry() {
        let trusted = proxies(&["127.0.0.1"]);
        let proxy = addr("127.0.0.1:5000");
        let list = r#"for="x, for=203.0.113.9"#;
        let client = trusted.client(proxy, &head(None, Some(list)));
        assert_eq!(
            client.addr,
            addr("203.0.113.9:0"),
            "the proxy's entry counts"
        );
        // A comma inside a quoted value leaves a piece that names nobody: never local.
        let list = r#"for=127.0.0.1;by="a,b""#;
        assert!(!trusted.client(proxy, &head(None, Some(list))).local);
    }

    #[test]
    fn a_loopback_client_of_a_proxy_on_another_host_is_not_local() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        let remote_proxy = addr("10.0.0.5:5000");
        let named = trusted.client(remote_proxy, &head(Some("127.0.0.1"), None));
        assert!(!named.local, "127.0.0.1 of 10.0.0.5 is 10.0.0.5 itself");
        let via_remote = trusted.client(
            addr("127.0.0.1:5000"),
            &head(Some("127.0.0.1, 10.0.0.5"), None),
        );
        assert!(!via_remote.local);
        let here = trusted.client(addr("127.0.0.1:5000"), &head(Some("127.0.0.1"), None));
        assert!(here.local);
    }

    #[test]
    fn both_headers_must_agree_before_a_request_is_local() {
        let trusted = proxies(&["127.0.0.1"]);
        let proxy = addr("127.0.0.1:5000");
        // A proxy that writes Forwarded, and a client that added X-Forwarded-For itself.
        let spoofed = head(Some("127.0.0.1"), Some("for=198.51.100.7"));
        assert!(!trusted.client(proxy, &spoofed).local);
        let agreed = head(Some("127.0.0.1"), Some("for=127.0.0.1"));
        assert!(trusted.client(proxy, &agreed).local);
    }

    #[test]
    fn mapped_addresses_match_their_ipv4_networks_and_bad_entries_are_named() {
        let trusted = proxies(&["192.168.0.0/16"]);
        let client = trusted.client(
            addr("[::ffff:192.168.1.1]:80"),
            &head(Some("198.51.100.7"), None),
        );
        assert_eq!(client.addr, addr("198.51.100.7:0"));
        let mapped = proxies(&["::ffff:10.0.0.0/104", "::ffff:127.0.0.1"]);
        let client = mapped.client(addr("10.1.2.3:80"), &head(Some("198.51.100.7"), None));
        assert_eq!(
            client.addr,
            addr("198.51.100.7:0"),
            "a mapped network is its IPv4 one"
        );
        let client = mapped.client(addr("127.0.0.1:80"), &head(Some("198.51.100.8"), None));
        assert_eq!(client.addr, addr("198.51.100.8:0"));
        let err = TrustedProxies::new(&["10.0.0.0/33".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http.trusted_proxies") && err.contains("10.0.0.0/33"),
            "{err}"
        );
    }
}
