//! A shard's life, and each connection's: start, open, close, graceful shutdown.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use monoio::net::TcpStream;

use super::connection::{Connection, Phase};
use super::message::Target;
use super::ratelimit::TokenBucket;
use super::state::ShardState;
use super::{flusher, housekeeping, inbox, reader, Shard};
use crate::config::PresenceScope;
use crate::ids::ConnectionId;
use crate::protocol::{unix_time, PresenceStatus, ServerMessage};
use crate::room::Room;
use crate::stats::CloseCause;
use crate::ws::{close_code, encode};

/// After the shutdown deadline, how long killed connections get to be cleaned up.
const CLEANUP_GRACE: Duration = Duration::from_secs(1);

/// The shard's main task: starts the others, then waits for shutdown and drains.
pub(crate) async fn run(shard: Rc<Shard>) {
    monoio::spawn(inbox::run(shard.clone()));
    monoio::spawn(flusher::run(shard.clone()));
    monoio::spawn(housekeeping::run(shard.clone()));
    shard.stopped.wait().await;
    shard.drain_connections().await;
    tracing::info!(shard = shard.index, "shard stopped");
}

impl Shard {
    /// Takes an accepted socket; its task starts with the HTTP request.
    pub(crate) fn adopt(self: &Rc<Self>, stream: TcpStream, remote: SocketAddr) {
        if self.is_stopping() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        if let Err(e) = super::sys::limit_unsent(fd, self.hub.config.socket_unsent_bytes) {
            tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
        }
        let now = Instant::now();
        let mut state = self.state.borrow_mut();
        let seq = state.next_seq;
        state.next_seq += 1;
        let id = ConnectionId::new(self.index, seq);
        let deadline = now + self.hub.config.handshake_timeout;
        let conn = Connection::new(id, stream, remote, now, deadline);
        let stream = conn.stream.clone();
        let key = state.conns.insert(Box::new(conn));
        state.by_seq.insert(seq, key);
        drop(state);
        monoio::spawn(reader::serve(self.clone(), key, stream));
    }

    /// Takes a socket accepted by some other thread (`Hub::register`).
    pub(crate) fn adopt_std(self: &Rc<Self>, stream: std::net::TcpStream) {
        let remote = match stream.peer_addr() {
            Ok(remote) => remote,
            Err(_) => return,
        };
        match TcpStream::from_std(stream) {
            Ok(stream) => self.adopt(stream, remote),
            Err(e) => tracing::warn!(error = %e, "cannot adopt socket"),
        }
    }

    /// The upgrade is done (admitted and registered; `first` if it is the user's first
    /// connection): welcome, auto-join, announce presence.
    pub(crate) fn open(&self, state: &mut ShardState, key: usize, user: Arc<str>, first: bool) {
        let conn = &mut state.conns[key];
        conn.phase = Phase::Open;
        conn.user = Some(user.clone());
        conn.connected_at = SystemTime::now();
        conn.limiter = TokenBucket::full(&self.hub.config.limits, self.now_ms());
        let (id, remote) = (conn.id, conn.remote);
        let welcome = encode::json_frame(&ServerMessage::Welcome {
            connection_id: id,
            user_id: &user,
        });
        conn.out.push_unbounded(welcome);
        self.mark_dirty(state, key);
        crate::stats::add(&self.counters().connections, 1);
        tracing::debug!(conn = %id, user = %user, %remote, "connection opened");
        for room in &self.hub.config.rooms.autojoin {
            if let Err(e) = self.join_room(state, key, room) {
                self.send_error(state, key, e.code, &e.text);
            }
        }
        if first {
            let rooms: Arc<[Arc<Room>]> = state.membership.rooms_of(key).into();
            self.announce_presence(state, id, &user, PresenceStatus::Online, rooms);
        }
    }

