//! The streams a shard is home to, by room name, and when a stream lives and ends.
//!
//! A stream outlives the emptying of its room: a room made by `join_room` leaves the
//! directory with its last member, yet the member that comes back a moment later must
//! still recover, so the next incarnation of the name continues the stream. It ends
//! (and the next one starts with a new epoch) when the room is removed through the hub,
//! or when nothing of it is held any more and the room is gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::stream::{RecoveryFailure, Stream};
use crate::config::HistoryConfig;
use crate::protocol::Recover;
use crate::registry::Registry;
use crate::room::Room;

/// Where a join falls in its room's stream.
pub(crate) struct JoinPoint {
    pub epoch: Arc<str>,
    /// The last offset the joiner does not receive live.
    pub top: u64,
    /// When the join asked to recover: every missed frame, or why not.
    pub recovery: Option<Result<Vec<Bytes>, RecoveryFailure>>,
}

/// A page of a stream's held messages.
pub(crate) struct Page {
    pub epoch: Arc<str>,
    pub top: u64,
    pub messages: Vec<(u64, Bytes)>,
}

#[derive(Default)]
pub(crate) struct Streams {
    by_name: HashMap<Arc<str>, Stream>,
}

impl Streams {
    /// The stream of `room`, made if it has none. `None` when `room` is no room to
    /// sequence for: removed through the hub, or an incarnation older than the one the
    /// stream serves (a message for it would reach no one).
    fn stream_of(
        &mut self,
        room: &Arc<Room>,
        now: Instant,
        config: &HistoryConfig,
    ) -> Option<&mut Stream> {
        if room.is_dissolved() {
            return None;
        }
        let stream = self
            .by_name
            .entry(room.name.clone())
            .or_insert_with(|| Stream::new(room.clone()));
        if !Arc::ptr_eq(&stream.room, room) {
            if room.id < stream.room.id {
                return None;
            }
            if stream.room.is_dissolved() {
                *stream = Stream::new(room.clone());
            } else {
                stream.room = room.clone();
            }
        }
        stream.expire(now, config.ttl);
        Some(stream)
    }

    /// Gives the next message of `room` its offset: `encode` makes its frame, which the
    /// stream keeps. `None` when the room is no room to sequence for.
    pub fn sequence(
        &mut self,
        room: &Arc<Room>,
        now: Instant,
        config: &HistoryConfig,
        encode: impl FnOnce(u64) -> Bytes,
    ) -> Option<(u64, Bytes)> {
        let stream = self.stream_of(room, now, config)?;
        let offset = stream.next_offset();
        let frame = encode(offset);
        stream.append(frame.clone(), now, config.size);
        Some((offset, frame))
    }

    /// Where a join of `room` falls now, and, if it asks, what it missed.
    pub fn place_join(
        &mut self,
        room: &Arc<Room>,
        now: Instant,
        config: &HistoryConfig,
        recover: Option<&Recover>,
    ) -> JoinPoint {
        let point = |stream: &Stream| JoinPoint {
            epoch: stream.epoch().clone(),
            top: stream.top(),
            recovery: recover.map(|from| stream.recover(from, config.max_recover)),
        };
        match self.stream_of(room, now, config) {
            Some(stream) => point(stream),
            // A room being removed: its members are about to be told they left.
            None => point(&Stream::new(room.clone())),
        }
    }

    /// The held messages of `room` after `since`, at most `limit`.
    pub fn page(
        &mut self,
        room: &Arc<Room>,
        now: Instant,
        config: &HistoryConfig,
        since: u64,
        limit: usize,
    ) -> Option<Page> {
        let stream = self.stream_of(room, now, config)?;
        Some(Page {
            epoch: stream.epoch().clone(),
            top: stream.top(),
            messages: stream.read(since, limit),
        })
    }

    /// `room` was removed through the hub: its stream ends.
    pub fn end(&mut self, room: &Arc<Room>) {
        if self
            .by_name
            .get(&room.name)
            .is_some_and(|s| Arc::ptr_eq(&s.room, room))
        {
            self.by_name.remove(&room.name);
        }
    }

