//! One well-behaved soak client: connected, in a few rooms, sending stamped chat messages
//! and checking everything it receives, room by room, in an [`Inbox`].

use std::sync::atomic::Ordering;

use tokio::time::{timeout_at, Instant};

use super::inbox::{Faults, Inbox, Stamp};
use super::shared::{bump, Shared};
use super::wire::{self, ServerMsg};
use super::Ctx;
use crate::conn::{Closed, Scratch, Stream, WsConn};
use crate::protocol::HubProtocol;

/// A room to join: its name and, for the rooms that long-lived members hold for the whole
/// run, its tally (what was published to it and what they received).
#[derive(Debug, Clone)]
pub struct RoomSpec {
    pub name: String,
    pub tally: Option<usize>,
}

/// One room of a session.
struct Membership {
    spec: RoomSpec,
    joined: bool,
    left: bool,
    inbox: Inbox,
    /// This client's own stream in the room, and the number of its next message.
    stream: u64,
    next_seq: u64,
}

/// A connected client and its rooms.
pub struct Session {
    pub conn: WsConn,
    rooms: Vec<Membership>,
    /// In its rooms for the whole run: its deliveries count in the rooms' tallies, and
    /// every stream must start at 0 for it.
    long_lived: bool,
    /// Own messages not yet echoed back.
    pub unacked: u64,
    /// The first `error` the hub sent it.
    pub error: Option<String>,
}

impl Session {
    /// Connects as `user`, joins `rooms` and waits until every join is confirmed.
    pub async fn open(
        ctx: &Ctx,
        scratch: &Scratch,
        user: &str,
        rooms: Vec<RoomSpec>,
        long_lived: bool,
        seed: u64,
    ) -> Result<Session, String> {
        let cfg = &ctx.cfg;
        let deadline = Instant::now() + cfg.connect_timeout;
        let stream = timeout_at(deadline, WsConn::connect(&cfg.target, None))
            .await
            .map_err(|_| "TCP connect timed out".to_string())??;
        Self::open_on(ctx, scratch, stream, user, rooms, long_lived, seed).await
    }

    /// [`open`](Self::open) on a TCP connection already made.
    pub async fn open_on(
        ctx: &Ctx,
        scratch: &Scratch,
        stream: Stream,
        user: &str,
        rooms: Vec<RoomSpec>,
        long_lived: bool,
        seed: u64,
    ) -> Result<Session, String> {
        let cfg = &ctx.cfg;
        let deadline = Instant::now() + cfg.connect_timeout;
        let path = ctx.proto.request_target(&cfg.target, user, "");
        let upgrade = WsConn::upgrade(stream, &cfg.target, &path, cfg.max_message, seed, false);
        let conn = timeout_at(deadline, upgrade)
            .await
            .map_err(|_| "no upgrade response in time".to_string())??;
        let rooms = rooms
            .into_iter()
            .map(|spec| Membership {
                spec,
                joined: false,
                left: false,
                inbox: Inbox::new(long_lived, None),
                stream: ctx.shared.new_stream(),
                next_seq: 0,
            })
            .collect();
        let mut s = Session {
            conn,
            rooms,
            long_lived,
            unacked: 0,
            error: None,
        };
        for i in 0..s.rooms.len() {
            let mut join = Vec::new();
            ctx.proto.encode_join(&s.rooms[i].spec.name, &mut join);
            s.send(ctx, &join);
        }
        s.conn
            .flush()
            .await
            .map_err(|e| format!("send joins: {e}"))?;
        let deadline = Instant::now() + cfg.join_timeout;
        while s.rooms.iter().any(|r| !r.joined) {
            timeout_at(deadline, s.read(ctx, scratch))
                .await
                .map_err(|_| format!("not joined within {:?}", cfg.join_timeout))?
                .map_err(|c| format!("closed while joining: {c}"))?;
            if let Some(e) = &s.error {
                return Err(format!("join refused: {e}"));
            }
        }
        Ok(s)
    }

    /// Queues a text frame, counting it.
    fn send(&mut self, ctx: &Ctx, text: &[u8]) {
        self.conn.queue_text(text);
        bump(&ctx.shared.sent.frames);
    }

