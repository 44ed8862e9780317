//! Internal pieces driven by the criterion benchmarks in `benches/`. Not an API: hidden
//! from the documentation and free to change with the internals it exercises.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::Receiver;
use indexmap::IndexSet;

use crate::config::SendQueueLimits;
use crate::ids::ConnectionId;
use crate::registry::Registry;
use crate::shard::mailbox::Mailbox;
use crate::shard::message::{ShardMessage, Target};
use crate::shard::outbound::Outbound;
use crate::ws::encode;

/// One shard's room of `n` members with in-memory outbound queues: the per-recipient
/// work of a fan-out (queue a handle to the shared frame, list the connection dirty).
pub struct Fanout {
    queues: Vec<Outbound>,
    members: IndexSet<usize>,
    dirty: Vec<usize>,
    listed: Vec<bool>,
    frame: Bytes,
    limits: SendQueueLimits,
}

impl Fanout {
    /// A room of `n` members and a 100-byte chat frame. The members are being sent to
    /// steadily: their queues have been drained since the housekeeping's last tick.
    pub fn new(n: usize) -> Self {
        let frame = encode::text_frame(&"x".repeat(100));
        let limits = SendQueueLimits::default();
        let active = || {
            let mut queue = Outbound::default();
            queue.push_unbounded(frame.clone());
            queue.wrote_everything();
            queue.tick();
            queue
        };
        Self {
            queues: (0..n).map(|_| active()).collect(),
            members: (0..n).collect(),
            dirty: Vec::with_capacity(n),
            listed: vec![false; n],
            frame,
            limits,
        }
    }

    /// Queues the frame on every member; returns how many took it.
    pub fn deliver(&mut self) -> usize {
        let mut delivered = 0;
        for &key in &self.members {
            if self.queues[key]
                .push(self.frame.clone(), &self.limits)
                .is_ok()
            {
                delivered += 1;
            }
            if !self.listed[key] {
                self.listed[key] = true;
                self.dirty.push(key);
            }
        }
        delivered
    }

    /// Empties the queues as a flush pass does when every socket takes all it is
    /// offered: the queue goes through the same drain as after a completed write.
    pub fn flush(&mut self) {
        for key in self.dirty.drain(..) {
            self.queues[key].wrote_everything();
            self.listed[key] = false;
        }
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
        let registry = Registry::new(2);
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
            published_us: 0,
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
