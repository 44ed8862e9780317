//! Internal pieces driven by the criterion benchmarks in `benches/`. Not an API: hidden
//! from the documentation and free to change with the internals it exercises.

use std::io::Read;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Receiver;

use crate::checked_config::CheckedConfig;
use crate::config::HubConfig;
use crate::ids::ConnectionId;
use crate::registry::Registry;
use crate::shard::connection::{Connection, Phase};
use crate::shard::context::Ctx;
use crate::shard::mailbox::Mailbox;
use crate::shard::message::{FrameKind, ShardMessage, Target};
use crate::shard::shared::HubShared;
use crate::shard::{fanout, flusher, Shard};
use crate::ws::encode;

/// One real shard, outside any hub, with `n` open connections over loopback sockets, all
/// in one room: the production fan-out ([`fanout::deliver_local`]) queues a frame on
/// each, and either the production flush pass writes the queues to the sockets, or the
/// queues are emptied as a complete write would leave them, without the system call, to
/// see the fan-out's own cost.
pub struct RoomFanout {
    runtime: monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>,
    shard: Option<Rc<Shard>>,
    keys: Vec<usize>,
    target: Target,
    frame: Bytes,
    /// The clients' ends of the sockets, read by [`RoomFanout::drain_peers`].
    peers: Vec<std::net::TcpStream>,
    scratch: Vec<u8>,
}

impl RoomFanout {
    /// A room of `n` members and a 100-byte chat frame. The members are being sent to
    /// steadily: their queues have been drained since the housekeeping's last tick.
    pub fn new(n: usize) -> Self {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("an epoll runtime");
        let config = HubConfig {
            shards: 1,
            ..HubConfig::default()
        };
        let CheckedConfig { config, guards, .. } = config.check().expect("defaults are valid");
        let (shared, mut inboxes) = HubShared::new(config, guards, None, None, None);
        let shared = Arc::new(shared);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        let mut peers = Vec::with_capacity(n);
        let mut accepted = Vec::with_capacity(n);
        for _ in 0..n {
            let peer = std::net::TcpStream::connect(addr).expect("connect over loopback");
            peer.set_nonblocking(true).expect("non-blocking");
            peers.push(peer);
            let (socket, remote) = listener.accept().expect("accept");
            socket.set_nonblocking(true).expect("non-blocking");
            accepted.push((socket, remote));
        }
        let (shard, keys, target) = runtime.block_on(async move {
            let poller = crate::shard::poller::Poller::new().expect("an epoll set");
            let shard = Rc::new(Shard::new(0, shared, inboxes.remove(0), poller));
            let mut keys = Vec::with_capacity(accepted.len());
            let mut room = None;
            Ctx::with(&shard, |cx| {
                for (seq, (socket, remote)) in accepted.into_iter().enumerate() {
                    let id = ConnectionId::new(0, seq as u64 + 1);
                    let now = Instant::now();
                    let mut conn = Connection::new(id, socket, remote, shard.now_ms(), now);
                    conn.phase = Phase::Open;
                    conn.user = Some(format!("user-{seq}").into());
                    let key = cx.state.conns.insert(Box::new(conn));
                    cx.state.by_seq.insert(id.seq(), key);
                    let joined = cx
                        .state
                        .membership
                        .join(&cx.hub().registry, key, id, "bench", true, 1, false)
                        .expect("a fresh room takes everyone");
                    room = Some(joined.room);
                    keys.push(key);
                }
            });
            let room = room.expect("at least one member");
            let target = Target::Room { room, except: None };
            (shard, keys, target)
        });
        let mut fanout = Self {
            runtime,
            shard: Some(shard),
            keys,
            target,
            frame: encode::text_frame(&"x".repeat(100)),
            peers,
            scratch: vec![0; 64 * 1024],
        };
        fanout.deliver();
        fanout.drain_as_written();
        fanout.with_state(|cx, keys| {
            for &key in keys {
                cx.state.conns[key].out.tick();
            }
        });
        fanout
    }

    fn with_state<R>(&mut self, f: impl FnOnce(&mut Ctx, &[usize]) -> R) -> R {
        let shard = self.shard.as_ref().expect("alive until dropped");
        Ctx::with(shard, |cx| f(cx, &self.keys))
    }

    /// Queues the frame on every member; returns how many took it.
    pub fn deliver(&mut self) -> usize {
        let (target, frame) = (&self.target, &self.frame);
        let shard = self.shard.as_ref().expect("alive until dropped");
        Ctx::with(shard, |cx| {
            let frames = fanout::Frames::plain(frame);
            fanout::deliver_local(cx, target, frames, 0, FrameKind::Notice)
        })
    }

    /// Empties the queues as the flush pass does when every socket takes all it is
    /// offered: the same queue bookkeeping, without the system call.
    pub fn drain_as_written(&mut self) {
        self.with_state(|cx, _| {
            let state = &mut *cx.state;
            for key in state.dirty.drain(..) {
                let conn = &mut state.conns[key];
                conn.dirty = false;
                conn.out.wrote_everything();
                conn.after_drain(0);
            }
        });
    }

