//! What a node knows of the other nodes: their connections, with each one's user and
//! rooms, and from them the rooms' and users' counts per node.
//!
//! Every change is a set operation that may be applied twice (an event that a snapshot
//! already holds) and reports what it changed as [`Change`]s, in the order this node
//! tells its own clients: the rooms a connection joined or left, then its user coming
//! online or going offline. A user is online while it has a connection anywhere: the
//! caller says how many it has on this node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wire::Snapshot;
use crate::ids::ConnectionId;
use crate::stats::NodeStats;

/// The other nodes, by tag.
#[derive(Debug, Default)]
pub(crate) struct View {
    nodes: HashMap<u16, Node>,
}

/// One other node as this node knows it.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub inc: u64,
    /// Its last event applied here.
    pub seq: u64,
    /// When it was last heard.
    pub heard: Instant,
    conns: HashMap<ConnectionId, Conn>,
    rooms: HashMap<Arc<str>, usize>,
    users: HashMap<Arc<str>, usize>,
}

#[derive(Debug)]
struct Conn {
    user: Arc<str>,
    rooms: Vec<Arc<str>>,
}

/// What a change to the view means for this node's clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Joined {
        room: Arc<str>,
        user: Arc<str>,
    },
    Left {
        room: Arc<str>,
        user: Arc<str>,
    },
    /// The user's first connection in the cluster; it is in these rooms.
    Online {
        user: Arc<str>,
        rooms: Vec<Arc<str>>,
    },
    /// The user's last connection in the cluster closed; it was in these rooms.
    Offline {
        user: Arc<str>,
        rooms: Vec<Arc<str>>,
    },
}

/// How many connections a user has on this node.
pub(crate) type LocalCount<'a> = &'a dyn Fn(&str) -> usize;

impl View {
    /// Node `tag`, if this node knows it.
    pub fn node(&self, tag: u16) -> Option<&Node> {
        self.nodes.get(&tag)
    }

    pub fn node_mut(&mut self, tag: u16) -> Option<&mut Node> {
        self.nodes.get_mut(&tag)
    }

    /// Starts knowing node `tag`, with no connections yet.
    pub fn meet(&mut self, tag: u16, name: &str, inc: u64, now: Instant) -> &mut Node {
        self.nodes.entry(tag).or_insert_with(|| Node {
            name: name.to_owned(),
            inc,
            seq: 0,
            heard: now,
            conns: HashMap::new(),
            rooms: HashMap::new(),
            users: HashMap::new(),
        })
    }

    fn user_total(&self, user: &str, local: LocalCount) -> usize {
        local(user)
            + self
                .nodes
                .values()
                .map(|n| n.users.get(user).copied().unwrap_or(0))
                .sum::<usize>()
    }

    /// Connection `conn` of node `tag` is open, in `rooms` (and perhaps others already).
    pub fn open(
        &mut self,
        tag: u16,
        conn: ConnectionId,
        user: &Arc<str>,
        rooms: &[Arc<str>],
        local: LocalCount,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(node) = self.nodes.get(&tag) else {
            return changes;
        };
        let new = !node.conns.contains_key(&conn);
        let online = new && self.user_total(user, local) == 0;
        let node = self.nodes.get_mut(&tag).expect("looked up above");
        if new {
            node.conns.insert(
                conn,
                Conn {
                    user: user.clone(),
                    rooms: Vec::new(),
                },
            );
            *node.users.entry(user.clone()).or_default() += 1;
        }
        for room in rooms {
            if node.add_to_room(conn, room) {
                changes.push(Change::Joined {
                    room: room.clone(),
                    user: user.clone(),
                });
            }
        }
        if online {
            changes.push(Change::Online {
                user: user.clone(),
                rooms: node.conns[&conn].rooms.clone(),
            });
        }
        changes
    }

    /// Connection `conn` of node `tag` joined `room`.
    pub fn join(
        &mut self,
        tag: u16,
        conn: ConnectionId,
        user: &Arc<str>,
        room: &Arc<str>,
        local: LocalCount,
    ) -> Vec<Change> {
        self.open(tag, conn, user, std::slice::from_ref(room), local)
    }

    /// Connection `conn` of node `tag` left `room`.
    pub fn leave(&mut self, tag: u16, conn: ConnectionId, room: &str) -> Vec<Change> {
        let Some(node) = self.nodes.get_mut(&tag) else {
            return Vec::new();
        };
        match node.remove_from_room(conn, room) {
            Some((room, user)) => vec![Change::Left { room, user }],
            None => Vec::new(),
        }
    }

