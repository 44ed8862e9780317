//! Micro-benchmarks of the hub's inner work: one real shard's fan-out to N connections
//! (the production `deliver_local`, and with the production flush pass writing to loopback
//! sockets), a room join and leave in the directory, and a hand-off between two shards'
//! inboxes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use neonex::bench::{Handoff, RoomFanout, Rooms};

/// Frames queued on each member between two flush passes in the fan-out benches.
const FRAMES_PER_FLUSH: u64 = 8;

/// Room sizes: two sockets a member stay under the 20,000 open files a process may have.
const ROOM_SIZES: [usize; 3] = [100, 1_000, 5_000];

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for n in ROOM_SIZES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("queue_one_frame", n), &n, |b, &n| {
            let mut room = RoomFanout::new(n);
            let mut rounds = 0u64;
            b.iter(|| {
                let delivered = room.deliver();
                rounds += 1;
                // A drain every few frames, as under steady broadcasting: queues stay far
                // below their bounds, and the drain's cost (what the queue does with its
                // memory) is part of each delivery's.
                if rounds % FRAMES_PER_FLUSH == 0 {
                    room.drain_as_written();
                }
                black_box(delivered)
            })
        });
    }
    for n in ROOM_SIZES {
        group.throughput(Throughput::Elements(n as u64 * FRAMES_PER_FLUSH));
        group.bench_with_input(BenchmarkId::new("flush_to_sockets", n), &n, |b, &n| {
            let mut room = RoomFanout::new(n);
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    for _ in 0..FRAMES_PER_FLUSH {
                        black_box(room.deliver());
                    }
                    room.flush_to_sockets();
                    spent += started.elapsed();
                    // The clients read, off the clock, so the next pass finds room.
                    black_box(room.drain_peers());
                }
                spent
            })
        });
    }
    group.finish();
}

fn rooms(c: &mut Criterion) {
    let mut group = c.benchmark_group("rooms");
    for members in [10u64, 10_000] {
        group.bench_with_input(
            BenchmarkId::new("join_and_leave", members),
            &members,
            |b, &m| {
                let mut rooms = Rooms::new(m);
                b.iter(|| black_box(rooms.join_and_leave()))
            },
        );
    }
    group.finish();
}

fn handoff(c: &mut Criterion) {
    let mut handoff = Handoff::new();
    c.bench_function("cross_shard/round_trip", |b| {
        b.iter(|| handoff.round_trip())
    });
}

criterion_group!(benches, fanout, rooms, handoff);
criterion_main!(benches);
