//! `Hub`: the handle an application (or `neonex serve`) holds. Cloneable, thread-safe,
//! usable from any thread that is not a shard.
//!
//! The handle never touches a connection itself. Publishing encodes the frame once and
//! posts it to the inboxes of the shards with recipients; commands for one connection go
//! to the inbox of the shard that owns it; questions about rooms, users and connections
//! are answered from the registry.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use serde::Serialize;

use crate::checked_config::CheckedConfig;
use crate::cluster::bridge;
use crate::cluster::command::{Answer, Command};
use crate::cluster::link::{Cluster, Outbound};
use crate::config::HubConfig;
use crate::hooks::proxy::Proxy;
use crate::ids::{is_valid_room_name, ConnectionId};
use crate::shard::home::ask_home;
use crate::shard::message::HomeRequest;
use crate::shard::message::{Reply, ShardMessage, Target, REPLY_TIMEOUT};
use crate::shard::operations::{self, Audience};
use crate::shard::positioned::Positioned;
use crate::shard::publish::{publish, FromThread};
use crate::shard::sequence::publish_to_room;
use crate::shard::shared::HubShared;
use crate::shard::thread::on_shard_thread;
use crate::shard::{listen, spawn};
use crate::stats::HubStats;
use crate::tls::ServerTls;
use crate::ws::encode;

pub use crate::shard::info::{ConnectionInfo, HeldMessage, History, Published, RoomInfo};
pub use error::HubError;

mod error;

/// A running hub: its shards, rooms, users and connections.
///
/// ```no_run
/// use neonex::{Hub, HubConfig};
///
/// let hub = Hub::new(HubConfig::default()).unwrap();
/// let addr = hub.listen("127.0.0.1:3000").unwrap();
/// println!("WebSocket clients connect to ws://{addr}/ws");
/// hub.broadcast(r#"{"type":"notice","text":"hello"}"#).unwrap();
/// hub.close();
/// ```
#[derive(Clone)]
pub struct Hub {
    shared: Arc<HubShared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The cluster's bridge thread, ended after the shards.
    bridge: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Hub {
    /// Starts a hub: one thread per shard, each pinned to a core and running its own
    /// runtime. Rooms in `config.rooms.create` exist from the start. The hub accepts
    /// connections once given a listener ([`Hub::listen`]) or sockets ([`Hub::register`]).
    pub fn new(config: HubConfig) -> Result<Hub, HubError> {
        Hub::from_checked(config.check()?)
    }

    /// Starts a hub, as [`Hub::new`] does, with a configuration already checked, so it is
    /// not checked, nor its authenticator, origin policy and proxies built, again.
    pub fn from_checked(checked: CheckedConfig) -> Result<Hub, HubError> {
        let CheckedConfig {
            config,
            guards,
            tls,
        } = checked;
        guards.log_start(&config);
        let io = |e: std::io::Error| HubError::Io(e.to_string());
        let proxy = Proxy::start(&config.proxy).map_err(io)?;
        let bridge = match config.cluster.is_on() {
            true => Some(bridge::start(&config.cluster).map_err(io)?),
            false => None,
        };
        let (cluster, outbox) = match &bridge {
            Some(b) => {
                let (cluster, outbox) = Cluster::new(
                    &config.cluster,
                    config.shards,
                    b.tag,
                    b.name.clone(),
                    b.link.clone(),
                    b.slow_consumers.clone(),
                );
                tracing::info!(node = %cluster.name, tag = cluster.tag, "cluster node");
                (Some(cluster), Some(outbox))
            }
            None => (None, None),
        };
        let tls = tls.map(|tls| ServerTls::new(config.tls.clone(), tls));
        let (shared, inboxes) = HubShared::new(config, guards, tls, cluster, proxy);
        let shared = Arc::new(shared);
        let threads = spawn::start_all(&shared, inboxes).map_err(io)?;
        let bridge = bridge
            .zip(outbox)
            .map(|(bridge, outbox)| bridge.run(shared.clone(), outbox));
        Ok(Hub {
            shared,
            threads: Arc::new(Mutex::new(threads)),
            bridge: Arc::new(Mutex::new(bridge)),
        })
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shared.config.shards
    }

    /// Listens on `addr` (port 0 picks a free port) and returns the bound address.
    ///
    /// Each shard gets its own socket bound to that address with `SO_REUSEPORT`, and the
    /// kernel balances new connections between them. Fails with
    /// [`std::io::ErrorKind::AddrInUse`] if another socket, of this process or another,
    /// already listens on `addr`.
    pub fn listen(&self, addr: impl ToSocketAddrs) -> std::io::Result<SocketAddr> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address to listen on"))?;
        let (bound, listeners) = listen::bind(addr, self.shard_count())?;
        for (shard, listener) in listeners.into_iter().enumerate() {
            self.shared
                .post(shard, ShardMessage::Listen(listener))
                .map_err(std::io::Error::other)?;
        }
        tracing::info!(%bound, shards = self.shard_count(), "listening");
        Ok(bound)
    }