    /// The production flush pass: one vectored write per member's socket.
    pub fn flush_to_sockets(&mut self) {
        let shard = self.shard.clone().expect("alive until dropped");
        self.runtime
            .block_on(async move { flusher::flush_dirty(&shard) });
    }

    /// Reads everything the members' sockets hold, so the next flush finds room; returns
    /// the bytes read.
    pub fn drain_peers(&mut self) -> usize {
        let mut total = 0;
        for peer in &mut self.peers {
            loop {
                match peer.read(&mut self.scratch) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("reading a member's socket: {e}"),
                }
            }
        }
        total
    }
}

impl Drop for RoomFanout {
    fn drop(&mut self) {
        // The sockets were registered with this runtime, and leave it inside it.
        let shard = self.shard.take();
        self.runtime.block_on(async move { drop(shard) });
    }
}

/// The hub's room directory with one room of `members` connections spread over two
/// shards: the work of a `join_room` and a `leave_room`.
pub struct Rooms {
    registry: Registry,
    next: u64,
}

impl Rooms {
    /// A registry whose room `bench` has `members` members.
    pub fn new(members: u64) -> Self {
        let registry = Registry::new(2, crate::room_pattern::RoomPatterns::default());
        registry.create_room("bench");
        for seq in 0..members {
            let id = ConnectionId::new((seq % 2) as usize, seq);
            registry.join("bench", id, false).expect("the room exists");
        }
        Self {
            registry,
            next: members,
        }
    }

    /// One connection joins and leaves the room; returns the count after joining.
    pub fn join_and_leave(&mut self) -> usize {
        self.next += 1;
        let id = ConnectionId::new(0, self.next);
        let (room, count, _) = self.registry.join("bench", id, false).expect("exists");
        self.registry.leave(&room, id);
        count
    }
}

/// Two threads, each with a shard's inbox, handing a broadcast frame back and forth: the
/// cost of a cross-shard hand-off while the receiver is busy (not parked, so no wake-up).
/// Both threads spin, so it needs two free cores: on one, it measures time slices.
pub struct Handoff {
    to_peer: Arc<Mailbox>,
    inbox: Receiver<ShardMessage>,
    stop: Arc<AtomicBool>,
    peer: Option<std::thread::JoinHandle<()>>,
    frame: Bytes,
}

impl Handoff {
    /// Starts the peer thread.
    pub fn new() -> Self {
        let (to_peer, peer_inbox) = Mailbox::new();
        let (to_us, inbox) = Mailbox::new();
        let stop = Arc::new(AtomicBool::new(false));
        let peer_stop = stop.clone();
        let peer = std::thread::spawn(move || {
            while !peer_stop.load(Ordering::Relaxed) {
                if let Ok(msg) = peer_inbox.try_recv() {
                    if to_us.try_post(msg).is_err() {
                        return;
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        Self {
            to_peer: Arc::new(to_peer),
            inbox,
            stop,
            peer: Some(peer),
            frame: encode::text_frame("hand-off"),
        }
    }

    /// Posts a delivery to the peer and waits for it to come back: two hand-offs.
    pub fn round_trip(&mut self) {
        let msg = ShardMessage::Deliver {
            target: Target::All { except: None },
            frame: self.frame.clone(),
            deflated: None,
            published_us: 0,
            kind: FrameKind::Notice,
        };
        if self.to_peer.try_post(msg).is_err() {
            panic!("the peer's inbox refused a message");
        }
        loop {
            if self.inbox.try_recv().is_ok() {
                return;
            }
            std::hint::spin_loop();
        }
    }
}

impl Default for Handoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(peer) = self.peer.take() {
            let _ = peer.join();
        }
    }
}

/// The sizes, in bytes, of what a shard keeps for each connection, by item: what
/// `examples/memory.rs` prints beside the heap profile.
pub fn connection_sizes() -> Vec<(&'static str, usize)> {
    use std::mem::size_of;

    use smallvec::SmallVec;

    use crate::shard::outbound::Outbound;
    use crate::shard::ratelimit::TokenBucket;
    use crate::ws::assemble::Assembler;

    vec![
        ("Connection (boxed in the slab)", size_of::<Connection>()),
        ("  of which Phase", size_of::<Phase>()),
        (
            "  of which Outbound (the queue, empty)",
            size_of::<Outbound>(),
        ),
        ("  of which Assembler", size_of::<Assembler>()),
        ("  of which TokenBucket", size_of::<TokenBucket>()),
        (
            "  of which std::net::SocketAddr",
            size_of::<std::net::SocketAddr>(),
        ),
        (
            "slab slot (tag + Box pointer)",
            size_of::<Result<Box<Connection>, usize>>(),
        ),
        ("by_seq entry (u64, usize)", size_of::<(u64, usize)>()),
        (
            "membership per connection (its rooms, one in place)",
            size_of::<SmallVec<[Arc<crate::room::Room>; 1]>>(),
        ),
        (
            "registry user entry (Arc<str>, SmallVec<[ConnectionId; 2]>)",
            size_of::<(Arc<str>, SmallVec<[ConnectionId; 2]>)>(),
        ),
    ]
}
