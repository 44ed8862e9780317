//! The journal: the rooms' positioned messages in one JetStream stream, when history is
//! on in a cluster (`history.size` > 0 with `cluster.nats_url`).
//!
//! Each room is a subject of the stream (`P.history.<room>`), limited to `history.size`
//! messages and `history.ttl` of age. Each message is the very frame clients receive,
//! with the room's offset and epoch in headers. One stream holding many rooms numbers its
//! messages across all of them, so the room's own offset is stamped by the writer, and
//! the writer must be the only one: every append names the subject's last sequence it
//! saw (`Nats-Expected-Last-Subject-Sequence`), and JetStream refuses it if another node
//! appended meanwhile; the writer then reads the new head and tries again with the next
//! offset.
//!
//! A room's first message, when its subject is empty, is its genesis: offset 0, no
//! frame, and a new random epoch. The epoch lives in the room's messages, so it outlives
//! any node; once every message of a room has expired the next writer starts a new
//! epoch, since what a client could recover is gone.

use std::time::Duration;

use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, DirectGetErrorKind, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;

use super::subjects::Subjects;
use crate::config::HistoryConfig;

const OFFSET_HEADER: &str = "Neonex-Offset";
const EPOCH_HEADER: &str = "Neonex-Epoch";

/// How long an append waits for JetStream's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// One message of a room's subject.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The stream's sequence number of it.
    pub seq: u64,
    /// The room's offset (0: the genesis).
    pub offset: u64,
    pub epoch: String,
    /// The frame clients receive (empty for the genesis).
    pub frame: Bytes,
}

/// An append that went in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Appended {
    /// The message's stream sequence.
    pub seq: u64,
    /// An earlier try of the same message (the same id) had gone in already, at `seq`.
    pub duplicate: bool,
}

/// Why an append did not go in.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Another writer appended to the room since the head this one named.
    Conflict,
    /// JetStream did not take it (unreachable, timed out, refused).
    Failed(String),
}

/// The hub's stream in JetStream.
#[derive(Clone)]
pub(crate) struct Journal {
    context: Context,
    stream: jetstream::stream::Stream,
    subjects: Subjects,
}

impl Journal {
    /// The stream, created if it does not exist, with limits from `history` (a stream
    /// made with others is brought to them).
    pub async fn open(
        client: Client,
        subjects: Subjects,
        history: &HistoryConfig,
    ) -> Result<Journal, String> {
        let context = jetstream::new(client);
        let config = Config {
            name: subjects.journal(),
            subjects: vec![subjects.history_all()],
            max_messages_per_subject: history.size as i64,
            max_age: history.ttl,
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            allow_direct: true,
            ..Config::default()
        };
        let stream = match context.get_or_create_stream(config.clone()).await {
            Ok(stream) => stream,
            Err(e) => return Err(format!("cannot open the JetStream stream: {e}")),
        };
        let held = &stream.cached_info().config;
        if held.max_messages_per_subject != config.max_messages_per_subject
            || held.max_age != config.max_age
        {
            tracing::info!(stream = %config.name, "the JetStream stream's limits follow this node's history settings");
            if let Err(e) = context.update_stream(config.clone()).await {
                tracing::warn!(error = %e, "cannot update the JetStream stream's limits");
            }
        }
        Ok(Journal {
            context,
            stream,
            subjects,
        })
    }

    fn subject(&self, room: &str) -> String {
        self.subjects.history(room)
    }

    /// The last message of `room`, if its subject holds any.
    pub async fn head(&self, room: &str) -> Result<Option<Entry>, String> {
        match self
            .stream
            .direct_get_last_for_subject(self.subject(room))
            .await
        {
            Ok(message) => Ok(entry(message.sequence, &message.headers, message.payload)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The first message of `room` at or after sequence `from`, if any.
    pub async fn next(&self, room: &str, from: u64) -> Result<Option<Entry>, String> {
        let got = self
            .stream
            .direct_get_next_for_subject(self.subject(room), Some(from.max(1)))
            .await;
        match got {
            Ok(message) => Ok(entry(message.sequence, &message.headers, message.payload)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The message at stream sequence `seq`, if the stream holds it.
    pub async fn get(&self, seq: u64) -> Result<Option<Entry>, String> {
        match self.stream.direct_get(seq).await {
            Ok(message) => Ok(entry(message.sequence, &message.headers, message.payload)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Appends `frame` at `offset` of `epoch` to `room`, whose last message was `after`
    /// (a stream sequence; 0 when the subject is empty). `id` names the message across
    /// tries, so that a try whose acknowledgement was lost is not stored twice.
    pub async fn append(
        &self,
        room: &str,
        at: (&str, u64),
        frame: Bytes,
        after: u64,
        id: &str,
    ) -> Result<Appended, AppendError> {
        let (epoch, offset) = at;
        let mut headers = HeaderMap::new();
        headers.insert(OFFSET_HEADER, offset.to_string());
        headers.insert(EPOCH_HEADER, epoch);
        let message = PublishMessage::build()
            .payload(frame)
            .headers(headers)
            .message_id(id)
            .expected_last_subject_sequence(after);
        let published = self
            .context
            .send_publish(self.subject(room), message)
            .await
            .map_err(|e| AppendError::Failed(e.to_string()))?;
        match tokio::time::timeout(ACK_TIMEOUT, published).await {
            Ok(Ok(ack)) => Ok(Appended {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(AppendError::Conflict)
            }
            Ok(Err(e)) => Err(AppendError::Failed(e.to_string())),
            Err(_) => Err(AppendError::Failed("no acknowledgement in time".into())),
        }
    }

    /// Forgets every message of `room` (the room was removed).
    pub async fn purge(&self, room: &str) -> Result<(), String> {
        self.stream
            .purge()
            .filter(self.subject(room))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The messages of `room` from sequence `from` on, in order, as they are appended,
    /// with no gap (an ordered consumer starts again where it lost its place).
    pub async fn follow(
        &self,
        room: &str,
        from: u64,
        inbox: String,
    ) -> Result<jetstream::consumer::push::Ordered, String> {
        let config = OrderedConfig {
            deliver_subject: inbox,
            filter_subject: self.subject(room),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ..OrderedConfig::default()
        };
        let consumer = self
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| e.to_string())?;
        consumer.messages().await.map_err(|e| e.to_string())
    }
}

/// The entry of a message at `seq` with `headers`; `None` for a message neonex did not
/// write.
pub(crate) fn entry(seq: u64, headers: &HeaderMap, frame: Bytes) -> Option<Entry> {
    let offset = headers.get(OFFSET_HEADER)?.as_str().parse().ok()?;
    let epoch = headers.get(EPOCH_HEADER)?.as_str().to_owned();
    Some(Entry {
        seq,
        offset,
        epoch,
        frame,
    })
}