    /// Reads the TLS certificate and key again (`tls.cert`, `tls.key`, the files the hub
    /// started with): connections accepted from now on use what they hold, and those
    /// already open keep theirs. On an error, naming the key at fault, the hub goes on
    /// with what it had. `Ok(false)` for a hub without TLS, which has nothing to reload.
    pub fn reload_tls(&self) -> Result<bool, crate::ConfigError> {
        match &self.shared.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Hands the hub a TCP connection accepted elsewhere. The hub reads its HTTP upgrade
    /// request and serves it like any other (over TLS when the hub has `tls.*`); shards
    /// take turns.
    pub fn register(&self, stream: std::net::TcpStream) -> Result<(), HubError> {
        let shard = self.shared.next_adopter.fetch_add(1, Ordering::Relaxed) % self.shard_count();
        Ok(self.shared.post(shard, ShardMessage::Adopt(stream))?)
    }

    /// Closes a connection normally (1000). False if no such
    /// connection is open.
    pub fn unregister(&self, id: ConnectionId) -> bool {
        self.disconnect(id, crate::ws::close_code::NORMAL, "unregistered")
    }

    /// Closes a connection with `code` and `reason`, after what is already queued for it.
    /// False if no such connection is open. Waits for the owning shard.
    pub fn disconnect(&self, id: ConnectionId, code: u16, reason: &str) -> bool {
        let reason = reason.to_owned();
        let remote = Command::Disconnect {
            conn: id.to_bits(),
            code,
            reason: reason.clone(),
        };
        self.ask(
            id,
            |conn, reply| ShardMessage::Disconnect {
                conn,
                code,
                reason,
                reply,
            },
            (remote, Answer::done),
        )
        .is_ok()
    }

    /// Connection `id`, as its shard describes it, until it is gone (a closing connection
    /// is still described, as it is still counted). Waits for the owning shard.
    pub fn connection(&self, id: ConnectionId) -> Option<ConnectionInfo> {
        let remote = Command::Describe { conn: id.to_bits() };
        self.ask(
            id,
            |conn, reply| ShardMessage::Describe { conn, reply },
            (remote, move |answer: Answer| answer.described(id)),
        )
        .ok()
    }

    /// The open connections of `user`, on all shards (and, in a cluster, on every node
    /// that answers within a few seconds), sorted.
    pub fn user_connections(&self, user: &str) -> Vec<ConnectionId> {
        let shared = &*self.shared;
        let here = shared.registry.user_connections(user);
        let command = Command::UserConnections {
            user: user.to_owned(),
        };
        sorted(here, self.gather(command))
    }

    /// Open WebSocket connections, in the whole cluster.
    pub fn connection_count(&self) -> usize {
        let shared = &*self.shared;
        let elsewhere = shared
            .cluster
            .as_ref()
            .map_or(0, |c| c.view().connection_count());
        shared.admission.open() + elsewhere
    }

    /// Distinct users with at least one open connection, in the whole cluster.
    pub fn user_count(&self) -> usize {
        let shared = &*self.shared;
        match &shared.cluster {
            None => shared.registry.user_count(),
            Some(cluster) => {
                let mut users = cluster.view().users();
                users.extend(shared.registry.users().into_iter().map(|(user, _)| user));
                users.len()
            }
        }
    }

    /// This node's part of what every other node answers to `command` within a few
    /// seconds (nothing outside a cluster).
    fn gather(&self, command: Command) -> Vec<Vec<ConnectionId>> {
        let Some(cluster) = &self.shared.cluster else {
            return Vec::new();
        };
        cluster
            .gather(command, Answer::connections)
            .recv_timeout(REPLY_TIMEOUT)
            .unwrap_or_default()
    }

    /// Creates room `name` (persistent: it stays when empty). `Ok(false)` if it existed;
    /// it becomes persistent then.
    pub fn create_room(&self, name: &str) -> Result<bool, HubError> {
        if !is_valid_room_name(name) {
            return Err(HubError::InvalidRoomName);
        }
        Ok(operations::create_room(&self.shared, name))
    }

    /// Room `name`, if it exists.
    pub fn room(&self, name: &str) -> Option<RoomInfo> {
        operations::room_info(&self.shared, name)
    }

    /// Removes room `name`; its members get `left` with count 0. False if there was none.
    pub fn remove_room(&self, name: &str) -> bool {
        let shared = &*self.shared;
        operations::remove_room(&mut FromThread(shared), shared, name).is_ok()
    }

    /// Every room, by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        operations::rooms(&self.shared)
    }

