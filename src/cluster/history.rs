//! History in a cluster: each room's positioned messages are sequenced through the
//! journal ([`super::journal`]) and delivered by every node in offset order.
//!
//! On each node the bridge keeps a log per room that it serves: the epoch, the last
//! offset delivered here with its journal sequence, and a ring of the latest frames (a
//! [`Stream`], as a home shard keeps one). All that touches a room's log is done under
//! the log's lock, one step at a time:
//!
//! - **append**: a publisher's message gets the next offset and goes into the journal
//!   after the last sequence the log knows; when another node appended first, the log
//!   catches up from the journal and tries again. Once the journal has it, the node
//!   delivers it to its members at once.
//! - **follow**: an ordered JetStream consumer brings every node the room's messages as
//!   they are appended, by anyone. The log delivers offset top + 1; anything at or below
//!   the top is a duplicate; anything beyond it is a gap, repaired from the journal
//!   before it is delivered. Every member therefore gets each positioned message once, in
//!   offset order, whoever published it on whatever node.
//! - **place a join**: like a home shard, the log answers a held join with its epoch,
//!   its top and what a recovering client missed (from the ring, or the journal when the
//!   ring does not reach back far enough), and hands the answer to the joiner's shard
//!   through the same inbox as its deliveries: no gap, no duplicate.
//!
//! A client whose node died joins another node, whose log reads the journal: nothing the
//! journal still holds is lost, and the epoch is the same, since it lives in the journal.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinHandle as TaskHandle;

use super::journal::{entry, AppendError, Entry, Journal};
use super::subjects::Subjects;
use crate::protocol::{ErrorCode, ProtocolError, Recover};
use crate::room::Room;
use crate::shard::error::EngineError;
use crate::shard::message::HomeRequest;
use crate::shard::message::{FrameKind, HeldJoin, Reply, ShardMessage, Target};
use crate::shard::positioned::Positioned;
use crate::shard::publish::{deliver, Post, WithoutWaiting};
use crate::shard::shared::HubShared;
use crate::shard::stream::{RecoveryFailure, Stream};
use crate::shard::streams::{JoinPoint, Page};

/// How many times a room's marker is tried when other writers keep coming first.
const GENESIS_ATTEMPTS: usize = 8;

/// How long a room's follower waits before it starts again.
const FOLLOW_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// How long an append keeps trying: after other nodes appended first, or while the
/// journal does not answer.
const APPEND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
/// The pause before an append tries again after the journal failed it.
const APPEND_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The logs of the rooms this node serves, and the journal they read.
pub(crate) struct Histories {
    hub: Arc<HubShared>,
    client: Client,
    subjects: Subjects,
    /// Opened at first use, so a node that starts without NATS opens it when it can.
    journal: RefCell<Option<Journal>>,
    rooms: RefCell<HashMap<Arc<str>, Rc<RoomLog>>>,
    /// Positioned messages this node sequenced: names them in the journal.
    sent: std::cell::Cell<u64>,
}

/// One room's log on this node.
struct RoomLog {
    name: Arc<str>,
    /// `None` until read from the journal.
    state: Mutex<Option<Log>>,
    /// The task following the room's journal subject.
    follower: RefCell<Option<TaskHandle<()>>>,
}

struct Log {
    /// Epoch, top (the last offset delivered here) and the latest frames.
    stream: Stream,
    /// The journal sequence of the message at the top.
    seq: u64,
}

impl Drop for RoomLog {
    fn drop(&mut self) {
        if let Some(task) = self.follower.borrow_mut().take() {
            task.abort();
        }
    }
}

fn unavailable(why: &str) -> ProtocolError {
    tracing::warn!(reason = why, "the cluster's history is unavailable");
    ProtocolError::new(
        ErrorCode::Unavailable,
        "History is unavailable: the cluster's store cannot be reached",
    )
}

impl Histories {
    pub fn new(hub: Arc<HubShared>, client: Client, subjects: Subjects) -> Self {
        Self {
            hub,
            client,
            subjects,
            journal: RefCell::new(None),
            rooms: RefCell::new(HashMap::new()),
            sent: std::cell::Cell::new(0),
        }
    }

    async fn journal(&self) -> Result<Journal, String> {
        if let Some(journal) = self.journal.borrow().clone() {
            return Ok(journal);
        }
        let history = &self.hub.config.history;
        let journal = Journal::open(self.client.clone(), self.subjects.clone(), history).await?;
        *self.journal.borrow_mut() = Some(journal.clone());
        Ok(journal)
    }

