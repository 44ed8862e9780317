//! The engine: one shard per core, each a thread pinned to its core running a monoio
//! runtime that owns a share of the connections outright, and the state the shards share
//! with the `Hub` handle. A shard's own state sits in one `RefCell` that each step borrows
//! between awaits, so no lock is taken for a message.
//!
//! # How a chat message travels
//! 1. [`poller`]: the shard's readiness set names a connection with input, and
//!    [`reader`] reads its socket into the shard's buffer. A connection has no task of
//!    its own: one task per shard waits on all of its sockets.
//! 2. [`frames`]: decodes the frames in place, joins a message, applies the rate limit.
//! 3. [`dispatch`]: parses the protocol message and encodes the `chat_message` once.
//!    With history on, [`sequence`] first hands it to the room's home shard, which gives
//!    it its offset, encodes it and keeps it in the room's [`stream`].
//! 4. [`publish`]: hands that frame to each shard with members of the room: this shard
//!    carries it out in place, the others get it through their [`mailbox`] and [`inbox`].
//! 5. [`fanout`]: queues a handle to the same bytes on each local member, whom
//!    [`membership`] knows.
//! 6. [`flusher`]: once per pass of the runtime, writes each listed socket's [`outbound`]
//!    queue in one vectored call; with `hub.write_delay`, [`delay`] lists a connection
//!    for the pass only when its broadcasts have waited the delay.
//!
//! # The parts
//! - The shard and its thread: [`Shard`] (here), [`spawn`] (runtime and tasks),
//!   [`thread`], [`signal`] (single-threaded wake-ups), [`sys`] (socket calls), and a
//!   connection's [`tls`] session, between the socket and the steps below when the hub
//!   has `tls.*`.
//! - What a shard owns: [`state`], with its [`connection`]s (their [`outbound`] queue,
//!   [`ratelimit`] and [`request`] as it arrives), [`membership`], and the [`streams`]
//!   of the rooms it is home to (each a [`stream`]).
//! - What a step has in hand: [`context`] (`Ctx`, the shard and its state).
//! - The tasks: [`accept`], [`poller`] (every connection's readiness), [`reader`]'s
//!   resume (connections read again after they were [`parked`]), [`inbox`], [`flusher`],
//!   [`delay`], [`housekeeping`], [`deadlines`] (of open questions).
//! - The steps: [`handshake`] (and its final answers, [`respond`]; an upgrade waiting on
//!   the backend's connect hook, [`connecting`]; the upgrade completed, [`upgrade`]),
//!   [`frames`], [`dispatch`], [`join`] (rooms, and recovery), [`sequence`] (a room's
//!   home shard), [`api`] (the backends' calls), [`pages`] (the dashboard and the demo),
//!   [`lifecycle`] (open, close, shutdown), [`fanout`].
//! - Questions for the application or a backend hook: [`ask`] raises one, the asking
//!   connection holds its later messages ([`awaiting`]), and [`rulings`] carries out the
//!   answer (or the default at the deadline) and then the held messages, in order.
//! - Shared with the `Hub` handle: [`shared`] (`HubShared`), [`publish`],
//!   [`operations`] (the backends' operations), [`message`] (and the [`positioned`]
//!   messages it carries to a home shard), [`mailbox`], [`info`], [`error`].

pub(crate) mod accept;
pub(crate) mod address;
pub(crate) mod api;
pub(crate) mod ask;
pub(crate) mod awaiting;
pub(crate) mod connecting;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod deadlines;
pub(crate) mod delay;
pub(crate) mod dispatch;
pub(crate) mod error;
pub(crate) mod fanout;
pub(crate) mod flusher;
pub(crate) mod frames;
pub(crate) mod handshake;
pub(crate) mod held_back;
pub(crate) mod home;
pub(crate) mod housekeeping;
pub(crate) mod inbox;
pub(crate) mod info;
pub(crate) mod join;
pub(crate) mod lifecycle;
pub(crate) mod listen;
pub(crate) mod mailbox;
pub(crate) mod membership;
pub(crate) mod message;
pub(crate) mod operations;
pub(crate) mod outbound;
pub(crate) mod pages;
pub(crate) mod parked;
pub(crate) mod poller;
pub(crate) mod positioned;
pub(crate) mod publish;
pub(crate) mod ratelimit;
pub(crate) mod reader;
pub(crate) mod request;
pub(crate) mod respond;
pub(crate) mod rulings;
pub(crate) mod sequence;
pub(crate) mod shared;
pub(crate) mod signal;
pub(crate) mod spawn;
pub(crate) mod stamp;
pub(crate) mod state;
pub(crate) mod stream;
pub(crate) mod streams;
pub(crate) mod sys;
pub(crate) mod thread;
pub(crate) mod tls;
pub(crate) mod token;
pub(crate) mod upgrade;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::stats::ShardCounters;
use message::ShardMessage;
use shared::HubShared;
use signal::Notify;
use state::ShardState;

