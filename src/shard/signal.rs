//! Small single-threaded synchronisation helpers for the tasks of one shard.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes the one task that waits on it. A notification with nobody waiting is remembered
/// until the next wait, so it is never lost between a check and a wait.
#[derive(Default)]
pub(crate) struct Notify {
    notified: Cell<bool>,
    waiter: Cell<Option<Waker>>,
}

impl Notify {
    /// Wakes the waiter (or lets the next wait return at once).
    pub fn notify(&self) {
        if !self.notified.replace(true) {
            if let Some(waker) = self.waiter.take() {
                waker.wake();
            }
        }
    }

    /// Waits for the next notification and consumes it.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.notified.replace(false) {
                return Poll::Ready(());
            }
            self.waiter.set(Some(cx.waker().clone()));
            Poll::Pending
        })
    }
}

/// Lets the other ready tasks of the runtime run before continuing.
pub(crate) fn yield_now() -> impl Future<Output = ()> {
    YieldNow { yielded: false }
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
