//! Micro-benchmarks of the hub's inner work: one shard's fan-out to N in-memory queues,
//! a room join and leave in the directory, and a hand-off between two shards' inboxes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use neonex::bench::{Fanout, Handoff, Rooms};

/// Frames queued on each member between two flush passes in the fan-out bench.
const FRAMES_PER_FLUSH: u64 = 8;

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for n in [100usize, 1_000, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("queue_one_frame", n), &n, |b, &n| {
            let mut room = Fanout::new(n);
            let mut rounds = 0u64;
            b.iter(|| {
                let delivered = room.deliver();
                rounds += 1;
                // A flush every few frames, as under steady broadcasting: queues stay far
                // below their bounds, and the drain's cost (what the queue does with its
                // memory) is part of each delivery's.
                if rounds % FRAMES_PER_FLUSH == 0 {
                    room.flush();
                }
                black_box(delivered)
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
