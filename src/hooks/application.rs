//! `Application`: what an embedding application asks to hear from its clients, and which
//! of the hub's decisions it wants to make itself.

use std::time::Duration;

/// Events a queue holds before the hub counts what the application did not take in time.
pub const DEFAULT_EVENT_CAPACITY: usize = 64 * 1024;

/// An application that hears its clients (`HubConfig::application`).
///
/// With an `Application` set, the hub sends [`HubEvent`](crate::HubEvent)s to a bounded
/// queue that the application reads on its own threads ([`Hub::events`](crate::Hub::events)).
/// Events about what already happened (connected, joined, published, left, disconnected)
/// need no answer. Questions (a custom message, and with the policy switches a join or a
/// publish) carry a [`Reply`](crate::Reply) or [`Decision`](crate::Decision): until it is
/// answered, the asking connection's later messages wait, in order, and no shard waits.
///
/// ```
/// use std::time::Duration;
/// use neonex::{Application, HubConfig};
///
/// let config = HubConfig {
///     application: Some(
///         Application::new()
///             .custom_types(["recent"])
///             .headers(["user-agent"])
///             .authorize_joins()
///             .decision_timeout(Duration::from_millis(500)),
///     ),
///     ..HubConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct Application {
    /// The application owns the whole message protocol: no `welcome`, no JSON of the
    /// hub's own, no autojoin, no presence; every text and binary message is handed over
    /// as [`HubEvent::Text`](crate::HubEvent::Text) or
    /// [`HubEvent::Binary`](crate::HubEvent::Binary). Rooms, broadcasts and sends keep
    /// working through the [`Hub`](crate::Hub).
    pub raw: bool,
    /// Message `type`s the protocol does not define that the application answers: each
    /// arrives as [`HubEvent::Custom`](crate::HubEvent::Custom). Other unknown types get
    /// `error` `unknown_type`, as always.
    pub custom_types: Vec<String>,
    /// Request headers (lower-case names) that [`HubEvent::Connected`](crate::HubEvent::Connected)
    /// carries.
    pub headers: Vec<String>,
    /// Every `join_room` from a client waits for a
    /// [`HubEvent::JoinRequest`](crate::HubEvent::JoinRequest)'s decision.
    pub authorize_joins: bool,
    /// Every `message` from a client waits for a
    /// [`HubEvent::PublishRequest`](crate::HubEvent::PublishRequest)'s decision, which may
    /// replace its `data`.
    pub authorize_publishes: bool,
    /// A question not answered in this time gets its default: a join or publish is
    /// refused, a custom message is taken as done.
    pub decision_timeout: Duration,
    /// Most events waiting for the application. Past it, events are counted as dropped
    /// and questions get their default at once.
    pub event_capacity: usize,
}

impl Default for Application {
    fn default() -> Self {
        Self {
            raw: false,
            custom_types: Vec::new(),
            headers: Vec::new(),
            authorize_joins: false,
            authorize_publishes: false,
            decision_timeout: Duration::from_secs(2),
            event_capacity: DEFAULT_EVENT_CAPACITY,
        }
    }
}

impl Application {
    /// An application that hears every event and decides nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// An application that owns the whole message protocol (see [`Application::raw`]).
    pub fn raw() -> Self {
        Self {
            raw: true,
            ..Self::default()
        }
    }

    /// Message types the application answers itself.
    pub fn custom_types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.custom_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Request headers to hand over with each connection, by name.
    pub fn headers<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.headers = names
            .into_iter()
            .map(|name| name.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// Clients' joins wait for the application's decision.
    pub fn authorize_joins(mut self) -> Self {
        self.authorize_joins = true;
        self
    }

    /// Clients' chat messages wait for the application's decision.
    pub fn authorize_publishes(mut self) -> Self {
        self.authorize_publishes = true;
        self
    }

    /// How long a question may wait for its answer.
    pub fn decision_timeout(mut self, timeout: Duration) -> Self {
        self.decision_timeout = timeout;
        self
    }

    /// True if `kind` is one of the application's own message types.
    pub(crate) fn owns_type(&self, kind: &str) -> bool {
        self.custom_types.iter().any(|t| t == kind)
    }
}