    /// Connection `conn` of node `tag` closed.
    pub fn close(&mut self, tag: u16, conn: ConnectionId, local: LocalCount) -> Vec<Change> {
        let Some(node) = self.nodes.get_mut(&tag) else {
            return Vec::new();
        };
        let Some(rooms) = node.conns.get(&conn).map(|c| c.rooms.clone()) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for room in &rooms {
            if let Some((room, user)) = node.remove_from_room(conn, room) {
                changes.push(Change::Left { room, user });
            }
        }
        let gone = node.conns.remove(&conn).expect("looked up above");
        decrement(&mut node.users, &gone.user);
        if self.user_total(&gone.user, local) == 0 {
            changes.push(Change::Offline {
                user: gone.user,
                rooms,
            });
        }
        changes
    }

    /// Node `tag` is as `snapshot` says: connections it lacks close, the others open.
    pub fn replace(&mut self, tag: u16, snapshot: &Snapshot, local: LocalCount) -> Vec<Change> {
        let Some(node) = self.nodes.get_mut(&tag) else {
            return Vec::new();
        };
        node.seq = snapshot.seq;
        let wanted: HashMap<ConnectionId, &[Arc<str>]> = snapshot
            .conns
            .iter()
            .map(|c| (ConnectionId::from_bits(c.conn), c.rooms.as_slice()))
            .collect();
        let mut changes = Vec::new();
        let held: Vec<(ConnectionId, Vec<Arc<str>>)> = node
            .conns
            .iter()
            .map(|(id, c)| (*id, c.rooms.clone()))
            .collect();
        for (id, rooms) in held {
            match wanted.get(&id) {
                None => changes.extend(self.close(tag, id, local)),
                Some(keep) => {
                    for room in rooms.iter().filter(|r| !keep.contains(r)) {
                        changes.extend(self.leave(tag, id, room));
                    }
                }
            }
        }
        for c in &snapshot.conns {
            let id = ConnectionId::from_bits(c.conn);
            changes.extend(self.open(tag, id, &c.user, &c.rooms, local));
        }
        changes
    }

    /// Node `tag` is gone: every connection of it closes.
    pub fn remove_node(&mut self, tag: u16, local: LocalCount) -> Vec<Change> {
        let empty = Snapshot::default();
        let changes = self.replace(tag, &empty, local);
        self.nodes.remove(&tag);
        changes
    }

    /// Takes every node as heard at `now`.
    pub fn hear_all(&mut self, now: Instant) {
        for node in self.nodes.values_mut() {
            node.heard = now;
        }
    }

    /// The nodes last heard before `now - timeout`.
    pub fn silent(&self, now: Instant, timeout: Duration) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, n)| now.saturating_duration_since(n.heard) >= timeout)
            .map(|(tag, _)| *tag)
            .collect()
    }

    /// Members of room `name` on the other nodes.
    pub fn room_count(&self, name: &str) -> usize {
        self.nodes
            .values()
            .map(|n| n.rooms.get(name).copied().unwrap_or(0))
            .sum()
    }

    /// The rooms with members on other nodes, with those members' count.
    pub fn rooms(&self) -> HashMap<Arc<str>, usize> {
        let mut rooms: HashMap<Arc<str>, usize> = HashMap::new();
        for node in self.nodes.values() {
            for (room, n) in &node.rooms {
                *rooms.entry(room.clone()).or_default() += n;
            }
        }
        rooms
    }

    /// Connections of `user` on other nodes.
    pub fn user_count(&self, user: &str) -> usize {
        self.nodes
            .values()
            .map(|n| n.users.get(user).copied().unwrap_or(0))
            .sum()
    }

    /// The users with connections on other nodes.
    pub fn users(&self) -> std::collections::HashSet<Arc<str>> {
        self.nodes
            .values()
            .flat_map(|n| n.users.keys().cloned())
            .collect()
    }

    /// The nodes that hold connections of `user`, with how many each.
    pub fn nodes_of_user(&self, user: &str) -> Vec<(u16, usize)> {
        self.nodes
            .iter()
            .filter_map(|(tag, n)| n.users.get(user).map(|c| (*tag, *c)))
            .collect()
    }

    /// The connections of `user` on other nodes.
    pub fn connections_of(&self, user: &str) -> Vec<ConnectionId> {
        self.nodes
            .values()
            .flat_map(|n| {
                n.conns
                    .iter()
                    .filter(|(_, c)| &*c.user == user)
                    .map(|(id, _)| *id)
            })
            .collect()
    }

    /// The user and rooms of another node's connection `id`.
    pub fn connection(&self, id: ConnectionId) -> Option<(Arc<str>, Vec<Arc<str>>)> {
        let conn = self.nodes.get(&id.node())?.conns.get(&id)?;
        Some((conn.user.clone(), conn.rooms.clone()))
    }

    /// The other nodes' tags.
    pub fn tags(&self) -> Vec<u16> {
        self.nodes.keys().copied().collect()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.nodes.values().map(|n| n.name.clone()).collect();
        names.sort();
        names
    }

    /// Each other node's own figures.
    pub fn node_stats(&self) -> impl Iterator<Item = NodeStats> + '_ {
        self.nodes.values().map(|n| NodeStats {
            node_id: n.name.clone(),
            connections: n.conns.len(),
            users: n.users.len(),
            rooms: n.rooms.len(),
        })
    }

    /// Connections on the other nodes.
    pub fn connection_count(&self) -> usize {
        self.nodes.values().map(|n| n.conns.len()).sum()
    }
}