/// Size of the shard's read buffer: every connection of the shard reads into it.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Size of the shard's plaintext buffer, where TLS connections' reads are decrypted: the
/// read buffer's worth, and a record begun by an earlier read (16 KiB and its overhead),
/// so that one read's plaintext is handed on in one piece, as a plain read is.
const PLAIN_BUFFER_BYTES: usize = READ_BUFFER_BYTES + 18 * 1024;

pub(crate) struct Shard {
    pub index: usize,
    pub hub: Arc<HubShared>,
    pub state: RefCell<ShardState>,
    /// Every read of every connection of this shard lands here first.
    read_buf: RefCell<Box<[u8]>>,
    /// What TLS connections' reads decrypt to; empty in a hub without TLS.
    plain_buf: RefCell<Box<[u8]>>,
    inbox: Receiver<ShardMessage>,
    /// Wakes the flusher when a connection gets frames to write.
    flush: Notify,
    /// Wakes the delay task when a connection starts waiting for `hub.write_delay`.
    delay_queued: Notify,
    /// Every connection's socket, registered for readiness.
    poller: poller::Poller,
    /// Connections whose input waits to be read.
    parked: RefCell<parked::Parked>,
    /// Wakes the readers' resume task when connections are listed to be read again.
    resumed: Notify,
    /// Wakes the deadline task when a question is asked.
    asked: Notify,
    /// Bumped whenever the shard does work; the inbox parks only after a quiet pass.
    activity: Cell<u64>,
    /// Set once a graceful shutdown has begun: when it must be over.
    stopping: Cell<Option<Instant>>,
    stopped: Notify,
    /// Cancels the accept loops at shutdown.
    accept_canceller: RefCell<monoio::io::Canceller>,
    /// Zero of the shard's millisecond clock (see [`Shard::now_ms`]).
    epoch: Instant,
    /// Fan-out latency measured since the last tick (µs); housekeeping publishes it.
    latency: RefCell<hdrhistogram::Histogram<u64>>,
}

impl Shard {
    pub(crate) fn new(
        index: usize,
        hub: Arc<HubShared>,
        inbox: Receiver<ShardMessage>,
        poller: poller::Poller,
    ) -> Self {
        let shards = hub.config.shards;
        let plain_bytes = if hub.tls.is_some() {
            PLAIN_BUFFER_BYTES
        } else {
            0
        };
        Self {
            index,
            hub,
            state: RefCell::new(ShardState::new(shards)),
            read_buf: RefCell::new(vec![0; READ_BUFFER_BYTES].into_boxed_slice()),
            plain_buf: RefCell::new(vec![0; plain_bytes].into_boxed_slice()),
            inbox,
            flush: Notify::default(),
            delay_queued: Notify::default(),
            poller,
            parked: RefCell::default(),
            resumed: Notify::default(),
            asked: Notify::default(),
            activity: Cell::new(0),
            stopping: Cell::new(None),
            stopped: Notify::default(),
            accept_canceller: RefCell::new(monoio::io::Canceller::new()),
            epoch: Instant::now(),
            latency: RefCell::new(crate::stats::latency_histogram()),
        }
    }

    pub fn counters(&self) -> &ShardCounters {
        self.hub.counters.shard(self.index)
    }

    /// Records that the shard did work. If the inbox had parked, it is woken here, on
    /// this thread, so that senders see the shard busy and skip the costly remote wake.
    pub fn note_activity(&self) {
        self.activity.set(self.activity.get().wrapping_add(1));
        self.hub.mailboxes[self.index].unpark();
    }

    /// An answer came to some question: the readers waiting on one look again.
    pub fn wake_answered(&self) {
        if self.parked.borrow_mut().answered() {
            self.resumed.notify();
        }
    }

    /// The shard no longer holds back messages: the paused readers read again.
    pub fn unpause_readers(&self) {
        if self.parked.borrow_mut().unpause() {
            self.resumed.notify();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get().is_some()
    }

    /// Milliseconds since the shard started, wrapping after 49 days: compact timestamps
    /// for per-connection state, compared with wrapping arithmetic.
    pub fn now_ms(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }
}
