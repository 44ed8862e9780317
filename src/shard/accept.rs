//! Accepting connections on this shard's listener, and adopting sockets accepted
//! elsewhere: each gets its slot, its TLS session when the hub has `tls.*`, and its
//! reader task, which starts with the TLS handshake or the HTTP request.
//!
//! Every shard binds its own listener on the same address with `SO_REUSEPORT`: the kernel
//! spreads new connections across the shards by a hash of their addresses, so accepting
//! needs no hand-off between threads and a connection lives and dies on the shard that
//! accepted it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::CancelHandle;
use monoio::net::{TcpListener, TcpStream};

use super::connection::Connection;
use super::context::Ctx;
use super::tls::TlsSession;
use super::{reader, Shard};
use crate::ids::ConnectionId;

/// Pause after an accept error (out of descriptors, most likely) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Starts accepting on `listener` until the shard shuts down.
pub(crate) fn start(shard: &Rc<Shard>, listener: std::net::TcpListener) {
    if shard.is_stopping() {
        return;
    }
    match TcpListener::from_std(listener) {
        Ok(listener) => {
            let cancel = shard.accept_canceller.borrow().handle();
            monoio::spawn(accept_loop(shard.clone(), listener, cancel));
        }
        Err(e) => tracing::error!(shard = shard.index, error = %e, "cannot use listener"),
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, cancel: CancelHandle) {
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, remote)) => Ctx::with(&shard, |cx| adopt(cx, stream, remote)),
            Err(_) if shard.is_stopping() => break,
            Err(e) => {
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Takes an accepted socket; its task starts with the HTTP request.
pub(crate) fn adopt(cx: &mut Ctx, stream: TcpStream, remote: SocketAddr) {
    let shard = cx.shard;
    if shard.is_stopping() {
        return;
    }
    let config = cx.config();
    let _ = stream.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    if let Err(e) = super::sys::limit_unsent(fd, config.socket_unsent_bytes) {
        tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
    }
    // A TLS session starts from the configuration in use now: a reload changes it for
    // the connections that come after.
    let tls = match &shard.hub.tls {
        None => None,
        Some(tls) => match TlsSession::new(tls.current()) {
            Ok(session) => Some(Box::new(session)),
            Err(e) => return tracing::warn!(error = %e, "cannot start a TLS session"),
        },
    };
    let now = Instant::now();
    let state = &mut *cx.state;
    let seq = state.next_seq;
    state.next_seq += 1;
    let id = ConnectionId::on_node(shard.hub.node_tag(), shard.index, seq);
    let deadline = now + config.handshake_timeout;
    let mut conn = Connection::new(id, stream, remote, now, deadline);
    conn.tls = tls;
    let stream = conn.stream.clone();
    let key = state.conns.insert(Box::new(conn));
    state.by_seq.insert(seq, key);
    // The task runs once this step has given the state back.
    monoio::spawn(reader::serve(shard.clone(), key, stream));
}

/// Takes a socket accepted by some other thread (`Hub::register`).
pub(crate) fn adopt_std(cx: &mut Ctx, stream: std::net::TcpStream) {
    let remote = match stream.peer_addr() {
        Ok(remote) => remote,
        Err(_) => return,
    };
    match TcpStream::from_std(stream) {
        Ok(stream) => adopt(cx, stream, remote),
        Err(e) => tracing::warn!(error = %e, "cannot adopt socket"),
    }
}
