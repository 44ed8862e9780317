//! Worker threads: each runs one current-thread tokio runtime with a `LocalSet`, so the
//! connections it owns share `Rc`/`RefCell` state (read buffer, histogram) without locks.

use std::future::Future;
use std::thread::JoinHandle;

/// Starts `threads` workers; worker `w` runs the future `make(w)` to completion and its
/// output is returned through the join handle. The future is built on the worker thread,
/// so it need not be `Send`.
pub fn spawn<T, F, Fut>(threads: usize, make: F) -> Result<Vec<JoinHandle<T>>, String>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    (0..threads)
        .map(|w| {
            let make = make.clone();
            std::thread::Builder::new()
                .name(format!("loadgen-{w}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("tokio runtime");
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, make(w))
                })
                .map_err(|e| format!("spawn worker thread: {e}"))
        })
        .collect()
}
