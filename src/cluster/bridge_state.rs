//! The bridge's state, shared by its tasks (all on the bridge's one thread).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use tokio::task::JoinHandle as TaskHandle;

use super::history::Histories;
use super::link::Cluster;
use super::notices;
use super::view::{Change, View};
use super::wire::{Body, Envelope};
use crate::shard::shared::HubShared;
use crate::stats::LinkState;

/// How long a request to another node (a snapshot, a command, a tag's claim) waits for
/// its answer.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the bridge's tasks share.
pub(super) struct Bridge {
    pub(super) hub: Arc<HubShared>,
    pub(super) client: Client,
    /// The number of this node's last event.
    pub(super) seq: Cell<u64>,
    /// The room subjects this node is subscribed to, with the task reading each.
    pub(super) rooms: RefCell<HashMap<Arc<str>, TaskHandle<()>>>,
    /// Nodes that said goodbye, by tag, with their incarnation: their late events are
    /// not a new node.
    pub(super) departed: RefCell<HashMap<u16, u64>>,
    /// The nodes a resynchronisation runs with, and their events held meanwhile.
    pub(super) resyncing: RefCell<HashMap<u16, std::collections::VecDeque<super::wire::Envelope>>>,
    /// The rooms' logs, with history on.
    pub(super) history: Option<Rc<Histories>>,
}

impl Bridge {
    pub(super) fn cluster(&self) -> &Cluster {
        self.hub.cluster.as_ref().expect("a cluster's node")
    }

    pub(super) fn envelope(&self, ev: Body) -> Bytes {
        let cluster = self.cluster();
        let envelope = Envelope {
            node: cluster.tag,
            inc: cluster.incarnation,
            name: cluster.name.clone(),
            seq: self.seq.get(),
            ev,
        };
        serde_json::to_vec(&envelope)
            .expect("an envelope serializes")
            .into()
    }

    pub(super) fn connected(&self) -> bool {
        self.cluster().link() == LinkState::Connected
    }

    /// How many connections `user` has on this node.
    fn local_count(&self) -> impl Fn(&str) -> usize + '_ {
        |user| self.hub.registry.user_connection_count(user)
    }

    /// Applies `step` to the view and tells this node's clients what changed.
    pub(super) fn change_view(
        &self,
        step: impl FnOnce(&mut View, &dyn Fn(&str) -> usize) -> Vec<Change>,
    ) {
        let local = self.local_count();
        let mut view = self.cluster().view();
        let changes = step(&mut view, &local);
        notices::tell(&self.hub, &view, changes);
    }
}