    fn log(&self, room: &Arc<str>) -> Rc<RoomLog> {
        self.rooms
            .borrow_mut()
            .entry(room.clone())
            .or_insert_with(|| {
                Rc::new(RoomLog {
                    name: room.clone(),
                    state: Mutex::new(None),
                    follower: RefCell::new(None),
                })
            })
            .clone()
    }

    /// Stops serving `room` here (its last member here left): its log and follower go.
    pub fn forget(&self, room: &str) {
        if let Some(log) = self.rooms.borrow_mut().remove(room) {
            if let Some(task) = log.follower.borrow_mut().take() {
                task.abort();
            }
        }
    }

    fn count(&self, counter: fn(&super::link::ClusterCounters) -> &std::sync::atomic::AtomicU64) {
        if let Some(cluster) = &self.hub.cluster {
            counter(&cluster.counters).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// `Err` while NATS, and so the journal, is unreachable.
    fn reachable(&self) -> Result<(), String> {
        let cluster = self.hub.cluster.as_ref().expect("a cluster's node");
        match cluster.link() {
            crate::stats::LinkState::Connected => Ok(()),
            _ => Err("NATS is unreachable".into()),
        }
    }

    fn has_members_here(&self, room: &str) -> bool {
        self.hub.registry.room(room).is_some_and(|r| r.count() > 0)
    }

    /// The log of `log`'s room, locked and read from the journal if it was not yet.
    async fn loaded<'a>(
        self: &Rc<Self>,
        log: &'a Rc<RoomLog>,
    ) -> Result<MutexGuard<'a, Option<Log>>, String> {
        let mut guard = log.state.lock().await;
        if guard.is_none() {
            // Without NATS no journal answers: say so at once rather than after timeouts.
            self.reachable()?;
            let journal = self.journal().await?;
            let head = self.head_or_genesis(&journal, &log.name, None).await?;
            let room = self.room(&log.name);
            let stream = Stream::resumed(room, head.epoch.into(), head.offset);
            *guard = Some(Log {
                stream,
                seq: head.seq,
            });
            let follower = tokio::task::spawn_local(self.clone().follow(Rc::downgrade(log)));
            *log.follower.borrow_mut() = Some(follower);
        }
        Ok(guard)
    }

    /// The room's last message in the journal; when it has none, a marker written here
    /// (unless another node wrote one first): a room's genesis, offset 0 of a new epoch;
    /// or, for a room whose messages all expired under `at` (the epoch and top a log here
    /// has delivered), `at` itself, so that its members' offsets go on from there.
    async fn head_or_genesis(
        &self,
        journal: &Journal,
        room: &str,
        at: Option<(&str, u64)>,
    ) -> Result<Entry, String> {
        for _ in 0..GENESIS_ATTEMPTS {
            if let Some(head) = journal.head(room).await? {
                return Ok(head);
            }
            let fresh = crate::shard::stream::new_epoch();
            let (epoch, offset) = at.unwrap_or((&fresh, 0));
            let id = format!("marker-{epoch}-{offset}");
            match journal
                .append(room, (epoch, offset), Bytes::new(), 0, &id)
                .await
            {
                Ok(appended) => {
                    return Ok(Entry {
                        seq: appended.seq,
                        offset,
                        epoch: epoch.to_owned(),
                        frame: Bytes::new(),
                    })
                }
                Err(AppendError::Conflict) => continue,
                Err(AppendError::Failed(e)) => return Err(e),
            }
        }
        Err("the room's subject holds messages neonex did not write".into())
    }

    fn room(&self, name: &str) -> Arc<Room> {
        self.hub
            .registry
            .room(name)
            .unwrap_or_else(|| self.hub.registry.stand_in(name))
    }

    /// Follows the room's journal subject after the log's top, delivering what comes;
    /// starts again (after the log's top then) whenever following fails or ends.
    /// It holds the log weakly: a log that is forgotten ends its follower.
    async fn follow(self: Rc<Self>, log: Weak<RoomLog>) {
        while let Some(log) = log.upgrade() {
            if let Err(e) = self.follow_once(&log).await {
                tracing::warn!(room = %log.name, error = %e, "cannot follow a room's history; trying again");
            }
            drop(log);
            tokio::time::sleep(FOLLOW_RETRY).await;
        }
    }

