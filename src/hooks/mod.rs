//! Hooks: how an application hears its clients and decides for them.
//!
//! - [`application`]: [`Application`], what an embedding application asks for
//!   (`HubConfig::application`); [`event`]: the [`HubEvent`]s it receives through
//!   `events`, a bounded queue it reads on its own threads.
//! - [`answer`]: the [`Decision`] and [`Reply`] handles that answer a question, and the
//!   `ruling` they carry back to the asking connection's shard.
//! - `proxy`: the same questions asked of a backend over HTTP (`proxy.*`), for
//!   `neonex serve`.
//!
//! A question never makes a shard wait: the asking connection holds its later messages
//! in order (`shard::awaiting`) until the answer comes back through the shard's inbox or
//! its deadline passes.

pub mod answer;
pub mod application;
pub mod event;
pub(crate) mod events;
pub(crate) mod proxy;
pub(crate) mod ruling;

pub use answer::{Decision, InvalidJson, Reply};
pub use application::Application;
pub use event::HubEvent;
pub use events::ApplicationStats;
