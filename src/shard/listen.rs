//! Binding the shards' listeners: one socket per shard on the same address with
//! `SO_REUSEPORT`, so the kernel spreads new connections over the shards; and never
//! beside another hub's.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `shards` listeners on `addr` (port 0: one fresh port for all of them). Returns
/// the address bound and the listeners, one per shard.
pub(crate) fn bind(
    addr: SocketAddr,
    shards: usize,
) -> std::io::Result<(SocketAddr, Vec<TcpListener>)> {
    refuse_if_taken(addr)?;
    let first = reuse_port_listener(addr)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(reuse_port_listener(bound)?);
    }
    Ok((bound, listeners))
}

/// Fails if another socket already listens on `addr`. The shards bind with SO_REUSEPORT,
/// and the kernel would let a second hub of the same user bind beside the first and split
/// new connections between two hubs that share nothing. A socket bound without
/// SO_REUSEPORT is refused while any other listens there, so one is bound and dropped
/// first. A port of 0 is a fresh port and needs no check.
fn refuse_if_taken(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Connections of an earlier hub lingering in TIME_WAIT must not count as a listener.
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let why = if someone_listens(addr) {
                format!("another process listens on {addr}")
            } else {
                // The kernel also refuses a port that is the local end of other sockets'
                // connections (a client's, or ones lingering in TIME_WAIT for a minute).
                format!(
                    "nothing listens on {addr}, but it is the local port of other \
                     connections on this machine (such as ones in TIME_WAIT); wait a \
                     minute or choose another port"
                )
            };
            Err(std::io::Error::new(
                e.kind(),
                format!("address already in use: {why}"),
            ))
        }
        other => other,
    }
}

/// Whether a connection to `addr` (its loopback twin for an unspecified address) is
/// accepted at once.
fn someone_listens(addr: SocketAddr) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_millis(200)).is_ok()
}

fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