    /// Lets expired messages go, and the streams that hold nothing of a room that is
    /// gone.
    pub fn sweep(&mut self, now: Instant, config: &HistoryConfig, directory: &Registry) {
        self.by_name.retain(|name, stream| {
            stream.expire(now, config.ttl);
            let room_lives = directory.room(name).is_some_and(|r| r.id >= stream.room.id);
            !stream.room.is_dissolved() && (room_lives || !stream.is_empty())
        });
        if self.by_name.capacity() > 2 * self.by_name.len() + 16 {
            self.by_name.shrink_to_fit();
        }
    }

    /// Messages and bytes held by every stream.
    pub fn usage(&self) -> (u64, u64) {
        self.by_name.values().fold((0, 0), |(m, b), s| {
            let (messages, bytes) = s.usage();
            (m + messages as u64, b + bytes as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ids::ConnectionId;
    use crate::room_pattern::RoomPatterns;

    fn config() -> HistoryConfig {
        HistoryConfig {
            size: 10,
            ttl: Duration::from_secs(60),
            max_recover: 300,
        }
    }

    fn publish(streams: &mut Streams, room: &Arc<Room>, now: Instant) -> Option<u64> {
        streams
            .sequence(room, now, &config(), |n| Bytes::from(n.to_string()))
            .map(|(offset, _)| offset)
    }

    #[test]
    fn a_room_made_again_after_emptying_continues_its_stream() {
        let directory = Registry::new(1, RoomPatterns::default());
        let mut streams = Streams::default();
        let now = Instant::now();
        let member = ConnectionId::new(0, 1);
        let (first, _, _) = directory.join("adhoc", member, true).unwrap();
        assert_eq!(publish(&mut streams, &first, now), Some(1));
        let epoch = streams.place_join(&first, now, &config(), None).epoch;
        directory.leave(&first, member);
        assert!(directory.room("adhoc").is_none());
        streams.sweep(now, &config(), &directory);
        let (second, _, _) = directory.join("adhoc", member, true).unwrap();
        assert_ne!(first.id, second.id);
        assert_eq!(publish(&mut streams, &second, now), Some(2));
        assert_eq!(
            streams.place_join(&second, now, &config(), None).epoch,
            epoch
        );
        assert_eq!(
            publish(&mut streams, &first, now),
            None,
            "the older incarnation reaches no one"
        );
    }

    #[test]
    fn a_removed_room_ends_its_stream_and_the_next_has_a_new_epoch() {
        let directory = Registry::new(1, RoomPatterns::default());
        directory.create_room("lobby");
        let mut streams = Streams::default();
        let now = Instant::now();
        let first = directory.room("lobby").unwrap();
        publish(&mut streams, &first, now);
        let epoch = streams.place_join(&first, now, &config(), None).epoch;
        let (removed, _) = directory.remove_room("lobby").unwrap();
        assert_eq!(publish(&mut streams, &removed, now), None);
        directory.create_room("lobby");
        let second = directory.room("lobby").unwrap();
        assert_eq!(publish(&mut streams, &second, now), Some(1));
        let point = streams.place_join(&second, now, &config(), None);
        assert_ne!(point.epoch, epoch);
        streams.end(&removed);
        assert_eq!(
            streams.usage().0,
            1,
            "ending the old room spares the new stream"
        );
        streams.end(&second);
        assert_eq!(streams.usage(), (0, 0));
    }

    #[test]
    fn streams_of_gone_rooms_go_once_they_hold_nothing() {
        let directory = Registry::new(1, RoomPatterns::default());
        let mut streams = Streams::default();
        let start = Instant::now();
        let member = ConnectionId::new(0, 1);
        let (room, _, _) = directory.join("brief", member, true).unwrap();
        publish(&mut streams, &room, start);
        directory.leave(&room, member);
        streams.sweep(start, &config(), &directory);
        assert_eq!(streams.usage().0, 1, "held for those who come back");
        streams.sweep(start + Duration::from_secs(61), &config(), &directory);
        assert!(streams.by_name.is_empty());
    }
}