    /// Queues the next stamped chat message to room `i` (of those given to `open`), its
    /// text padded to `bytes`. [`flush`](WsConn::flush) sends it.
    pub fn queue_chat(&mut self, ctx: &Ctx, i: usize, bytes: usize) {
        let m = &mut self.rooms[i];
        let stamp = Stamp {
            stream: m.stream,
            seq: m.next_seq,
        };
        m.next_seq += 1;
        let mut frame = Vec::new();
        ctx.proto
            .encode_publish(&m.spec.name, &stamp.write(bytes), &mut frame);
        self.unacked += 1;
        self.send(ctx, &frame);
    }

    /// Reads once and handles every message that came.
    pub async fn read(&mut self, ctx: &Ctx, scratch: &Scratch) -> Result<(), Closed> {
        let Session {
            conn,
            rooms,
            long_lived,
            unacked,
            error,
        } = self;
        conn.read_batch(scratch, |text, _| {
            let msg = wire::parse(text);
            handle(&ctx.shared, rooms, *long_lived, unacked, error, msg);
            None
        })
        .await
    }

    /// Leaves room `i` and waits for the hub to confirm it.
    pub async fn leave(&mut self, ctx: &Ctx, scratch: &Scratch, i: usize) -> Result<(), String> {
        let mut leave = Vec::new();
        ctx.proto.encode_leave(&self.rooms[i].spec.name, &mut leave);
        self.send(ctx, &leave);
        self.conn
            .flush()
            .await
            .map_err(|e| format!("send leave: {e}"))?;
        let deadline = Instant::now() + ctx.cfg.join_timeout;
        while !self.rooms[i].left {
            timeout_at(deadline, self.read(ctx, scratch))
                .await
                .map_err(|_| "leave not confirmed in time".to_string())?
                .map_err(|c| format!("closed while leaving: {c}"))?;
        }
        Ok(())
    }

    /// How many rooms it was given.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The tallies of its rooms.
    pub fn tallies(&self) -> Vec<usize> {
        self.rooms.iter().filter_map(|m| m.spec.tally).collect()
    }

    /// The faults found in everything this client received.
    pub fn faults(&self) -> Faults {
        let mut f = Faults::default();
        for m in &self.rooms {
            f.add(&m.inbox.faults());
        }
        f
    }

    /// Adds this client's faults to the run's and closes with the closing handshake.
    pub async fn finish(self, ctx: &Ctx, scratch: &Scratch) {
        ctx.shared.add_faults(&self.faults());
        self.conn
            .close_gracefully(scratch, ctx.cfg.connect_timeout)
            .await;
    }
}

/// Handles one server message to a session.
fn handle(
    shared: &Shared,
    rooms: &mut [Membership],
    long_lived: bool,
    unacked: &mut u64,
    error: &mut Option<String>,
    msg: ServerMsg,
) {
    let find = |rooms: &mut [Membership], name: &str| -> Option<usize> {
        rooms.iter().position(|m| m.spec.name == name)
    };
    match msg {
        ServerMsg::Joined { room, offset } => {
            if let Some(i) = find(rooms, &room) {
                let m = &mut rooms[i];
                m.joined = true;
                m.inbox = Inbox::new(long_lived, offset);
                bump(&shared.sent.joins_confirmed);
                if offset.is_some() {
                    bump(&shared.offsets_checked);
                }
            }
        }
        ServerMsg::Left { room } => {
            if let Some(i) = find(rooms, &room) {
                rooms[i].left = true;
                bump(&shared.sent.leaves_confirmed);
            }
        }
        ServerMsg::Positioned {
            room,
            stamp,
            offset,
        } => {
            let Some(i) = find(rooms, &room) else {
                return;
            };
            let m = &mut rooms[i];
            bump(&shared.sent.positioned_received);
            let new = m.inbox.observe(stamp, offset);
            let tally = m.spec.tally.map(|t| &shared.rooms[t]);
            if let (true, true, Some(t)) = (new, long_lived, tally) {
                bump(&t.received);
            }
            if new && stamp.stream == m.stream {
                *unacked = unacked.saturating_sub(1);
                bump(&shared.sent.chats_acked);
                if let Some(t) = tally {
                    t.sent.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        ServerMsg::Error(text) => {
            shared
                .failures
                .server_error(|| format!("error to a well-behaved client: {text}"));
            error.get_or_insert(text);
        }
        ServerMsg::Foreign | ServerMsg::Other => {}
    }
}
