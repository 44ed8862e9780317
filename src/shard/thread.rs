//! Which thread this is, and which cores the shards may have: shard threads mark
//! themselves, since some calls (waiting for a shard's answer, waiting for room in an
//! inbox) must never be made on one.

use std::cell::Cell;

thread_local! {
    /// Set on shard threads, which must never block on another shard.
    static ON_SHARD: Cell<bool> = const { Cell::new(false) };
}

/// True when the calling thread is a shard.
pub(crate) fn on_shard_thread() -> bool {
    ON_SHARD.with(Cell::get)
}

/// Marks the calling thread as a shard.
pub(crate) fn mark_shard_thread() {
    ON_SHARD.with(|s| s.set(true));
}

/// The cores this process may run on, in order; shard `i` is pinned to the `i`-th
/// (cycling when there are more shards than cores).
pub(crate) fn allowed_cores() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask that sched_getaffinity fills in.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}
