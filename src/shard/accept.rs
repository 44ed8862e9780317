//! Accepting connections on this shard's listener, and adopting sockets accepted
//! elsewhere: each gets its slot, its TLS session when the hub has `tls.*`, and its place
//! in the shard's readiness set, where it starts with the TLS handshake or the HTTP
//! request.
//!
//! Every shard binds its own listener on the same address with `SO_REUSEPORT`: the kernel
//! spreads new connections across the shards by a hash of their addresses, so accepting
//! needs no hand-off between threads and a connection lives and dies on the shard that
//! accepted it.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::CancelHandle;
use monoio::net::TcpListener;

use super::connection::Connection;
use super::context::Ctx;
use super::tls::TlsSession;
use super::token::Token;
use super::Shard;
use crate::ids::ConnectionId;
use crate::stats;

/// The first pause after an accept error (out of descriptors, most likely); each error
/// in a row doubles it, up to [`BACKOFF_MAX`]. The connection waiting in the backlog
/// stays there until a descriptor frees up, so retrying at once would only spin.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// While accepts keep failing, one log line per this interval tells how many did.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

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
    let mut backoff = Backoff::default();
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, remote)) => {
                backoff.reset();
                // The shard waits on the socket itself, so it leaves monoio's keeping.
                // SAFETY: the descriptor was monoio's alone and is handed over whole.
                let socket = unsafe { std::net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
                Ctx::with(&shard, |cx| adopt(cx, socket, remote));
            }
            Err(_) if shard.is_stopping() => break,
            Err(e) => {
                stats::add(&shard.counters().accept_errors, 1);
                let pause = backoff.failed(Instant::now(), |failures| {
                    tracing::warn!(
                        shard = shard.index,
                        error = %e,
                        failures,
                        "accept failing; backing off until it works again"
                    );
                });
                monoio::time::sleep(pause).await;
            }
        }
    }
}

/// Accept errors in a row: how long to pause, and when to say so.
#[derive(Debug, Default)]
struct Backoff {
    pause: Option<Duration>,
    logged: Option<Instant>,
    unlogged_failures: u64,
}

impl Backoff {
    /// One more failure at `now`: the pause before the next try. Calls `log` with the
    /// failures not yet told of, at most once per [`LOG_INTERVAL`].
    fn failed(&mut self, now: Instant, log: impl FnOnce(u64)) -> Duration {
        self.unlogged_failures += 1;
        if self
            .logged
            .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL)
        {
            log(self.unlogged_failures);
            self.logged = Some(now);
            self.unlogged_failures = 0;
        }
        let pause = self
            .pause
            .map_or(BACKOFF_FIRST, |pause| (pause * 2).min(BACKOFF_MAX));
        self.pause = Some(pause);
        pause
    }

    /// An accept worked: the next failure starts over.
    fn reset(&mut self) {
        self.pause = None;
    }
}

/// Takes an accepted socket; the shard reads its HTTP request first.
pub(crate) fn adopt(cx: &mut Ctx, socket: std::net::TcpStream, remote: SocketAddr) {
    let shard = cx.shard;
    if shard.is_stopping() {
        return;
    }
    let config = cx.config();
    let _ = socket.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
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
    let mut conn = Connection::new(id, socket, remote, shard.now_ms(), deadline);
    conn.tls = tls;
    let key = state.conns.insert(Box::new(conn));
    // Input that came before the socket was registered is reported at once.
    if let Err(e) = shard
        .poller
        .add(&state.conns[key].socket, Token::of(key, id))
    {
        tracing::warn!(error = %e, "cannot wait on a new connection; dropping it");
        state.conns.remove(key);
        return;
    }
    state.by_seq.insert(seq, key);
}

/// Takes a socket accepted by some other thread (`Hub::register`).
pub(crate) fn adopt_std(cx: &mut Ctx, stream: std::net::TcpStream) {
    let remote = match stream.peer_addr() {
        Ok(remote) => remote,
        Err(_) => return,
    };
    adopt(cx, stream, remote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_double_the_pause_and_log_once_per_interval() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let mut logged = Vec::new();
        let pauses: Vec<Duration> = (0..12)
            .map(|i| backoff.failed(start + Duration::from_secs(i), |n| logged.push(n)))
            .collect();
        assert_eq!(pauses[0], BACKOFF_FIRST);
        assert_eq!(pauses[1], BACKOFF_FIRST * 2);
        assert_eq!(pauses[11], BACKOFF_MAX);
        // At 0 s the first failure; at 10 s the ten since.
        assert_eq!(logged, [1, 10]);
        backoff.reset();
        assert_eq!(backoff.failed(start, |_| {}), BACKOFF_FIRST);
    }
}