impl Node {
    /// True if `conn` was not in `room` before.
    fn add_to_room(&mut self, conn: ConnectionId, room: &Arc<str>) -> bool {
        let c = self.conns.get_mut(&conn).expect("an open connection");
        if c.rooms.contains(room) {
            return false;
        }
        c.rooms.push(room.clone());
        *self.rooms.entry(room.clone()).or_default() += 1;
        true
    }

    /// The room and the user, if `conn` was in `room`.
    fn remove_from_room(&mut self, conn: ConnectionId, room: &str) -> Option<(Arc<str>, Arc<str>)> {
        let c = self.conns.get_mut(&conn)?;
        let at = c.rooms.iter().position(|r| &**r == room)?;
        let room = c.rooms.swap_remove(at);
        decrement(&mut self.rooms, &room);
        Some((room, c.user.clone()))
    }
}

fn decrement(counts: &mut HashMap<Arc<str>, usize>, key: &Arc<str>) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::SnapshotConnection;
    use super::*;

    fn id(node: u16, seq: u64) -> ConnectionId {
        ConnectionId::on_node(node, 0, seq)
    }

    fn name(s: &str) -> Arc<str> {
        s.into()
    }

    const NONE_HERE: LocalCount = &|_| 0;

    #[test]
    fn opens_joins_leaves_and_closes_tell_what_changed() {
        let mut view = View::default();
        view.meet(2, "b", 1, Instant::now());
        let (ann, general) = (name("ann"), name("general"));
        let opened = view.open(2, id(2, 1), &ann, std::slice::from_ref(&general), NONE_HERE);
        assert_eq!(
            opened,
            [
                Change::Joined {
                    room: general.clone(),
                    user: ann.clone()
                },
                Change::Online {
                    user: ann.clone(),
                    rooms: vec![general.clone()]
                }
            ]
        );
        assert_eq!(view.room_count("general"), 1);
        assert!(
            view.open(2, id(2, 1), &ann, std::slice::from_ref(&general), NONE_HERE)
                .is_empty(),
            "twice is once"
        );
        let second = view.open(2, id(2, 2), &ann, &[], NONE_HERE);
        assert!(second.is_empty(), "ann was online already");
        assert_eq!(view.user_count("ann"), 2);
        assert_eq!(view.leave(2, id(2, 1), "general").len(), 1);
        assert!(view.leave(2, id(2, 1), "general").is_empty());
        assert!(view.close(2, id(2, 1), NONE_HERE).is_empty());
        let last = view.close(2, id(2, 2), NONE_HERE);
        assert_eq!(
            last,
            [Change::Offline {
                user: ann,
                rooms: vec![]
            }]
        );
        assert_eq!(view.connection_count(), 0);
    }

    #[test]
    fn a_user_with_a_connection_here_stays_online() {
        let mut view = View::default();
        view.meet(2, "b", 1, Instant::now());
        let here: LocalCount = &|user| usize::from(user == "ann");
        let ann = name("ann");
        assert!(view.open(2, id(2, 1), &ann, &[], here).is_empty());
        assert!(view.close(2, id(2, 1), here).is_empty());
    }

    #[test]
    fn a_snapshot_replaces_what_was_known_and_a_lost_node_closes_all() {
        let mut view = View::default();
        view.meet(3, "c", 1, Instant::now());
        let (bob, a, b) = (name("bob"), name("a"), name("b"));
        view.open(3, id(3, 1), &bob, &[a.clone(), b.clone()], NONE_HERE);
        view.open(3, id(3, 2), &bob, &[], NONE_HERE);
        let snapshot = Snapshot {
            seq: 9,
            conns: vec![SnapshotConnection {
                conn: id(3, 1).to_bits(),
                user: bob.clone(),
                rooms: vec![b.clone()],
            }],
            ..Snapshot::default()
        };
        let changes = view.replace(3, &snapshot, NONE_HERE);
        assert_eq!(
            changes,
            [Change::Left {
                room: a.clone(),
                user: bob.clone()
            }]
        );
        assert_eq!(view.node(3).unwrap().seq, 9);
        assert_eq!(view.room_count("a"), 0);
        let lost = view.remove_node(3, NONE_HERE);
        assert_eq!(
            lost,
            [
                Change::Left {
                    room: b.clone(),
                    user: bob.clone()
                },
                Change::Offline {
                    user: bob,
                    rooms: vec![b]
                }
            ]
        );
        assert_eq!(view.node_count(), 0);
    }
}
