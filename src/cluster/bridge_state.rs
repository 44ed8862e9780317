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

/// Most tasks the bridge runs at once for requests (history, commands, listings, answers
/// to other nodes); beyond it a request is refused at once, so that a slow NATS or
/// JetStream cannot pile them up.
pub(super) const TASKS_MAX: usize = 16 * 1024;

/// One of the [`TASKS_MAX`] tasks, held for as long as it runs.
pub(super) struct TaskTicket(Rc<Cell<usize>>);

impl Drop for TaskTicket {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

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
    /// The tasks running for requests (see [`TASKS_MAX`]).
    pub(super) tasks: Rc<Cell<usize>>,
    /// The rooms' logs, with history on.
    pub(super) history: Option<Rc<Histories>>,
}

impl Bridge {
    /// A ticket for one more request task, unless [`TASKS_MAX`] run already (then the
    /// refusal is counted as dropped on the way out).
    pub(super) fn task_ticket(&self) -> Option<TaskTicket> {
        if self.tasks.get() >= TASKS_MAX {
            let counters = &self.cluster().counters;
            counters
                .dropped_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        self.tasks.set(self.tasks.get() + 1);
        Some(TaskTicket(self.tasks.clone()))
    }

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