    async fn follow_once(&self, log: &RoomLog) -> Result<(), String> {
        let journal = self.journal().await?;
        let from = match log.state.lock().await.as_ref() {
            Some(state) => state.seq + 1,
            None => return Ok(()),
        };
        let inbox = self.client.new_inbox();
        let mut messages = journal.follow(&log.name, from, inbox).await?;
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(room = %log.name, error = %e, "the history consumer starts again");
                    continue;
                }
            };
            let Ok(info) = message.info() else { continue };
            let seq = info.stream_sequence;
            let Some(headers) = message.headers.as_ref() else {
                continue;
            };
            let Some(entry) = entry(seq, headers, message.payload.clone()) else {
                continue;
            };
            let mut guard = log.state.lock().await;
            if let Some(state) = guard.as_mut() {
                self.advance(&journal, &log.name, state, entry).await;
            }
        }
        Ok(())
    }

    /// Delivers `entry` if it is the next of the log; repairs a gap before it from the
    /// journal; lets a duplicate go.
    async fn advance(&self, journal: &Journal, room: &str, state: &mut Log, entry: Entry) {
        if entry.seq <= state.seq {
            // Older than what the log has taken: a follower's late copy.
            return;
        }
        if **state.stream.epoch() != *entry.epoch {
            // The room was removed and made again: a new stream.
            let top = entry.offset.saturating_sub(1);
            state.stream = Stream::resumed(self.room(room), entry.epoch.clone().into(), top);
            state.seq = entry.seq;
        }
        let top = state.stream.top();
        if entry.offset <= top {
            return;
        }
        if entry.offset > top + 1 {
            match self.repair(journal, room, state, entry.offset - 1).await {
                // The journal could not be read: deliver nothing past the gap now; the
                // next message, or the follower starting again, repairs it.
                Err(()) => return,
                Ok(()) if state.stream.top() + 1 < entry.offset => {
                    // Expired from the journal before this node could read it.
                    let epoch = state.stream.epoch().clone();
                    state.stream = Stream::resumed(self.room(room), epoch, entry.offset - 1);
                }
                Ok(()) => {}
            }
        }
        if entry.frame.is_empty() {
            // A marker: it moves the log, and no client gets it.
            state.seq = entry.seq;
            return;
        }
        self.deliver(room, state, entry);
    }

    /// Reads the journal after the log's top up to offset `until`, delivering each; stops
    /// early where the journal no longer holds the next one. `Err` if the journal could
    /// not be read.
    async fn repair(
        &self,
        journal: &Journal,
        room: &str,
        state: &mut Log,
        until: u64,
    ) -> Result<(), ()> {
        let mut cursor = state.seq + 1;
        while state.stream.top() < until {
            let next = match journal.next(room, cursor).await {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!(%room, error = %e, "cannot repair a gap in a room's history");
                    return Err(());
                }
            };
            cursor = next.seq + 1;
            let top = state.stream.top();
            if *next.epoch != **state.stream.epoch() || next.offset > top + 1 {
                return Ok(());
            }
            if next.offset == top + 1 && !next.frame.is_empty() {
                self.count(|c| &c.journal_repairs);
                self.deliver(room, state, next);
            }
        }
        Ok(())
    }

    /// Takes `entry`, the log's next message, into the ring and to the members here.
    fn deliver(&self, room: &str, state: &mut Log, entry: Entry) {
        state.seq = entry.seq;
        let history = &self.hub.config.history;
        state
            .stream
            .append(entry.frame.clone(), Instant::now(), history.size);
        if let Some(room) = self.hub.registry.room(room) {
            let target = Target::Room { room, except: None };
            let hub = &*self.hub;
            let _ = deliver(
                &mut WithoutWaiting(hub),
                hub,
                target,
                entry.frame,
                FrameKind::Positioned,
            );
        }
    }

    /// Carries out `request` for the room's stream.
    pub async fn serve(self: Rc<Self>, request: HomeRequest) {
        match request {
            HomeRequest::Sequence {
                room,
                message,
                reply,
            } => self.sequence(room.name.clone(), message, reply).await,
            HomeRequest::PlaceJoin {
                room,
                join,
                recover,
            } => self.place_join(room, join, recover).await,
            HomeRequest::ReadHistory {
                room,
                since,
                limit,
                reply,
            } => self.read(room.name.clone(), since, limit, reply).await,
        }
    }

    /// Gives `message` the room's next offset in the journal and delivers it here;
    /// `reply` gets the offset.
    async fn sequence(
        self: Rc<Self>,
        room: Arc<str>,
        message: Positioned<'static>,
        reply: Option<Reply<Option<u64>>>,
    ) {
        let outcome = self.append(&room, &message).await;
        if !self.has_members_here(&room) {
            self.forget(&room);
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome.map(Some).map_err(EngineError::Refused));
        } else if let Err(e) = outcome {
            tracing::warn!(%room, error = %e.text, "a positioned message was not sequenced");
        }
    }

    async fn append(
        self: &Rc<Self>,
        room: &Arc<str>,
        message: &Positioned<'static>,
    ) -> Result<u64, ProtocolError> {
        self.reachable().map_err(|e| unavailable(&e))?;
        let id = self.message_id();
        let log = self.log(room);
        let mut guard = self.loaded(&log).await.map_err(|e| unavailable(&e))?;
        let state = guard.as_mut().expect("loaded");
        let journal = self.journal().await.map_err(|e| unavailable(&e))?;
        let deadline = Instant::now() + APPEND_DEADLINE;
        // Where the journal's room ends, as far as this writer knows.
        let (mut epoch, mut top, mut after) = (
            state.stream.epoch().to_string(),
            state.stream.top(),
            state.seq,
        );
        loop {
            let offset = top + 1;
            let frame = self.hub.encode(&message.message(room, Some(offset)));
            let appended = journal
                .append(room, (&epoch, offset), frame.clone(), after, &id)
                .await;
            match appended {
                Ok(appended) if !appended.duplicate => {
                    self.count(|c| &c.journal_appends);
                    let seq = appended.seq;
                    let entry = Entry {
                        seq,
                        offset,
                        epoch,
                        frame,
                    };
                    self.advance(&journal, room, state, entry).await;
                    return Ok(offset);
                }
                Ok(appended) => {
                    // An earlier try went in, and only its acknowledgement was lost.
                    let entry = journal
                        .get(appended.seq)
                        .await
                        .map_err(|e| unavailable(&e))?;
                    let entry = entry.ok_or_else(|| unavailable("the message went in and out"))?;
                    let offset = entry.offset;
                    self.advance(&journal, room, state, entry).await;
                    return Ok(offset);
                }
                Err(AppendError::Conflict) => {
                    // Another node appended first: append after the journal's head
                    // (what lies between reaches this node's members before this one).
                    self.count(|c| &c.journal_conflicts);
                    let at = (state.stream.epoch().to_string(), state.stream.top());
                    let head = self
                        .head_or_genesis(&journal, room, Some((&at.0, at.1)))
                        .await
                        .map_err(|e| unavailable(&e))?;
                    (epoch, top, after) = (head.epoch, head.offset, head.seq);
                }
                Err(AppendError::Failed(e)) if Instant::now() >= deadline => {
                    return Err(unavailable(&e));
                }
                Err(AppendError::Failed(_)) => tokio::time::sleep(APPEND_RETRY).await,
            }
            if Instant::now() >= deadline {
                return Err(unavailable("the journal did not take the message in time"));
            }
        }
    }

    /// A name for one positioned message of this node, the same across its tries.
    fn message_id(&self) -> String {
        let n = self.sent.get() + 1;
        self.sent.set(n);
        let cluster = self.hub.cluster.as_ref().expect("a cluster's node");
        format!("{}-{}-{n}", cluster.tag, cluster.incarnation)
    }

    /// Places the held join `join` in the room's stream, and hands the answer to the
    /// joiner's shard.
    async fn place_join(self: Rc<Self>, room: Arc<Room>, join: HeldJoin, recover: Option<Recover>) {
        let hub = self.hub.clone();
        let shard = join.conn.shard();
        let log = self.log(&room.name);
        let loaded = self.loaded(&log).await;
        match loaded {
            Ok(mut guard) => {
                let state = guard.as_mut().expect("loaded");
                let point = self.point(&room.name, state, recover.as_ref()).await;
                // Posted while the log is locked, behind every delivery up to the top.
                let placed = ShardMessage::JoinPlaced { room, join, point };
                let _ = WithoutWaiting(&hub).post(shard, placed);
            }
            Err(e) => {
                let error = unavailable(&e);
                let refused = ShardMessage::JoinRefused { room, join, error };
                let _ = WithoutWaiting(&hub).post(shard, refused);
            }
        };
    }

    async fn point(&self, room: &str, state: &mut Log, recover: Option<&Recover>) -> JoinPoint {
        let history = &self.hub.config.history;
        state.stream.expire(Instant::now(), history.ttl);
        let recovery = match recover {
            None => None,
            Some(from) => match state.stream.recover(from, history.max_recover) {
                Err(RecoveryFailure::Gap) => {
                    Some(self.recover_from_journal(room, state, from.offset).await)
                }
                other => Some(other),
            },
        };
        JoinPoint {
            epoch: state.stream.epoch().clone(),
            top: state.stream.top(),
            recovery,
        }
    }

    /// The frames after offset `since` up to the log's top, read from the journal; and
    /// the ring holds them from now on.
    async fn recover_from_journal(
        &self,
        room: &str,
        state: &mut Log,
        since: u64,
    ) -> Result<Vec<Bytes>, RecoveryFailure> {
        let messages = self.read_journal(room, state, since, usize::MAX).await?;
        let mut ring = Stream::resumed(self.room(room), state.stream.epoch().clone(), since);
        let size = self.hub.config.history.size;
        let now = Instant::now();
        for (_, frame) in &messages {
            ring.append(frame.clone(), now, size);
        }
        state.stream = ring;
        Ok(messages.into_iter().map(|(_, frame)| frame).collect())
    }

    /// The journal's messages of the log's epoch after offset `since` up to the log's
    /// top, at most `limit`, or `Gap` if the journal no longer holds the first of them.
    async fn read_journal(
        &self,
        room: &str,
        state: &Log,
        since: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, RecoveryFailure> {
        let journal = self.journal().await.map_err(|_| RecoveryFailure::Gap)?;
        let (top, epoch) = (state.stream.top(), state.stream.epoch().clone());
        let mut messages = Vec::new();
        let mut from = 1;
        while messages.len() < limit {
            let Ok(Some(next)) = journal.next(room, from).await else {
                break;
            };
            from = next.seq + 1;
            if *next.epoch != *epoch || next.offset <= since {
                continue;
            }
            if next.offset > top {
                break;
            }
            if next.frame.is_empty() {
                // A marker stands where messages expired.
                return Err(RecoveryFailure::Gap);
            }
            let expected = since + 1 + messages.len() as u64;
            if next.offset != expected {
                return Err(RecoveryFailure::Gap);
            }
            messages.push((next.offset, next.frame));
        }
        let wanted = (top.saturating_sub(since) as usize).min(limit);
        if messages.len() < wanted {
            return Err(RecoveryFailure::Gap);
        }
        Ok(messages)
    }

    /// The held messages of `room` after `since`, at most `limit`.
    async fn read(self: Rc<Self>, room: Arc<str>, since: u64, limit: usize, reply: Reply<Page>) {
        let log = self.log(&room);
        let page = match self.loaded(&log).await {
            Ok(mut guard) => {
                let state = guard.as_mut().expect("loaded");
                state
                    .stream
                    .expire(Instant::now(), self.hub.config.history.ttl);
                let messages = if state.stream.holds_after(since) {
                    state.stream.read(since, limit)
                } else {
                    self.read_journal(&room, state, since, limit)
                        .await
                        .unwrap_or_default()
                };
                Ok(Page {
                    epoch: state.stream.epoch().clone(),
                    top: state.stream.top(),
                    messages,
                })
            }
            Err(e) => Err(EngineError::Refused(unavailable(&e))),
        };
        drop(log);
        if !self.has_members_here(&room) {
            self.forget(&room);
        }
        let _ = reply.send(page);
    }

    /// Forgets every message of `room` in the journal (the room was removed): its next
    /// message starts a new epoch.
    pub async fn purge(self: Rc<Self>, room: Arc<str>) {
        match self.journal().await {
            Ok(journal) => {
                if let Err(e) = journal.purge(&room).await {
                    tracing::warn!(%room, error = %e, "cannot purge a removed room's history");
                }
            }
            Err(e) => tracing::warn!(%room, error = %e, "cannot purge a removed room's history"),
        }
    }
}
