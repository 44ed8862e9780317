//! Commands between nodes: asking another node to act on its connections, and carrying
//! out what the others ask of this node's (see [`super::command`]).

use std::rc::Rc;

use async_nats::Subscriber;
use bytes::Bytes;
use futures_util::StreamExt;

use super::bridge_state::{Bridge, REQUEST_TIMEOUT};
use super::carry_out::carry_out;
use super::command::{Answer, Command};

/// Asks node `node` to carry out `command`, and hands `reply` its answer, or
/// [`Answer::Failed`] if none comes in time.
pub(super) async fn ask(
    bridge: Rc<Bridge>,
    node: u16,
    command: Command,
    reply: Box<dyn FnOnce(Answer) + Send>,
) {
    let answer = request(&bridge, node, &command).await;
    reply(answer.unwrap_or(Answer::Failed));
}

/// Node `node`'s answer to `command`, if it comes within [`REQUEST_TIMEOUT`].
pub(super) async fn request(bridge: &Bridge, node: u16, command: &Command) -> Option<Answer> {
    if !bridge.connected() {
        return None;
    }
    let payload: Bytes = serde_json::to_vec(command)
        .expect("a command serializes")
        .into();
    let subject = bridge.cluster().subjects.command(node);
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, bridge.client.request(subject, payload))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&answer.payload).ok()
}

/// Carries out the commands other nodes send for this node's connections.
pub(super) async fn answer_commands(bridge: Rc<Bridge>, mut commands: Subscriber) {
    while let Some(message) = commands.next().await {
        let Some(reply) = message.reply else {
            continue;
        };
        let Some(ticket) = bridge.task_ticket() else {
            let refused: Bytes = serde_json::to_vec(&Answer::Failed)
                .expect("an answer serializes")
                .into();
            let _ = bridge.client.publish(reply, refused).await;
            continue;
        };
        let bridge = bridge.clone();
        tokio::task::spawn_local(async move {
            let _ticket = ticket;
            let answer = match serde_json::from_slice::<Command>(&message.payload) {
                Ok(command) => carry_out(&bridge.hub, command).await,
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable cluster command");
                    Answer::Failed
                }
            };
            let payload: Bytes = serde_json::to_vec(&answer)
                .expect("an answer serializes")
                .into();
            let _ = bridge.client.publish(reply, payload).await;
        });
    }
}
