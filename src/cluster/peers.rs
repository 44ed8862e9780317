//! What this node hears of the others, and tells them: their events, applied to the
//! view in the order of their numbers (resynchronising from a snapshot on a gap or a new
//! node), the heartbeat that finds nodes silent for `cluster.node_timeout`, and this
//! node's snapshot for a node that asks.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_nats::Subscriber;
use bytes::Bytes;
use futures_util::StreamExt;

use super::bridge_state::{Bridge, REQUEST_TIMEOUT};
use super::outbox::reconcile_interest;
use super::snapshot;
use super::view::{Change, View};
use super::wire::{Body, Envelope, Snapshot, SnapshotRequest};

pub(super) async fn answer_snapshots(bridge: Rc<Bridge>, mut requests: Subscriber) {
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else {
            continue;
        };
        let asked: SnapshotRequest = serde_json::from_slice(&request.payload).unwrap_or_default();
        let snapshot = snapshot::take(&bridge.hub, bridge.seq.get(), asked.after);
        let payload: Bytes = serde_json::to_vec(&snapshot)
            .expect("a snapshot serializes")
            .into();
        let _ = bridge.client.publish(reply, payload).await;
    }
}

/// Most events of one node held while a resynchronisation with it runs; beyond, they
/// are dropped, and the node's next heartbeat finds the gap again.
const RESYNC_HELD: usize = 64 * 1024;

/// What to do with an event once its number is checked.
enum Next {
    Apply,
    Resync,
    Ignore,
}

pub(super) async fn hear_events(bridge: Rc<Bridge>, mut events: Subscriber) {
    while let Some(message) = events.next().await {
        let envelope: Envelope = match serde_json::from_slice(&message.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable cluster event");
                continue;
            }
        };
        let cluster = bridge.cluster();
        if envelope.node == cluster.tag {
            if envelope.inc != cluster.incarnation {
                tracing::error!(tag = envelope.node, other = %envelope.name, "another node holds this node's tag");
            }
            continue;
        }
        cluster.counters.events_in.fetch_add(1, Ordering::Relaxed);
        hear(&bridge, envelope);
    }
}

/// Takes one event of another node: applies it, or starts a resynchronisation, or, while
/// one runs for that node, keeps it for after.
fn hear(bridge: &Rc<Bridge>, envelope: Envelope) {
    let tag = envelope.node;
    let waiting =
        !matches!(envelope.ev, Body::Goodbye) && bridge.resyncing.borrow().contains_key(&tag);
    if waiting {
        bridge.change_view(|view, _| {
            if let Some(node) = view.node_mut(tag) {
                node.heard = Instant::now();
            }
            Vec::new()
        });
        let mut resyncing = bridge.resyncing.borrow_mut();
        let held = resyncing.get_mut(&tag).expect("checked above");
        if held.len() < RESYNC_HELD {
            held.push_back(envelope);
        }
        return;
    }
    match check(bridge, &envelope) {
        Next::Apply => bridge.change_view(|view, local| apply(view, envelope, local)),
        Next::Resync => start_resync(bridge, tag, envelope.inc),
        Next::Ignore => {}
    }
}

/// Resynchronises with node `tag` in a task of its own, so that the events of the other
/// nodes go on meanwhile; the node's own events wait, and are taken after the snapshot
/// (those it already holds change nothing).
fn start_resync(bridge: &Rc<Bridge>, tag: u16, inc: u64) {
    bridge.resyncing.borrow_mut().insert(tag, VecDeque::new());
    let bridge = bridge.clone();
    tokio::task::spawn_local(async move {
        resync(&bridge, tag, inc).await;
        let held = bridge
            .resyncing
            .borrow_mut()
            .remove(&tag)
            .unwrap_or_default();
        for envelope in held {
            hear(&bridge, envelope);
        }
    });
}

/// Checks an event's sender and number against the view, meeting new nodes and saying
/// farewell to departed ones on the way.
fn check(bridge: &Bridge, envelope: &Envelope) -> Next {
    let (tag, inc) = (envelope.node, envelope.inc);
    if matches!(envelope.ev, Body::Goodbye) {
        tracing::info!(node = %envelope.name, "a node left the cluster");
        bridge.departed.borrow_mut().insert(tag, inc);
        bridge.change_view(|view, local| view.remove_node(tag, local));
        return Next::Ignore;
    }
    if bridge.departed.borrow().get(&tag) == Some(&inc) {
        return Next::Ignore;
    }
    let now = Instant::now();
    let mut next = Next::Ignore;
    bridge.change_view(|view, local| {
        let mut changes = Vec::new();
        if view.node(tag).is_some_and(|n| n.inc != inc) {
            tracing::info!(node = %envelope.name, "a node restarted");
            changes = view.remove_node(tag, local);
        }
        if view.node(tag).is_none() {
            tracing::info!(node = %envelope.name, tag, "a node joined the cluster");
            view.meet(tag, &envelope.name, inc, now);
            next = Next::Resync;
            return changes;
        }
        let node = view.node_mut(tag).expect("met above");
        node.heard = now;
        next = match envelope.ev {
            Body::Heartbeat if envelope.seq > node.seq => Next::Resync,
            Body::Heartbeat => Next::Ignore,
            _ if envelope.seq <= node.seq => Next::Ignore,
            _ if envelope.seq == node.seq + 1 => {
                node.seq = envelope.seq;
                Next::Apply
            }
            _ => Next::Resync,
        };
        changes
    });
    next
}

