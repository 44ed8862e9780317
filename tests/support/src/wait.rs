//! Waits with deadlines, and blocking calls moved off the test's runtime.

use std::time::{Duration, Instant};

/// Default wait for anything a test expects to arrive.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Polls `f` every few milliseconds until it is true or `timeout` passes; panics naming
/// `what` on timeout.
pub async fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        wait_until_ok(timeout, f).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Polls `f` until it is true (returns true) or `timeout` passes (returns false).
pub async fn wait_until_ok(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs a blocking closure on the blocking pool.
pub async fn blocking<R, F>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}