    /// Number of rooms, in the whole cluster.
    pub fn room_count(&self) -> usize {
        match &self.shared.cluster {
            None => self.shared.registry.room_count(),
            Some(_) => operations::rooms(&self.shared).len(),
        }
    }

    /// Makes connection `id` join `room` as if it had sent `join_room` (it gets `joined`,
    /// the others `user_joined`). Returns the room's count after. Waits for the owning
    /// shard, so it cannot be called from a shard thread.
    pub fn join_room(&self, id: ConnectionId, room: &str) -> Result<usize, HubError> {
        let room = checked_room_name(room)?;
        let remote = Command::Join {
            conn: id.to_bits(),
            room: room.clone(),
        };
        self.ask(
            id,
            |conn, reply| ShardMessage::Join { conn, room, reply },
            (remote, Answer::count),
        )
    }

    /// Makes connection `id` leave `room` as if it had sent `leave_room`. Returns the
    /// room's count after.
    pub fn leave_room(&self, id: ConnectionId, room: &str) -> Result<usize, HubError> {
        let room = checked_room_name(room)?;
        let remote = Command::Leave {
            conn: id.to_bits(),
            room: room.clone(),
        };
        self.ask(
            id,
            |conn, reply| ShardMessage::Leave { conn, room, reply },
            (remote, Answer::count),
        )
    }