fn apply(view: &mut View, envelope: Envelope, local: &dyn Fn(&str) -> usize) -> Vec<Change> {
    let tag = envelope.node;
    let id = crate::ids::ConnectionId::from_bits;
    match envelope.ev {
        Body::Opened { conn, user, rooms } => view.open(tag, id(conn), &user, &rooms, local),
        Body::Closed { conn } => view.close(tag, id(conn), local),
        Body::Joined { conn, user, room } => view.join(tag, id(conn), &user, &room, local),
        Body::Left { conn, room } => view.leave(tag, id(conn), &room),
        Body::Heartbeat | Body::Goodbye => Vec::new(),
    }
}

/// Asks node `tag` for a snapshot and starts again from it.
async fn resync(bridge: &Rc<Bridge>, tag: u16, inc: u64) {
    let cluster = bridge.cluster();
    let Some(snapshot) = read_snapshot(bridge, tag).await else {
        // The node's next heartbeat asks again.
        return tracing::debug!(tag, "no whole snapshot from a node");
    };
    if snapshot.inc != inc {
        return;
    }
    cluster.counters.resyncs.fetch_add(1, Ordering::Relaxed);
    bridge.change_view(|view, local| {
        if view.node(tag).is_some_and(|n| n.inc == inc) {
            view.replace(tag, &snapshot, local)
        } else {
            Vec::new()
        }
    });
}

/// Node `tag`'s whole snapshot, page after page, at the first page's number.
async fn read_snapshot(bridge: &Bridge, tag: u16) -> Option<Snapshot> {
    let subject = bridge.cluster().subjects.snapshot(tag);
    let mut whole: Option<Snapshot> = None;
    let mut after = None;
    loop {
        let request: Bytes = serde_json::to_vec(&SnapshotRequest { after })
            .expect("a request serializes")
            .into();
        let asked = bridge.client.request(subject.clone(), request);
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, asked)
            .await
            .ok()?
            .ok()?;
        let page: Snapshot = match serde_json::from_slice(&answer.payload) {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(tag, error = %e, "an unreadable snapshot");
                return None;
            }
        };
        after = page.conns.last().map(|c| c.conn).or(after);
        let more = page.more;
        match &mut whole {
            None => whole = Some(page),
            Some(whole) if whole.inc == page.inc => whole.conns.extend(page.conns),
            // The node restarted between two pages.
            Some(_) => return None,
        }
        if !more {
            return whole;
        }
    }
}

/// Says this node is alive every `cluster.node_timeout` / 3; takes nodes silent for
/// `cluster.node_timeout` for dead, looking ten times per timeout; and keeps the room
/// subscriptions in line with the rooms that have members here.
pub(super) async fn heartbeat(bridge: Rc<Bridge>) {
    let cluster = bridge.cluster();
    let mut beats = tokio::time::interval(cluster.node_timeout / 3);
    let mut looks = tokio::time::interval(cluster.node_timeout / 10);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_connected = false;
    loop {
        let beat = tokio::select! {
            _ = beats.tick() => true,
            _ = looks.tick() => false,
        };
        let connected = bridge.connected();
        if !connected {
            was_connected = false;
            continue;
        }
        if !beat && was_connected {
            find_the_dead(&bridge);
            continue;
        }
        if cluster.take_events_lost() {
            // An event lost on its way here leaves a gap the others must see.
            bridge.seq.set(bridge.seq.get() + 1);
        }
        reconcile_interest(&bridge).await;
        let payload = bridge.envelope(Body::Heartbeat);
        let subject = cluster.subjects.events();
        if bridge.client.publish(subject, payload).await.is_ok() {
            cluster.counters.events_out.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        if !was_connected {
            // Back from an outage: the others get a whole timeout to be heard again.
            was_connected = true;
            bridge.change_view(|view, _| {
                view.hear_all(now);
                Vec::new()
            });
            continue;
        }
        find_the_dead(&bridge);
    }
}

/// Takes the nodes silent for `cluster.node_timeout` for dead: their connections go.
fn find_the_dead(bridge: &Bridge) {
    let cluster = bridge.cluster();
    let silent = cluster.view().silent(Instant::now(), cluster.node_timeout);
    for tag in silent {
        let name = cluster.view().node(tag).map(|n| n.name.clone());
        tracing::warn!(node = ?name, timeout = ?cluster.node_timeout, "a node was silent too long: taken for dead, its connections removed");
        cluster.counters.nodes_lost.fetch_add(1, Ordering::Relaxed);
        bridge.change_view(|view, local| view.remove_node(tag, local));
    }
}
