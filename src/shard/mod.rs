//! A shard: one thread, pinned to one core, running one monoio runtime that owns a share
//! of the connections outright.
//!
//! The shard's tasks:
//! - one per connection ([`reader`]): waits until its socket is readable, reads into the
//!   shard's buffer, decodes and handles what arrived;
//! - [`inbox`]: takes deliveries and commands from other shards and threads;
//! - [`flusher`]: once per pass of the runtime, writes every connection that has frames
//!   queued, all of them in one vectored call per socket;
//! - [`housekeeping`]: pings, timeouts and the cleanup sweep;
//! - [`accept`]: one per listener.
//!
//! All of a shard's state sits in one `RefCell` that a task borrows only between awaits,
//! so no lock is ever taken for a message.

pub(crate) mod accept;
pub(crate) mod api;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod dispatch;
pub(crate) mod error;
pub(crate) mod fanout;
pub(crate) mod flusher;
pub(crate) mod handshake;
pub(crate) mod housekeeping;
pub(crate) mod inbox;
pub(crate) mod info;
pub(crate) mod lifecycle;
pub(crate) mod mailbox;
pub(crate) mod membership;
pub(crate) mod message;
pub(crate) mod operations;
pub(crate) mod outbound;
pub(crate) mod publish;
pub(crate) mod ratelimit;
pub(crate) mod reader;
pub(crate) mod shared;
pub(crate) mod signal;
pub(crate) mod state;
pub(crate) mod sys;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use monoio::{FusionRuntime, LegacyDriver, RuntimeBuilder};

use crate::config::DriverChoice;
use crate::stats::ShardCounters;
use message::ShardMessage;
use shared::HubShared;
use signal::{Notify, WaitList};
use state::ShardState;

/// Size of the shard's read buffer: every connection of the shard reads into it.
const READ_BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    /// Set on shard threads, which must never block on another shard.
    static ON_SHARD: Cell<bool> = const { Cell::new(false) };
}

/// True when the calling thread is a shard.
pub(crate) fn on_shard_thread() -> bool {
    ON_SHARD.with(Cell::get)
}

pub(crate) struct Shard {
    pub index: usize,
    pub hub: Arc<HubShared>,
    pub state: RefCell<ShardState>,
    /// Every read of every connection of this shard lands here first.
    read_buf: RefCell<Box<[u8]>>,
    inbox: Receiver<ShardMessage>,
    /// Wakes the flusher when a connection gets frames to write.
    flush: Notify,
    /// Readers paused while messages for other shards are held back.
    paused_readers: WaitList,
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
    fn new(index: usize, hub: Arc<HubShared>, inbox: Receiver<ShardMessage>) -> Self {
        let shards = hub.config.shards;
        Self {
            index,
            hub,
            state: RefCell::new(ShardState::new(shards)),
            read_buf: RefCell::new(vec![0; READ_BUFFER_BYTES].into_boxed_slice()),
            inbox,
            flush: Notify::default(),
            paused_readers: WaitList::default(),
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

    pub fn is_stopping(&self) -> bool {
        self.stopping.get().is_some()
    }

    /// Milliseconds since the shard started, wrapping after 49 days: compact timestamps
    /// for per-connection state, compared with wrapping arithmetic.
    pub fn now_ms(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }
}

/// Starts shard `index` on its own thread. `started` receives the outcome of building the
/// runtime, so the hub can fail cleanly if it cannot.
pub(crate) fn spawn(
    index: usize,
    core: Option<usize>,
    hub: Arc<HubShared>,
    inbox: Receiver<ShardMessage>,
    started: crossbeam_channel::Sender<std::io::Result<()>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("neonex-shard-{index}"))
        .spawn(move || {
            ON_SHARD.with(|s| s.set(true));
            if let Some(core) = core {
                if let Err(e) = monoio::utils::bind_to_cpu_set([core]) {
                    tracing::warn!(shard = index, core, error = %e, "could not pin shard to its core");
                }
            }
            let driver = hub.config.driver;
            let run = move || async move {
                let shard = Rc::new(Shard::new(index, hub, inbox));
                lifecycle::run(shard).await;
            };
            match driver {
                DriverChoice::Auto => {
                    match RuntimeBuilder::<monoio::FusionDriver>::new()
                        .enable_timer()
                        .build()
                    {
                        Ok(mut rt) => {
                            let name = match &rt {
                                FusionRuntime::Uring(_) => "io_uring",
                                FusionRuntime::Legacy(_) => "epoll",
                            };
                            tracing::info!(shard = index, ?core, driver = name, "shard started");
                            let _ = started.send(Ok(()));
                            rt.block_on(run());
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                        }
                    }
                }
                DriverChoice::Epoll => {
                    match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
                        Ok(mut rt) => {
                            tracing::info!(shard = index, ?core, driver = "epoll", "shard started");
                            let _ = started.send(Ok(()));
                            rt.block_on(run());
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                        }
                    }
                }
            }
        })
}

/// The cores this process may run on, in order; shard `i` is pinned to the `i`-th
/// (cycling when there are more shards than cores).
pub(crate) fn allowed_cores() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask that sched_getaffinity fills in.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}