    /// Sends a command to the shard that owns `id` (`local`), or in a cluster to the node
    /// that owns it (`remote`: the command, and how its answer reads), and waits for the
    /// answer.
    fn ask<T: Send + 'static>(
        &self,
        id: ConnectionId,
        local: impl FnOnce(ConnectionId, Reply<T>) -> ShardMessage,
        remote: (Command, impl FnOnce(Answer) -> Option<T> + Send + 'static),
    ) -> Result<T, HubError> {
        if on_shard_thread() {
            return Err(HubError::OnShardThread);
        }
        let shared = &*self.shared;
        let answer = match &shared.cluster {
            Some(cluster) if id.node() != cluster.tag => {
                let (command, convert) = remote;
                cluster.ask(id.node(), command, convert)
            }
            _ if id.node() != shared.node_tag() || id.shard() >= self.shard_count() => {
                return Err(HubError::UnknownConnection(id));
            }
            _ => {
                let (reply, answer) = oneshot::channel();
                shared.post(id.shard(), local(id, reply))?;
                answer
            }
        };
        let answered = answer
            .recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| HubError::Overloaded)?;
        Ok(answered?)
    }

    /// True if connection `id` is in room `room`.
    pub fn room_has_member(&self, room: &str, id: ConnectionId) -> bool {
        let shared = &*self.shared;
        match &shared.cluster {
            Some(cluster) if id.node() != cluster.tag => cluster.is_remote_member(room, id),
            _ => shared.registry.room(room).is_some_and(|r| r.has_member(id)),
        }
    }

    /// The connections in room `room` (in a cluster, on every node that answers within a
    /// few seconds), sorted.
    pub fn room_members(&self, room: &str) -> Vec<ConnectionId> {
        let here = operations::local_room_members(&self.shared, room);
        let command = Command::RoomMembers {
            room: room.to_owned(),
        };
        sorted(here, self.gather(command))
    }

    /// Sends `text` (normally JSON) to every connection. Returns the number of open
    /// connections it was queued for.
    pub fn broadcast(&self, text: &str) -> Result<usize, HubError> {
        let audience = operations::everyone(&self.shared, None);
        self.publish(Some(audience), || self.shared.encode_text(text))
    }

    /// Sends `value` as JSON to every connection.
    pub fn broadcast_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<usize, HubError> {
        let audience = operations::everyone(&self.shared, None);
        self.publish(Some(audience), || self.shared.encode(value))
    }

    /// Sends `text` to every connection but `except` (typically the sender).
    pub fn broadcast_except(&self, text: &str, except: ConnectionId) -> Result<usize, HubError> {
        let audience = operations::everyone(&self.shared, Some(except));
        self.publish(Some(audience), || self.shared.encode_text(text))
    }

    /// Sends `text` to every member of `room`. Returns the room's member count.
    pub fn broadcast_to_room(&self, room: &str, text: &str) -> Result<usize, HubError> {
        let audience = operations::room(&self.shared, room, None)?;
        self.publish(Some(audience), || self.shared.encode_text(text))
    }

    /// Sends `value` as JSON to every member of `room`.
    pub fn broadcast_to_room_json<T: Serialize + ?Sized>(
        &self,
        room: &str,
        value: &T,
    ) -> Result<usize, HubError> {
        let audience = operations::room(&self.shared, room, None)?;
        self.publish(Some(audience), || self.shared.encode(value))
    }

    /// Sends `text` to every member of `room` but `except`.
    pub fn broadcast_to_room_except(
        &self,
        room: &str,
        text: &str,
        except: ConnectionId,
    ) -> Result<usize, HubError> {
        let audience = operations::room(&self.shared, room, Some(except))?;
        self.publish(Some(audience), || self.shared.encode_text(text))
    }

    /// Publishes `json` (any JSON value) to every member of `room` as a `publication`:
    /// `{"type":"publication","room":R,"data":JSON,"time":T}`. With history on
    /// (`history.size` > 0) it takes the room's next offset, which it carries as
    /// `"offset"`, and is kept in the room's history; the call waits for the room's home
    /// shard to give it. Unlike [`Hub::broadcast_to_room`], which sends text as it is and
    /// keeps nothing.
    ///
    /// ```no_run
    /// # let hub = neonex::Hub::new(neonex::HubConfig::default()).unwrap();
    /// let published = hub.publish_to_room("scores", r#"{"home":2,"away":1}"#).unwrap();
    /// println!("queued for {}, offset {:?}", published.queued, published.offset);
    /// ```
    pub fn publish_to_room(&self, room: &str, json: &str) -> Result<Published, HubError> {
        if on_shard_thread() {
            return Err(HubError::OnShardThread);
        }
        let shared = &*self.shared;
        let (room, queued) =
            operations::addressed_room(shared, room, None).ok_or(HubError::RoomNotFound)?;
        let message =
            Positioned::publication(json).map_err(|e| HubError::InvalidJson(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        publish_to_room(&mut FromThread(shared), shared, room, message, Some(reply))?;
        let offset = answer
            .recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| HubError::Overloaded)??;
        Ok(Published { queued, offset })
    }

    /// The held messages of `room`'s stream after offset `since` (0: all), oldest first,
    /// at most `limit` (default and cap: `history.max_recover`), each as clients received
    /// it. [`HubError::HistoryOff`] when `history.size` is 0. Waits for the room's home
    /// shard.
    ///
    /// ```no_run
    /// # let hub = neonex::Hub::new(neonex::HubConfig::default()).unwrap();
    /// let history = hub.history("general", 0, Some(50)).unwrap();
    /// for message in &history.messages {
    ///     println!("{} {}", message.offset, message.json());
    /// }
    /// ```
    pub fn history(
        &self,
        room: &str,
        since: u64,
        limit: Option<usize>,
    ) -> Result<History, HubError> {
        if on_shard_thread() {
            return Err(HubError::OnShardThread);
        }
        let shared = &*self.shared;
        let history = &shared.config.history;
        if !history.is_on() {
            return Err(HubError::HistoryOff);
        }
        let limit = limit
            .unwrap_or(history.max_recover)
            .clamp(1, history.max_recover);
        let (room, _) =
            operations::addressed_room(shared, room, None).ok_or(HubError::RoomNotFound)?;
        let (reply, answer) = oneshot::channel();
        let ask = HomeRequest::ReadHistory {
            room: room.clone(),
            since,
            limit,
            reply,
        };
        ask_home(&mut FromThread(shared), shared, ask)?;
        let page = answer
            .recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| HubError::Overloaded)??;
        Ok(History::of(&room.name, page))
    }

    /// Sends `text` to every connection of `user`. Returns how many.
    pub fn send_to_user(&self, user: &str, text: &str) -> Result<usize, HubError> {
        let audience = operations::user(&self.shared, user);
        self.publish(audience, || self.shared.encode_text(text))
    }

    /// Sends `value` as JSON to every connection of `user`.
    pub fn send_to_user_json<T: Serialize + ?Sized>(
        &self,
        user: &str,
        value: &T,
    ) -> Result<usize, HubError> {
        let audience = operations::user(&self.shared, user);
        self.publish(audience, || self.shared.encode(value))
    }

    /// Publishes to `audience` (none: nobody to reach, nothing encoded); returns how many
    /// connections it reaches.
    fn publish(
        &self,
        audience: Option<Audience>,
        encode: impl FnOnce() -> Bytes,
    ) -> Result<usize, HubError> {
        let Some(Audience { target, count }) = audience else {
            return Ok(0);
        };
        let shared = &*self.shared;
        publish(&mut FromThread(shared), shared, target, encode())?;
        Ok(count)
    }

    /// Sends `text` to one connection. A connection that has closed meanwhile drops it.
    pub fn send_to_connection(&self, id: ConnectionId, text: &str) -> Result<(), HubError> {
        self.send_frame_to_connection(id, encode::text_frame(text))
    }

    /// Sends `data` as a binary message to one connection (for an application in raw
    /// mode: the JSON protocol sends no binary). A connection that has closed meanwhile
    /// drops it.
    pub fn send_binary_to_connection(&self, id: ConnectionId, data: &[u8]) -> Result<(), HubError> {
        self.send_frame_to_connection(id, encode::binary_frame(data))
    }

    fn send_frame_to_connection(&self, id: ConnectionId, frame: Bytes) -> Result<(), HubError> {
        let shared = &*self.shared;
        let elsewhere = shared.cluster.as_ref().is_some_and(|c| id.node() != c.tag);
        if !elsewhere && (id.node() != shared.node_tag() || id.shard() >= self.shard_count()) {
            return Err(HubError::UnknownConnection(id));
        }
        Ok(publish(
            &mut FromThread(shared),
            shared,
            Target::Connection(id),
            frame,
        )?)
    }

    /// The events of the application's clients (`HubConfig::application`), to read on
    /// the application's own threads. The queue is bounded: an application that falls
    /// behind loses events (counted in `/stats` `application.events_dropped`), and its
    /// questions get their defaults. Several threads may read it, each event going to
    /// one of them. Without an application nothing ever arrives.
    pub fn events(&self) -> crossbeam_channel::Receiver<crate::hooks::HubEvent> {
        match &self.shared.events {
            Some(events) => events.receiver(),
            None => crossbeam_channel::never(),
        }
    }

    /// Counters of the hub and of each shard (the body of `GET /stats`).
    pub fn stats(&self) -> HubStats {
        self.shared.stats()
    }

    /// Shuts the hub down gracefully: in a cluster, says goodbye to the other nodes
    /// first; stops accepting, sends `server_shutdown` and a close with 1001 to every
    /// client, waits up to `shutdown_timeout` for them, and stops the shards. Returns when
    /// every shard thread has ended. Safe to call twice.
    pub fn close(&self) {
        let first = !self.shared.closed.swap(true, Ordering::SeqCst);
        // A node leaves its cluster first: the other nodes tell their clients at once
        // that its connections are gone, while its clients are told to reconnect.
        let bridge = self.bridge.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (Some(cluster), Some(_)) = (&self.shared.cluster, &bridge) {
            let (done, said) = std::sync::mpsc::channel();
            cluster.send(Outbound::Goodbye(done));
            let _ = said.recv_timeout(std::time::Duration::from_secs(3));
        }
        if first {
            for shard in 0..self.shard_count() {
                let _ = self.shared.post(shard, ShardMessage::Shutdown);
            }
        }
        let threads: Vec<_> = self.lock_threads().drain(..).collect();
        for thread in threads {
            let _ = thread.join();
        }
        if let Some(bridge) = bridge {
            let _ = bridge.join();
        }
        // Questions still waiting on the backend are answered by their defaults now.
        if let Some(proxy) = &self.shared.proxy {
            proxy.stop();
        }
    }

    /// True once [`Hub::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

/// This node's connections and the other nodes', together and sorted.
fn sorted(mut here: Vec<ConnectionId>, elsewhere: Vec<Vec<ConnectionId>>) -> Vec<ConnectionId> {
    here.extend(elsewhere.into_iter().flatten());
    here.sort();
    here
}

fn checked_room_name(room: &str) -> Result<String, HubError> {
    if is_valid_room_name(room) {
        Ok(room.to_owned())
    } else {
        Err(HubError::InvalidRoomName)
    }
}