    fn announce_presence(
        &self,
        state: &mut ShardState,
        id: ConnectionId,
        user: &str,
        status: PresenceStatus,
        rooms: Arc<[Arc<Room>]>,
    ) {
        let except = Some(id);
        let target = match self.hub.config.presence {
            PresenceScope::Off => return,
            _ if self.is_stopping() => return,
            PresenceScope::All => Target::All { except },
            PresenceScope::Rooms => Target::Rooms { rooms, except },
        };
        let frame = self.hub.encode(&ServerMessage::Presence {
            user_id: user,
            status,
            time: unix_time(),
        });
        self.publish(state, target, frame);
    }

    /// Removes the connection at `key` for good: out of its rooms (telling the members),
    /// out of the directory (announcing the user offline if it was their last).
    pub(crate) fn finish(&self, key: usize) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.conns[key].kill();
        let id = state.conns[key].id;
        let left = state.membership.leave_all(&self.hub.registry, key, id);
        for (room, count) in &left {
            self.notify_left(state, key, room, *count);
        }
        let rooms: Vec<Arc<Room>> = left.into_iter().map(|(room, _)| room).collect();
        let conn = *state.conns.remove(key);
        state.by_seq.remove(&conn.id.seq());
        let Some(user) = conn.user else {
            return;
        };
        let last = self.hub.registry.remove_connection(conn.id, &user);
        self.hub.admission.release(conn.remote.ip());
        let counters = self.counters();
        counters
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let cause = conn.cause.unwrap_or(CloseCause::ClientGone);
        counters.count_close(cause);
        tracing::debug!(conn = %conn.id, user = %user, cause = cause.label(), "connection closed");
        if last {
            self.announce_presence(state, conn.id, &user, PresenceStatus::Offline, rooms.into());
        }
    }

    /// A room was removed through the hub: its local members leave it, with a `left`.
    pub(crate) fn forget_room(&self, state: &mut ShardState, room: &Arc<Room>) {
        let members = state.membership.forget_room(room);
        if members.is_empty() {
            return;
        }
        let left = encode::json_frame(&ServerMessage::Left {
            room: &room.name,
            count: 0,
        });
        for key in members {
            self.send_to(state, key, left.clone());
        }
    }

    /// Graceful shutdown: stop accepting, send `server_shutdown` and close 1001 to every
    /// client, then let [`Shard::drain_connections`] wait for them.
    pub(crate) fn begin_shutdown(&self) {
        if self.is_stopping() {
            return;
        }
        let deadline = Instant::now() + self.hub.config.shutdown_timeout;
        self.stopping.set(Some(deadline));
        std::mem::take(&mut *self.accept_canceller.borrow_mut()).cancel();
        let goodbye = encode::json_frame(&ServerMessage::ServerShutdown {
            message: "Server is shutting down",
        });
        let limits = self.hub.config.send_queue;
        let now_us = self.hub.now_us();
        let mut state = self.state.borrow_mut();
        let keys: Vec<usize> = state.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &mut state.conns[key];
            match conn.phase {
                Phase::Open => {
                    let _ = conn.queue(goodbye.clone(), now_us, &limits);
                    conn.blame(CloseCause::Shutdown);
                    conn.begin_close(close_code::GOING_AWAY, "server shutdown", deadline, false);
                    self.mark_dirty(&mut state, key);
                }
                Phase::Handshake { .. } | Phase::Answering { .. } => conn.kill(),
                Phase::Closing { .. } | Phase::Dead => {}
            }
        }
        self.stopped.notify();
    }

    /// Waits until every connection has gone, or the shutdown deadline passes and the
    /// rest are cut.
    async fn drain_connections(&self) {
        let deadline = self.stopping.get().unwrap_or_else(Instant::now);
        let mut killed = false;
        loop {
            if self.state.borrow().conns.is_empty() {
                return;
            }
            let now = Instant::now();
            if now >= deadline + CLEANUP_GRACE {
                return;
            }
            if now >= deadline && !killed {
                killed = true;
                for (_, conn) in self.state.borrow_mut().conns.iter_mut() {
                    conn.kill();
                }
            }
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
