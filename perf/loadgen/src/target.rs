//! The target URL, and the safety rule: only hosts in 127.0.0.0/8 are ever connected to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};

use rustls::pki_types::ServerName;

/// Where the hub listens, resolved and checked.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `Host` header value (`host:port` as written in the URL).
    pub host_header: String,
    /// Path of the upgrade request, without the query (`/ws`).
    pub path: String,
    /// Query string of the URL, without `?`, if any.
    pub query: Option<String>,
    /// The resolved loopback address.
    pub addr: SocketAddrV4,
    /// wss://: the name sent as SNI and checked against the server's certificate (the URL's
    /// host).
    pub tls: Option<ServerName<'static>>,
}

/// True for 127.0.0.0/8.
pub fn is_loopback_v4(ip: Ipv4Addr) -> bool {
    ip.octets()[0] == 127
}

/// Parses a `ws[s]://host[:port][/path][?query]` URL, resolves the host and refuses anything
/// that is not in 127.0.0.0/8.
pub fn parse(url: &str) -> Result<Target, String> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("ws://") {
        (rest, false, 80)
    } else if let Some(rest) = url.strip_prefix("wss://") {
        (rest, true, 443)
    } else {
        return Err(format!("URL must start with ws:// or wss:// (got {url:?})"));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    if authority.is_empty() {
        return Err(format!("URL has no host: {url:?}"));
    }
    if authority.contains('@') {
        return Err("user info in the URL is not supported".into());
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (tail, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    let (host, port) = split_host_port(authority, default_port)?;
    let addr = resolve_loopback(host, port)?;
    let tls = match tls {
        true => Some(
            ServerName::try_from(host.to_owned())
                .map_err(|e| format!("{host:?} cannot be a TLS server name: {e}"))?,
        ),
        false => None,
    };
    Ok(Target {
        host_header: authority.to_owned(),
        path: path.to_owned(),
        query: query.filter(|q| !q.is_empty()),
        addr,
        tls,
    })
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(&str, u16), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad IPv6 literal in {authority:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return Err(format!("bad authority {authority:?}")),
        };
        return Ok((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host, parse_port(port)?)),
        None => Ok((authority, default_port)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("bad port {p:?}"))
}

/// Resolves `host` and returns its 127.0.0.0/8 address. Refuses the host when any address
/// it resolves to lies outside loopback (`::1` is tolerated but not used).
pub fn resolve_loopback(host: &str, port: u16) -> Result<SocketAddrV4, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    let mut chosen = None;
    for addr in &addrs {
        match addr.ip() {
            IpAddr::V4(ip) if is_loopback_v4(ip) => {
                chosen.get_or_insert(SocketAddrV4::new(ip, port));
            }
            IpAddr::V6(ip) if ip.is_loopback() => {}
            IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some_and(is_loopback_v4) => {
                let v4 = ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::LOCALHOST);
                chosen.get_or_insert(SocketAddrV4::new(v4, port));
            }
            other => {
                return Err(format!(
                    "refusing target {host:?}: it resolves to {other}, outside 127.0.0.0/8 \
                     (this tool only loads servers on this machine's loopback)"
                ))
            }
        }
    }
    chosen.ok_or_else(|| {
        format!("refusing target {host:?}: it resolves to no address in 127.0.0.0/8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls() {
        let t = parse("ws://127.0.0.1:3000/ws").unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.path, "/ws");
        assert_eq!(t.query, None);
        assert_eq!(t.host_header, "127.0.0.1:3000");
        let t = parse("ws://127.1.2.3:9/x/y?token=a").unwrap();
        assert_eq!(t.addr, "127.1.2.3:9".parse().unwrap());
        assert_eq!(t.path, "/x/y");
        assert_eq!(t.query.as_deref(), Some("token=a"));
        let t = parse("ws://127.0.0.1").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        let t = parse("ws://localhost:3000/ws").unwrap();
        assert!(is_loopback_v4(*t.addr.ip()));
        assert!(t.tls.is_none());
    }

    #[test]
    fn parses_wss_urls() {
        let t = parse("wss://localhost:3443/ws").unwrap();
        assert_eq!(t.addr.port(), 3443);
        assert_eq!(t.host_header, "localhost:3443");
        assert_eq!(t.tls.unwrap().to_str(), "localhost");
        let t = parse("wss://127.0.0.1/ws").unwrap();
        assert_eq!(t.addr.port(), 443);
        assert_eq!(t.tls.unwrap().to_str(), "127.0.0.1");
    }

    #[test]
    fn refuses_everything_else() {
        for url in [
            "ws://10.0.0.1:3000/ws",
            "ws://192.168.1.1/ws",
            "ws://8.8.8.8:80/",
            "ws://0.0.0.0:3000/ws",
            "ws://[::1]:3000/ws",
            "wss://10.0.0.1:3443/ws",
            "http://127.0.0.1/ws",
            "ws://:3000/ws",
            "ws://127.0.0.1:0/ws",
        ] {
            assert!(parse(url).is_err(), "{url} should be refused");
        }
    }
}
